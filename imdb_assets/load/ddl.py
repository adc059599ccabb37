"""The DDL of the platform's tables, from the catalog: columns, the partitioned parent, indexes, the primary key,
and the schemas a load writes to (``imdb``, ``imdb_partitions`` for the parts being built, ``imdb_meta`` for the
record of loads).

A part and the parent it is attached to are built from the same statements, so that the parent's primary key and
indexes can adopt the part's own at attach time, and a user's tools (the benchmarks, the tests) can build the same
table the platform does.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from imdb_assets import history
from imdb_assets.catalog import SCHEMA, Column, Dataset

PARTITION_SCHEMA = "imdb_partitions"
META_SCHEMA = "imdb_meta"
LOCK_CLASS = 7_041_933  # advisory-lock namespace for this platform's loads
CHANGE_LOG = "changes"
# The change log: each load's changed rows by key, in the transaction that changed the table, for incremental models
# to read by id. A full load (no earlier release to compare with, or churn above the diff threshold) records one
# 'reload' row without a key: anything in the table may have changed.
CHANGE_LOG_SQL = f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.{CHANGE_LOG} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_date date NOT NULL,
    table_name text NOT NULL,
    key text[] COLLATE "C",  -- the row's primary key values, in the catalog's order; NULL for a 'reload'
    change text NOT NULL CHECK (change IN ('insert', 'update', 'delete', 'reload')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((change = 'reload') = (key IS NULL))
)"""


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def column_sql(dataset: Dataset, column: Column, sql_type: str | None = None) -> str:
    """A column's DDL. Keyed or indexed text (the ids) collates as "C": byte order is how ids sort anyway, and
    index builds sort it faster than under a locale, which disables abbreviated keys. Key columns are NOT NULL
    up front, so adding the primary key does not scan the whole table again to check it."""
    sql_type = sql_type or column.sql_type
    keyed = column.name in dataset.primary_key or any(column.name in index for index in dataset.indexes)
    collate = ' COLLATE "C"' if keyed and sql_type == "text" else ""
    not_null = " NOT NULL" if column.name in dataset.primary_key else ""
    return f'"{column.name}" {sql_type}{collate}{not_null}'


def create_table_sql(
    dataset: Dataset, schema: str, table: str | None = None, constraints: sql.Composable | None = None
) -> sql.Composed:
    """The dataset's table (or ``table``, one of its parts) with ``constraints`` after its columns."""
    columns = sql.SQL(", ".join(column_sql(dataset, c) for c in dataset.columns))
    target = qualified(schema, table or dataset.table)
    return sql.SQL("CREATE TABLE {} ({}{})").format(target, columns, constraints or sql.SQL(""))


def quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def index_names(dataset: Dataset, table: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """Each index of ``table`` (default: the dataset's table, else one of its partitions): name and columns, the
    primary key's first."""
    table = table or dataset.table
    secondary = [(f"{table}_{'_'.join(columns)}_idx", columns) for columns in dataset.indexes]
    return [(f"{table}_pkey", dataset.primary_key), *secondary]


def index_sql(dataset: Dataset, schema: str, table: str | None = None) -> list[str]:
    """The primary key's unique index, then the secondary indexes, built after the data; `primary_key_sql` then
    makes the first one the key."""
    target = f'"{schema}"."{table or dataset.table}"'
    unique = ["UNIQUE "] + [""] * len(dataset.indexes)
    return [
        f'CREATE {kind}INDEX "{name}" ON {target} ({quoted(columns)})'
        for kind, (name, columns) in zip(unique, index_names(dataset, table), strict=True)
    ]


def primary_key_sql(dataset: Dataset, schema: str, table: str | None = None) -> str:
    """The primary key on the unique index `index_sql` built (key columns are NOT NULL already: no scan)."""
    table = table or dataset.table
    return f'ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY USING INDEX "{table}_pkey"'


def ensure_schemas(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))  # CREATE ... IF NOT EXISTS can race
        for schema in (SCHEMA, PARTITION_SCHEMA, META_SCHEMA):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
                table_name text PRIMARY KEY,
                source_sha256 text NOT NULL,
                rows bigint NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now(),
                source_last_modified text  -- the raw file's, for clients that judge freshness by IMDb's release
            )"""
        )
        conn.execute(CHANGE_LOG_SQL)
        history.ensure_table(conn)


def platform_comment(dataset: Dataset) -> str:
    """The table's comment when the platform creates it; the source of its rows is in ``imdb_meta.loads``."""
    return f"IMDb {dataset.file_name}: {dataset.description}"


def create_parent(conn: psycopg.Connection, dataset: Dataset) -> None:
    """``imdb.<table>``, partitioned by range of its first key column, with the primary key and indexes that its
    partitions' own become part of when they are attached, and the platform's comments."""
    table = qualified(SCHEMA, dataset.table)
    key = sql.Identifier(dataset.primary_key[0])
    conn.execute(sql.SQL("{} PARTITION BY RANGE ({})").format(create_table_sql(dataset, SCHEMA), key))
    (pkey, columns), *secondary = index_names(dataset)
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            table, sql.Identifier(pkey), sql.SQL(quoted(columns))
        )
    )
    for name, columns in secondary:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} ({})").format(sql.Identifier(name), table, sql.SQL(quoted(columns)))
        )
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(platform_comment(dataset))))
    for column in dataset.columns:
        target = sql.SQL("{}.{}").format(table, sql.Identifier(column.name))
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(column.description)))
