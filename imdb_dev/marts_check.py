"""Incremental marts against full builds: the models built from the change log, copied aside, then compared row for
row with a full build of the same data; and changes written to the tables the way a load writes them.

Used by the tests (tests/test_incremental.py) and the benchmark of incremental builds (bench/incremental.py).

    copy_models(conn, models, "imdb_check")     # the marts as the incremental build left them
    ... dbt build --full-refresh ...
    assert differences(conn, models, "imdb_check") == {}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql

from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.load import CHANGE_LOG, META_SCHEMA

CHECK_SCHEMA = "imdb_check"


def incremental_models(manifest: Mapping[str, Any]) -> list[str]:
    """``schema.name`` of every incremental model of the manifest, in its order."""
    return [
        f"{node['schema']}.{node['name']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"
    ]


def _relation(name: str) -> sql.Composed:
    schema, table = name.split(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def copy_models(conn: psycopg.Connection, models: Iterable[str], schema: str = CHECK_SCHEMA) -> None:
    """Each of ``models`` (``schema.name``) copied into ``schema`` under its name, which is emptied first."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    for model in models:
        copy = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(model.split(".")[1]))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(copy, _relation(model)))


def differences(
    conn: psycopg.Connection, models: Iterable[str], schema: str = CHECK_SCHEMA
) -> dict[str, tuple[int, int]]:
    """The models whose rows differ from their copies in ``schema``: (rows only in the model, rows only in the copy),
    duplicates counted (EXCEPT ALL both ways)."""
    found = {}
    for model in models:
        copy = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(model.split(".")[1]))
        counts = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM (TABLE {0} EXCEPT ALL TABLE {1}) AS a),"
                " (SELECT count(*) FROM (TABLE {1} EXCEPT ALL TABLE {0}) AS b)"
            ).format(_relation(model), copy)
        ).fetchone()
        assert counts is not None
        if counts != (0, 0):
            found[model] = (counts[0], counts[1])
    return found


def record_changes(
    conn: psycopg.Connection, table: str, change: str, keys: Sequence[Sequence[Any]], day: date | None = None
) -> None:
    """Change-log rows for ``keys`` of ``table`` (each the row's primary key, in the catalog's order), as a load
    writes them in its transaction."""
    conn.cursor().executemany(
        f"INSERT INTO {META_SCHEMA}.{CHANGE_LOG} (release_date, table_name, key, change) "
        "VALUES (coalesce(%s, current_date), %s, %s::text[], %s)",
        [(day, table, [str(value) for value in key], change) for key in keys],
    )


def change_rows(conn: psycopg.Connection, table: str, change: str, statement: str, *params: Any) -> list[tuple]:
    """Run ``statement`` (an INSERT, UPDATE or DELETE of ``imdb.<table>`` returning the rows' primary keys) and log
    the keys it returned as ``change``, in the caller's transaction."""
    keys = conn.execute(statement, params).fetchall()
    record_changes(conn, table, change, keys)
    return keys


# A default day of the generator (docs/benchmarks.md, "Daily churn"): inserted, changed and deleted shares per table.
DEFAULT_DAY = {
    "name_basics": (0.00015, 0.00002, 0.0),
    "title_akas": (0.0002, 0.0, 0.00002),
    "title_basics": (0.0002, 0.00015, 0.00001),
    "title_crew": (0.0002, 0.0, 0.00001),
    "title_episode": (0.0002, 0.0, 0.00001),
    "title_principals": (0.0002, 0.0, 0.00002),
    "title_ratings": (0.0003, 0.1, 0.0),
}
# What a change of a row changes, per table: a column set to a new value.
_CHANGED = {
    "name_basics": "primary_name = primary_name || ' Jr.'",
    "title_akas": "title = title || ' (alt)'",
    "title_basics": "primary_title = primary_title || ' (retitled)', genres = array['Drama']",
    "title_crew": "writers = array_append(coalesce(writers, '{}'), 'nm0000001')",
    "title_episode": "episode_number = coalesce(episode_number, 0) + 1",
    "title_principals": "category = 'self'",
    "title_ratings": "num_votes = num_votes + 1, average_rating = least(10, average_rating + 0.1)",
}


def churn(conn: psycopg.Connection, shares: Mapping[str, tuple[float, float, float]] = DEFAULT_DAY) -> dict:
    """A day's churn written to the tables the way a diff load does, one transaction per table: of each table's
    rows, ``shares`` (inserted, changed, deleted) picked at random; an inserted row is a copy of an existing one
    under a new key. The counts per table."""
    counts = {}
    for table, (inserted, changed, deleted) in shares.items():
        dataset = next(d for d in DATASETS if d.table == table)
        target = f"{SCHEMA}.{table}"
        keys = ", ".join(dataset.primary_key)
        (rows,) = conn.execute(f"SELECT count(*) FROM {target}").fetchone() or (0,)
        n_insert, n_change, n_delete = (round(rows * share) for share in (inserted, changed, deleted))
        pick = f"SELECT {keys} FROM {target} ORDER BY random() LIMIT %s"
        with conn.transaction():
            done = change_rows(
                conn, table, "delete", f"DELETE FROM {target} WHERE ({keys}) IN ({pick}) RETURNING {keys}", n_delete
            )
            done += change_rows(
                conn,
                table,
                "update",
                f"UPDATE {target} SET {_CHANGED[table]} WHERE ({keys}) IN ({pick}) RETURNING {keys}",
                n_change,
            )
            columns = ", ".join(f'"{c.name}"' for c in dataset.columns)
            first = dataset.primary_key[0]
            renamed = ", ".join(
                f"'{first[0]}x' || substr({c.name}, 3) || '_' || n" if c.name == first else f'"{c.name}"'
                for c in dataset.columns
            )
            done += change_rows(
                conn,
                table,
                "insert",
                f"INSERT INTO {target} ({columns}) SELECT {renamed} FROM "
                f"(SELECT *, row_number() OVER () AS n FROM (SELECT * FROM {target} ORDER BY random() LIMIT %s) s) s "
                f"RETURNING {keys}",
                n_insert,
            )
        counts[table] = {"inserted": n_insert, "changed": n_change, "deleted": n_delete, "logged": len(done)}
    return counts
