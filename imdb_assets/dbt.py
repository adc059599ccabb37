"""The dbt project (`dbt_project/`) as Dagster assets downstream of the seven tables, its tests as asset checks.

The manifest is parsed on import when the project's files changed since the last parse (a content fingerprint,
milliseconds when nothing changed), so a fresh clone, `dagster dev`, `dagster job execute` and the tests never need
a `dbt parse` by hand. The sources yml is generated from the catalog at the same time (and committed, so the dbt
project reads on its own).

    uv run python -m imdb_assets.dbt build --select marts    # dbt by hand, against the platform's database
"""

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetExecutionContext, AssetKey, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets
from psycopg.conninfo import conninfo_to_dict

from imdb_assets import metadata, settings
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.resources import Warehouse

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
SOURCES_YML = Path("models", "staging", "_imdb__sources.yml")
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")

project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def sources_yaml() -> str:
    """The dbt sources of the seven tables, from the catalog: columns with their types and descriptions."""
    tables = [
        {
            "name": dataset.table,
            "description": f"IMDb's {dataset.file_name}: {dataset.description}",
            "columns": [
                {"name": c.name, "description": c.description, "data_type": c.sql_type} for c in dataset.columns
            ],
        }
        for dataset in DATASETS
    ]
    document = {
        "sources": [
            {
                "name": SCHEMA,
                "schema": SCHEMA,
                "description": "The seven IMDb files, typed and loaded by the platform's table assets.",
                "tables": tables,
            }
        ]
    }
    header = "# Generated from imdb_assets/catalog.py when the platform loads; do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def _fingerprint(project_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in PROJECT_FILES:
        root = project_dir / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def prepare_manifest(dbt_project: DbtProject = project) -> Path:
    """`dbt parse` into the project's target folder unless the manifest there is from the current files.

    The sources yml is rewritten first if the catalog changed. A file lock serialises the webserver, daemon
    and step processes that import this at the same time.
    """
    project_dir = Path(dbt_project.project_dir)
    sources, generated = project_dir / SOURCES_YML, sources_yaml()
    if not sources.exists() or sources.read_text() != generated:
        sources.write_text(generated)
    target = project_dir / dbt_project.target_path
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / "manifest.fingerprint"
    fingerprint = _fingerprint(project_dir)

    def current() -> bool:
        return dbt_project.manifest_path.exists() and stamp.exists() and stamp.read_text() == fingerprint

    if current():
        return dbt_project.manifest_path
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not current():
            _run_dbt(["parse", "--quiet", "--target-path", str(target)], env=os.environ, project_dir=project_dir)
            stamp.write_text(fingerprint)
    return dbt_project.manifest_path


def dbt_environment(database_url: str) -> dict[str, str]:
    """The `IMDB_DBT_*` variables `dbt_project/profiles.yml` reads, from a libpq URL (Unix-socket hosts work)."""
    parts = conninfo_to_dict(database_url)
    values = {
        "IMDB_DBT_HOST": parts.get("host") or "localhost",
        "IMDB_DBT_PORT": str(parts.get("port") or 5432),
        "IMDB_DBT_USER": parts.get("user") or "postgres",
        "IMDB_DBT_PASSWORD": parts.get("password") or "",
        "IMDB_DBT_DBNAME": parts.get("dbname") or "postgres",
    }
    if parts.get("sslmode"):
        values["IMDB_DBT_SSLMODE"] = parts["sslmode"]
    return values


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """dagster-dbt hands `os.environ` to the dbt process; set the connection there for one invocation."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_dbt(args: list[str], env: Mapping[str, str], capture: bool = True, project_dir: Path = PROJECT_DIR) -> int:
    command = [sys.executable, "-m", "dbt.cli.main", *args]
    environment = {**env, "DBT_PROJECT_DIR": str(project_dir), "DBT_PROFILES_DIR": str(project_dir)}
    completed = subprocess.run(command, env=environment, cwd=project_dir, capture_output=capture, text=True)
    if capture and completed.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.returncode


class ImdbDbtTranslator(DagsterDbtTranslator):
    """Sources are the table assets (`imdb/<table>`); models are keyed by the schema they land in, grouped by
    their folder (staging, marts)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([SCHEMA, dbt_resource_props["name"]])
        return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else super().get_group_name(dbt_resource_props)


TRANSLATOR = ImdbDbtTranslator()


def models_without_changed_sources(context: AssetExecutionContext, manifest: Mapping[str, Any]) -> list[str]:
    """Models of this run whose every upstream table took part in the run and was kept, not reloaded.

    Dagster starts the dbt step once all table steps of the run finished; a table that did not change reports
    `reloaded: false`, and the models that read only such tables need no rebuild.
    """
    kept = set()
    for dataset in DATASETS:
        event = context.instance.get_latest_materialization_event(AssetKey([SCHEMA, dataset.table]))
        materialization = event.asset_materialization if event else None
        if event and event.run_id == context.run.run_id and materialization:
            reloaded = materialization.metadata.get("reloaded")
            if reloaded is not None and reloaded.value is False:
                kept.add(f"source.imdb.{SCHEMA}.{dataset.table}")
    if not kept:
        return []
    parents = manifest["parent_map"]

    def sources(unique_id: str, seen: set[str]) -> set[str]:
        found = set()
        for parent in parents.get(unique_id, []):
            if parent.startswith("source."):
                found.add(parent)
            elif parent not in seen:
                seen.add(parent)
                found |= sources(parent, seen)
        return found

    return sorted(
        node["name"]
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and sources(unique_id, set()) <= kept
    )


MANIFEST: dict[str, Any] = json.loads(prepare_manifest().read_text())


def marts() -> list[str]:
    """`schema.name` of every model under `models/marts`, in the manifest's order."""
    return [
        f"{node['schema']}.{node['name']}"
        for node in MANIFEST["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == "marts"
    ]


@dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=TRANSLATOR)
def imdb_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """`dbt build` of the selected models and their tests; models whose tables did not change in this run are
    left as they are."""
    unchanged = models_without_changed_sources(context, MANIFEST)
    if {key.path[-1] for key in context.selected_asset_keys} <= set(unchanged):
        context.log.info("None of the tables these models read changed in this run: nothing to rebuild")
        return
    args = ["build"]
    if unchanged:
        context.log.info(f"Tables unchanged in this run, so not rebuilding: {', '.join(unchanged)}")
        args += ["--exclude", " ".join(unchanged)]
    with _environment(dbt_environment(warehouse.url())):
        yield from _with_run_metadata(dbt.cli(args, context=context), context, warehouse.url())


def _with_run_metadata(invocation: DbtCliInvocation, context: AssetExecutionContext, url: str) -> Iterator[Any]:
    """dagster-dbt's events, each model's output given the rows its statement wrote and the relation's size and
    first rows as built (the asset key is the relation's `schema.name`, see the translator)."""
    for message in invocation.stream_raw_events():
        for event in message.to_default_asset_events(
            manifest=invocation.manifest,
            dagster_dbt_translator=invocation.dagster_dbt_translator,
            context=context,
            target_path=invocation.target_path,
            project=project,
        ):
            if isinstance(event, Output):
                relation = ".".join(context.asset_key_for_output(event.output_name).path)
                event = event.with_metadata(
                    {
                        **event.metadata,
                        **_run_metadata(message.raw_event.get("data", {})),
                        **metadata.relation_metadata(url, relation),
                    }
                )
            yield event


def _run_metadata(result: Mapping[str, Any]) -> dict[str, Any]:
    """Rows from PostgreSQL's command tag in dbt's model result: `SELECT 1234` for a table built, none for a view
    (dagster-dbt already adds the execution duration)."""
    tag = re.fullmatch(r"(SELECT|INSERT 0|UPDATE|DELETE|MERGE) (\d+)", str(result.get("status", "")))
    if not tag:
        return {}
    rows = int(tag.group(2))
    return {"rows_affected": rows, "dagster/row_count": rows}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    url = Warehouse(database_url=os.environ.get("DATABASE_URL", ""), data_dir=str(settings.data_dir())).url()
    sys.exit(_run_dbt(args, env={**os.environ, **dbt_environment(url)}, capture=False))


if __name__ == "__main__":
    main()
