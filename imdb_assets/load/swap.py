"""The swap: one short transaction that drops ``imdb.<table>``'s partitions and attaches the new parts in their
place, retried while readers hold the table, and what it keeps, refuses and refreshes.

The parent is the same table before and after, so its owner, grants, comments, views, triggers and policies stay.
What a partition swap cannot keep (a foreign key referencing the table, a publication of it) is refused before
anything changes (``RefreshRefused``). A parent from an older version of the platform (a plain table, or another
layout) is replaced once, in the swap's transaction, carrying over its owner, grants, comments and dependent views.
Materialized views built on the table are refreshed after it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.database import one_row
from imdb_assets.load.ddl import (
    META_SCHEMA,
    PARTITION_SCHEMA,
    create_parent,
    index_names,
    platform_comment,
    qualified,
    quoted,
)
from imdb_assets.load.parts import Part

SWAP_LOCK_TIMEOUT = "3s"  # readers queue behind the swap's lock at most this long per attempt
SWAP_ATTEMPTS = 20


class RefreshRefused(RuntimeError):
    """``imdb.<table>`` carries something the refresh would break or lose; nothing was changed."""


def relkind(conn: psycopg.Connection, dataset: Dataset) -> str | None:
    """'p' for a partitioned ``imdb.<table>``, 'r' for a plain one (an older version's), None if there is none."""
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (f"{SCHEMA}.{dataset.table}",)
    ).fetchone()
    return row[0] if row else None


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


def _layout_difference(conn: psycopg.Connection, dataset: Dataset, part: Part) -> str | None:
    """How the existing ``imdb.<table>`` differs from the layout this load's partitions need (None: it does not):
    plain rather than partitioned, other columns, types or collations than ``part`` (built from the catalog), another
    partition key, or one of the catalog's indexes missing. A user's extra index is no difference."""
    parent = f"{SCHEMA}.{dataset.table}"
    if relkind(conn, dataset) != "p":
        return "it is a plain table, from an older version of the platform"
    if (
        conn.execute(_COLUMNS, (parent,)).fetchall()
        != conn.execute(_COLUMNS, (f"{PARTITION_SCHEMA}.{part.table}",)).fetchall()
    ):
        return "its columns differ from the catalog's"
    key_matches = one_row(
        conn.execute(
            "SELECT pg_get_partkeydef(%s::regclass) = 'RANGE (' || quote_ident(%s) || ')'",
            (parent, dataset.primary_key[0]),
        ).fetchone()
    )[0]
    if not key_matches:
        return "its partition key differs from the catalog's"
    indexes = {(primary, tuple(columns)) for primary, columns in conn.execute(_INDEXES, (parent,)).fetchall()}
    needed = {(True, dataset.primary_key)} | {(False, columns) for columns in dataset.indexes}
    if missing := needed - indexes:
        return f"it lacks the index on {', '.join(quoted(columns) for _, columns in sorted(missing))}"
    return None


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
_UNKEPT_BY_REPLACING = """
UNION ALL
SELECT format('trigger %%I', tgname) FROM pg_trigger WHERE tgrelid = %(table)s::regclass AND NOT tgisinternal
UNION ALL
SELECT format('policy %%I', polname) FROM pg_policy WHERE polrelid = %(table)s::regclass
UNION ALL
SELECT format('rule %%I', rulename) FROM pg_rewrite WHERE ev_class = %(table)s::regclass
UNION ALL
SELECT format('constraint %%I', conname) FROM pg_constraint
WHERE conrelid = %(table)s::regclass AND contype NOT IN ('p', 'n') AND NOT (contype = 'f' AND confrelid = conrelid)
UNION ALL
SELECT format('index %%s', i.indexrelid::regclass) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %(table)s::regclass AND c.relname <> ALL(%(indexes)s)
  AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = i.indexrelid)
UNION ALL
SELECT format('column %%I', attname) FROM pg_attribute
WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped AND attname <> ALL(%(columns)s)
UNION ALL
SELECT format('table %%s, which inherits from it', c.oid::regclass)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = %(table)s::regclass AND NOT c.relispartition
"""


def refuse_unkept(conn: psycopg.Connection, dataset: Dataset, *, replacing: bool) -> None:
    """Raise ``RefreshRefused`` naming what ``imdb.<table>`` carries that the refresh would break or drop: a
    foreign key referencing it (its rows are replaced wholesale) or a publication of it (subscribers would not see
    the swap); and when ``replacing`` an older version's table, what a new table would not have: triggers,
    policies, rules, constraints, indexes and columns of the user's, tables inheriting from it."""
    if relkind(conn, dataset) is None:
        return
    query = _UNKEPT
    if conn.info.server_version >= 150000:  # publications of whole schemas
        query += _UNKEPT_PUBLISHED_SCHEMA
    if replacing:
        query += _UNKEPT_BY_REPLACING
    params = {
        "table": f"{SCHEMA}.{dataset.table}",
        "schema": SCHEMA,
        "indexes": [name for name, _ in index_names(dataset)],
        "columns": [column.name for column in dataset.columns],
    }
    if unkept := [what for (what,) in conn.execute(query, params).fetchall()]:
        action = (
            "replacing it with the platform's partitioned table would drop" if replacing else "its refresh would break"
        )
        raise RefreshRefused(
            f"{SCHEMA}.{dataset.table}: {action} {', '.join(unkept)}; nothing was changed. "
            "Drop or move them, then refresh again."
        )


_KEPT = """
SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT ARRAY[CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
                          g.privilege_type, g.is_grantable::text, '']
             FROM aclexplode(c.relacl) g WHERE g.grantee <> c.relowner)
       || ARRAY(SELECT ARRAY[CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
                             g.privilege_type, g.is_grantable::text, a.attname::text]
                FROM pg_attribute a, aclexplode(a.attacl) g
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND g.grantee <> c.relowner),
       ARRAY(SELECT ARRAY[a.attname::text, col_description(c.oid, a.attnum)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL)
FROM pg_class c WHERE c.oid = %s::regclass
"""


def _replace_parent(conn: psycopg.Connection, dataset: Dataset, why: str, log: logging.Logger) -> None:
    """Once, for a table of an older version or another layout: drop it and create the platform's partitioned
    table, carrying over its owner, grants (column grants too), comments and dependent views, or refusing, before
    changing anything, when it carries more than that."""
    table = qualified(SCHEMA, dataset.table)
    views = _dependent_views(conn, dataset)
    # Take the locks in the order a reader of the outermost view does (view, inner views, table), so a reader and
    # the swap wait for each other instead of deadlocking. (A materialized view's readers never reach the table,
    # and LOCK refuses them: DROP ... CASCADE locks those.)
    outermost_first = [v.qualified for v in reversed(views) if not v.materialized] + [table]
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(", ").join(outermost_first)))
    refuse_unkept(conn, dataset, replacing=True)
    owner, comment, grants, column_comments = one_row(conn.execute(_KEPT, (f"{SCHEMA}.{dataset.table}",)).fetchone())
    conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(table))
    create_parent(conn, dataset)
    conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(owner)))
    columns = {column.name for column in dataset.columns}
    for grantee, privilege, grantable, column in grants:
        if column and column not in columns:
            continue  # the column is gone, and its grant with it
        role = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        on = sql.SQL(" ({})").format(sql.Identifier(column)) if column else sql.SQL("")
        option = sql.SQL(" WITH GRANT OPTION" if grantable == "true" else "")
        conn.execute(sql.SQL("GRANT {}{} ON {} TO {}{}").format(sql.SQL(privilege), on, table, role, option))
    if comment is not None:
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(comment)))
    for column, text in column_comments:
        if column in columns:
            target = sql.SQL("{}.{}").format(table, sql.Identifier(column))
            conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(text)))
    for view in views:
        view.recreate(conn)
    names = ", ".join(f"{v.schema}.{v.name}" for v in views)
    log.warning(
        f"{SCHEMA}.{dataset.table} replaced, once, by a partitioned table ({why}), with its owner, grants and "
        f"comments" + (f"; recreated views {names}" if names else "")
    )


def _retire_sha256_comment(conn: psycopg.Connection, dataset: Dataset) -> None:
    """Older versions wrote the source's sha256 into the table's comment at every load: that comment becomes the
    platform's current one (the sha256 is in ``imdb_meta.loads``). Any other comment is left as it is."""
    table = qualified(SCHEMA, dataset.table)
    comment = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", (f"{SCHEMA}.{dataset.table}",))
    if (one_row(comment.fetchone())[0] or "").startswith(f"{platform_comment(dataset)} Source sha256 "):
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(platform_comment(dataset))))


@dataclass(frozen=True)
class _DependentView:
    schema: str
    name: str
    materialized: bool
    definition: str
    options: list[str] | None
    comment: str | None
    column_comments: list[tuple[str, str]]
    grants: list[tuple[str, str, bool]]
    indexes: list[str]

    @property
    def qualified(self) -> sql.Composed:
        return qualified(self.schema, self.name)

    def recreate(self, conn: psycopg.Connection) -> None:
        kind = sql.SQL("MATERIALIZED VIEW" if self.materialized else "VIEW")
        options = sql.SQL(f" WITH ({', '.join(self.options)})" if self.options else "")
        conn.execute(
            sql.SQL("CREATE {} {}{} AS {}").format(kind, self.qualified, options, sql.SQL(self.definition.rstrip(";")))
        )
        for index in self.indexes:
            conn.execute(index)
        if self.comment is not None:
            conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, self.qualified, sql.Literal(self.comment)))
        for column, comment in self.column_comments:
            target = sql.SQL("{}.{}").format(self.qualified, sql.Identifier(column))
            conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(comment)))
        for grantee, privilege, grantable in self.grants:
            role = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            option = sql.SQL(" WITH GRANT OPTION" if grantable else "")
            conn.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(sql.SQL(privilege), self.qualified, role, option))


_DEPENDENT_VIEWS = """
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
SELECT n.nspname, c.relname, c.relkind = 'm', pg_get_viewdef(c.oid), c.reloptions,
       obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT ARRAY[a.attname::text, col_description(c.oid, a.attnum)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL),
       ARRAY(SELECT ARRAY[CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END,
                          g.privilege_type, g.is_grantable::text]
             FROM aclexplode(c.relacl) g WHERE g.grantee <> c.relowner),
       ARRAY(SELECT indexdef FROM pg_indexes i WHERE i.schemaname = n.nspname AND i.tablename = c.relname)
FROM dependents JOIN pg_class c ON c.oid = dependents.oid JOIN pg_namespace n ON n.oid = c.relnamespace
GROUP BY c.oid, n.nspname, c.relname
ORDER BY max(dependents.depth), n.nspname, c.relname
"""


def _dependent_views(conn: psycopg.Connection, dataset: Dataset) -> list[_DependentView]:
    """Every view (and materialized view) built on ``imdb.<table>``, directly or through other views, in an
    order that can recreate them. Definitions are read with an empty search_path so every name is qualified."""
    conn.execute("SET LOCAL search_path = ''")
    rows = conn.execute(_DEPENDENT_VIEWS, {"table": f"{SCHEMA}.{dataset.table}"}).fetchall()
    return [
        _DependentView(
            schema=schema,
            name=name,
            materialized=materialized,
            definition=definition,
            options=options,
            comment=comment,
            column_comments=[(c, text) for c, text in column_comments],
            grants=[(grantee, privilege, grantable == "true") for grantee, privilege, grantable in grants],
            indexes=indexes,
        )
        for schema, name, materialized, definition, options, comment, column_comments, grants, indexes in rows
    ]


_PARTITIONS = """
SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass
"""


def swap_partitions(
    control: psycopg.Connection, dataset: Dataset, parts: list[Part], source: tuple[str, str | None], rows: int, log
) -> None:
    """In one transaction, retried while readers hold locks: drop the partitions of ``imdb.<table>`` and attach
    ``parts`` in their place (creating the table first if there is none, or replacing one of another layout)."""
    parent = qualified(SCHEMA, dataset.table)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with control.transaction():
                control.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                old = []
                if relkind(control, dataset) is None:
                    create_parent(control, dataset)
                    refuse_unkept(control, dataset, replacing=False)  # a publication of all tables, or of imdb
                elif why := _layout_difference(control, dataset, parts[0]):
                    _replace_parent(control, dataset, why, log)
                else:
                    control.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(parent))
                    refuse_unkept(control, dataset, replacing=False)
                    old = control.execute(_PARTITIONS, (f"{SCHEMA}.{dataset.table}",)).fetchall()
                    if old:
                        control.execute(
                            sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(qualified(*name) for name in old))
                        )
                _retire_sha256_comment(control, dataset)
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
    with control.transaction():
        views = [view for view in _dependent_views(control, dataset) if view.materialized]
    for view in views:
        control.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(view.qualified))
    names = [f"{view.schema}.{view.name}" for view in views]
    if names:
        log.info(f"{SCHEMA}.{dataset.table}: refreshed materialized views {', '.join(names)}")
    return names
