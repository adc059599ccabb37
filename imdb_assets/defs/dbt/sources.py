"""The dbt sources of the seven tables (`dbt_project/models/staging/_imdb__sources.yml`), from the catalog.

The file is committed so the dbt project reads on its own; a test fails when it drifts from the catalog.

    uv run python -m imdb_assets.defs.dbt.sources    # rewrite it after a change to the catalog

Each table's freshness is the time its current contents were swapped in (`imdb_meta.loads.loaded_at`, written by
the load): IMDb publishes every day, so a table whose data is days old means the refreshes stopped or keep failing.

    uv run imdb dbt source freshness    # warn after 2 days, error after 7 (IMDB_FRESHNESS_*)
"""

from pathlib import Path

import yaml

from imdb_assets import history
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.dbt import PROJECT_DIR
from imdb_assets.load import CHANGE_LOG, META_SCHEMA
from imdb_assets.settings import Settings, variable_name

SOURCES_YML = PROJECT_DIR / "models" / "staging" / "_imdb__sources.yml"
# Tables whose staging view renames a key column (title_akas' title_id becomes tconst): their uniqueness is tested
# here, where the test finds the primary key's index and costs a catalog lookup; on the view it would scan them.
KEY_TESTED_ON_SOURCE = {"title_akas"}


def _unique_key_test(columns: tuple[str, ...]) -> dict:
    return {"unique_combination_of_columns": {"arguments": {"combination_of_columns": list(columns)}}}


# dbt renders these when it parses the project, so the environment can change the thresholds.
def _days(field: str) -> dict[str, str]:
    """A freshness threshold read from the setting's variable, with the setting's default (for dbt run by hand)."""
    default = Settings.model_fields[field].default
    return {"count": f"{{{{ env_var('{variable_name(field)}', '{default}') }}}}", "period": "day"}


FRESHNESS = {"warn_after": _days("freshness_warn_after_days"), "error_after": _days("freshness_error_after_days")}


def loaded_at_query(table: str) -> str:
    """When the table's current contents were loaded; NULL, which dbt reports as an error, if never."""
    return f"select loaded_at from {META_SCHEMA}.loads where table_name = '{table}'"


def sources_yaml() -> str:
    """The sources document: each table with its columns' types and descriptions and how fresh it must be; the
    tables of `KEY_TESTED_ON_SOURCE` with their primary key as a uniqueness test."""
    tables = [
        {
            "name": dataset.table,
            "description": f"IMDb's {dataset.file_name}: {dataset.description}",
            "config": {"loaded_at_query": loaded_at_query(dataset.table)},
            **(
                {"data_tests": [_unique_key_test(dataset.primary_key)]} if dataset.table in KEY_TESTED_ON_SOURCE else {}
            ),
            "columns": [
                {"name": c.name, "description": c.description, "data_type": c.sql_type} for c in dataset.columns
            ],
        }
        for dataset in DATASETS
    ]
    tables.append(
        {
            "name": history.HISTORY_TABLE,
            "description": history.HISTORY_COMMENT,
            "config": {"loaded_at_query": loaded_at_query(history.RATINGS_TABLE)},
            "columns": [
                {"name": name, "description": comment, "data_type": data_type}
                for (name, comment), data_type in zip(
                    history.COLUMN_COMMENTS.items(), history.COLUMN_TYPES, strict=True
                )
            ],
        }
    )
    document = {
        "sources": [
            {
                "name": SCHEMA,
                "schema": SCHEMA,
                "description": "The seven IMDb files, typed and loaded by the platform's table assets, and the "
                "ratings history their loads keep.",
                "config": {"freshness": FRESHNESS},
                "tables": tables,
            },
            {
                "name": META_SCHEMA,
                "schema": META_SCHEMA,
                "description": "What the platform's loads record.",
                "tables": [
                    {
                        "name": CHANGE_LOG,
                        "description": "Each load's changed rows by table and key (a 'reload' row: a full load, "
                        "anything may have changed), in id order.",
                    }
                ],
            },
        ]
    }
    header = "# Generated from imdb_assets/catalog.py by `python -m imdb_assets.defs.dbt.sources`; do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def write(path: Path = SOURCES_YML) -> None:
    path.write_text(sources_yaml())


if __name__ == "__main__":
    write()
