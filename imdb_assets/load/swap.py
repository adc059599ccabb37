"""The swap: one short transaction that drops ``imdb.<table>``'s partitions and attaches the new parts in their
place, retried while readers hold the table, and what it refuses and refreshes.

The parent is the same table before and after, so its owner, grants, comments, views, triggers and policies stay.
Refused before anything changes (``RefreshRefused``): what a partition swap cannot keep (a foreign key referencing
the table, a publication of it), and a parent laid out otherwise than the catalog says (not partitioned, other
columns, another partition key, an index of the catalog's missing). The platform does not migrate its tables: a
dropped one is created anew by the next load. Materialized views built on the table are refreshed after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.database import one_row
from imdb_assets.load.ddl import META_SCHEMA, PARTITION_SCHEMA, create_parent, create_table_sql, qualified, quoted
from imdb_assets.load.parts import Part

SWAP_LOCK_TIMEOUT = "3s"  # readers queue behind the swap's lock at most this long per attempt
SWAP_ATTEMPTS = 20


class RefreshRefused(RuntimeError):
    """``imdb.<table>`` carries something the refresh would break, or is not laid out as the catalog says; nothing
    was changed."""


def table_exists(conn: psycopg.Connection, dataset: Dataset) -> bool:
    return one_row(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{dataset.table}",)).fetchone())[0]


_COLUMNS = """
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation::text
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
_INDEXES = """
SELECT i.indisprimary, ARRAY(SELECT a.attname::text
                             FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indexprs IS NULL AND i.indpred IS NULL
"""


def _column_difference(table: list[tuple[str, str, str]], catalog: list[tuple[str, str, str]]) -> str | None:
    """How ``table``'s columns (name, type, collation, in order) differ from ``catalog``'s, column by column."""
    if table == catalog:
        return None
    have = {name: (type_, collation) for name, type_, collation in table}
    differences = []
    for name, type_, collation in catalog:
        if name not in have:
            differences.append(f"{name} is missing")
        elif have[name][0] != type_:
            differences.append(f"{name} is {have[name][0]} rather than {type_}")
        elif have[name][1] != collation:
            differences.append(f"{name} collates as {have[name][1]} rather than {collation}")
    in_catalog = {name for name, _, _ in catalog}
    differences += [f"{name} is not in the catalog" for name in have if name not in in_catalog]
    return "its columns differ from the catalog's: " + (", ".join(differences) or "their order")


def _layout_difference(conn: psycopg.Connection, dataset: Dataset, like: str) -> str | None:
    """How the existing ``imdb.<table>`` differs from the layout the platform gives it (None: it does not): not
    partitioned by range of the first key column, other columns, types or collations than ``like`` (a table built
    from the catalog's DDL), or one of the catalog's indexes missing. A user's extra index is no difference."""
    parent = f"{SCHEMA}.{dataset.table}"
    key, catalog_key = one_row(
        conn.execute(
            "SELECT pg_get_partkeydef(%s::regclass), 'RANGE (' || quote_ident(%s) || ')'",
            (parent, dataset.primary_key[0]),
        ).fetchone()
    )
    if key is None:
        return "it is not a partitioned table"
    if key != catalog_key:
        return f"it is partitioned by {key} rather than {catalog_key}"
    if difference := _column_difference(
        conn.execute(_COLUMNS, (parent,)).fetchall(), conn.execute(_COLUMNS, (like,)).fetchall()
    ):
        return difference
    indexes = {(primary, tuple(columns)) for primary, columns in conn.execute(_INDEXES, (parent,)).fetchall()}
    needed = {(True, dataset.primary_key)} | {(False, columns) for columns in dataset.indexes}
    if missing := needed - indexes:
        return f"it lacks the index on {', '.join(quoted(columns) for _, columns in sorted(missing))}"
    return None


def refuse_other_layout(conn: psycopg.Connection, dataset: Dataset, like: str) -> None:
    """Raise ``RefreshRefused`` naming how ``imdb.<table>`` differs from ``like`` (a table built from the catalog's
    DDL) and the catalog's indexes: the platform does not migrate its tables, so a new layout means a new table."""
    if difference := _layout_difference(conn, dataset, like):
        raise RefreshRefused(
            f"{SCHEMA}.{dataset.table}: {difference}; nothing was changed. The platform does not migrate its "
            f"tables: drop it (DROP TABLE {SCHEMA}.{dataset.table} CASCADE, after saving what you built on it) and "
            "refresh again, which creates it as the catalog says (docs/operations.md, Upgrades)."
        )


_UNKEPT = """
SELECT format('foreign key %%I of %%s', conname, conrelid::regclass) FROM pg_constraint
WHERE contype = 'f' AND confrelid = %(table)s::regclass AND conparentid = 0
UNION ALL
SELECT format('publication %%I', p.pubname) FROM pg_publication p
WHERE p.puballtables
   OR EXISTS (SELECT FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = %(table)s::regclass)
"""
_UNKEPT_PUBLISHED_SCHEMA = """
UNION ALL
SELECT format('publication %%I', p.pubname) FROM pg_publication p JOIN pg_publication_namespace n ON n.pnpubid = p.oid
WHERE n.pnnspid = %(schema)s::regnamespace
"""


def refuse_unkept(conn: psycopg.Connection, dataset: Dataset) -> None:
    """Raise ``RefreshRefused`` naming what ``imdb.<table>`` carries that the refresh would break: a foreign key
    referencing it (its rows are replaced wholesale) or a publication of it (subscribers would not see the swap)."""
    query = _UNKEPT
    if conn.info.server_version >= 150000:  # publications of whole schemas
        query += _UNKEPT_PUBLISHED_SCHEMA
    params = {"table": f"{SCHEMA}.{dataset.table}", "schema": SCHEMA}
    if unkept := [what for (what,) in conn.execute(query, params).fetchall()]:
        raise RefreshRefused(
            f"{SCHEMA}.{dataset.table}: its refresh would break {', '.join(unkept)}; nothing was changed. "
            "Drop or move them, then refresh again."
        )


def refuse_before_the_work(conn: psycopg.Connection, dataset: Dataset) -> None:
    """What the swap would refuse, raised before a load builds its parts (the swap checks again, under its lock)."""
    if not table_exists(conn, dataset):
        return
    with conn.transaction(force_rollback=True):  # the catalog's layout as a table to compare with, never kept
        conn.execute(create_table_sql(dataset, "pg_temp"))
        refuse_other_layout(conn, dataset, f"pg_temp.{dataset.table}")
        refuse_unkept(conn, dataset)


_MATERIALIZED_VIEWS = """
WITH RECURSIVE dependents(oid, depth) AS (
    SELECT r.ev_class, 1
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %(table)s::regclass AND r.ev_class <> d.refobjid
  UNION
    SELECT r.ev_class, dependents.depth + 1
    FROM dependents
    JOIN pg_depend d ON d.refobjid = dependents.oid AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> dependents.oid
)
SELECT n.nspname, c.relname
FROM dependents JOIN pg_class c ON c.oid = dependents.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm'
GROUP BY c.oid, n.nspname, c.relname
ORDER BY max(dependents.depth), n.nspname, c.relname
"""
_PARTITIONS = """
SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass
"""


def swap_partitions(
    control: psycopg.Connection,
    dataset: Dataset,
    parts: list[Part],
    source: tuple[str, str | None],
    rows: int,
    log,
    record: Callable[[psycopg.Connection], None],
) -> None:
    """In one transaction, retried while readers hold locks: drop the partitions of ``imdb.<table>`` and attach
    ``parts`` in their place (creating the table first if there is none), then ``record`` what changed."""
    parent = qualified(SCHEMA, dataset.table)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with control.transaction():
                control.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                old = []
                if not table_exists(control, dataset):
                    create_parent(control, dataset)
                    refuse_unkept(control, dataset)  # a publication of all tables, or of imdb
                else:
                    control.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(parent))
                    refuse_other_layout(control, dataset, f"{PARTITION_SCHEMA}.{parts[0].table}")
                    refuse_unkept(control, dataset)
                    old = control.execute(_PARTITIONS, (f"{SCHEMA}.{dataset.table}",)).fetchall()
                    if old:
                        control.execute(
                            sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(qualified(*name) for name in old))
                        )
                for part in parts:
                    control.execute(
                        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                            parent, qualified(PARTITION_SCHEMA, part.table), part.bounds_sql()
                        )
                    )
                control.execute(
                    f"""INSERT INTO {META_SCHEMA}.loads (table_name, source_sha256, source_last_modified, rows)
                        VALUES (%s, %s, %s, %s)
                        ON CONFLICT (table_name) DO UPDATE
                        SET source_sha256 = excluded.source_sha256, rows = excluded.rows, loaded_at = now(),
                            source_last_modified = excluded.source_last_modified""",
                    (dataset.table, *source, rows),
                )
                record(control)
            log.info(f"{SCHEMA}.{dataset.table} swapped in: {len(parts)} partition(s) attached, {len(old)} dropped")
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as error:
            log.warning(
                f"{SCHEMA}.{dataset.table} is busy ({type(error).__name__}, attempt {attempt} of {SWAP_ATTEMPTS}); "
                "retrying the swap"
            )
            time.sleep(min(2.0 * attempt, 10.0))
    raise RuntimeError(f"could not swap {SCHEMA}.{dataset.table}: readers held it for every attempt")


def refresh_materialized_views(control: psycopg.Connection, dataset: Dataset, log: logging.Logger) -> list[str]:
    """Refresh the materialized views built on ``imdb.<table>`` (directly or through other views), inner ones
    first, so they hold its new rows; plain views read them already."""
    views = control.execute(_MATERIALIZED_VIEWS, {"table": f"{SCHEMA}.{dataset.table}"}).fetchall()
    for view in views:
        control.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(qualified(*view)))
    names = [f"{schema}.{name}" for schema, name in views]
    if names:
        log.info(f"{SCHEMA}.{dataset.table}: refreshed materialized views {', '.join(names)}")
    return names
