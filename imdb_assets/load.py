"""Load a parsed frame into PostgreSQL and swap it in atomically.

The frame is bulk-ingested by ADBC (binary COPY) on one connection per core. Each connection takes a range of the
key (ranges chosen from the Parquet row groups' statistics) into a table of its own, a range partition of the
incoming ``imdb_incoming.<table>``, and builds that partition's primary key and indexes in the same transaction.
So the partitions load and index side by side, each partition's heap is in key order (its primary key sorts
presorted input) and, with ``wal_level=minimal``, a partition truncated in the transaction that fills it skips the
WAL. Each part then analyzes its table. A small frame (fewer than two partitions of ``MIN_PART_ROWS``) is one plain
table, created in the transaction of its COPY. The parent's primary key and indexes are then attached from the
partitions' (no rebuild), and the parent gets statistics of its own.

Only then one short transaction replaces ``imdb.<table>``: it drops the old table (and its partitions), moves the
new one into place, its partitions into ``imdb_partitions``, and recreates every view that depended on the old one
(dbt's staging views, a user's own views), with their grants and comments. Readers see the whole old table or the
whole new one; any failure before that commit leaves the old table, and its views, untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from imdb_assets import database, settings
from imdb_assets.catalog import SCHEMA, Column, Dataset
from imdb_assets.parse import read_ahead

INCOMING_SCHEMA = "imdb_incoming"
PARTITION_SCHEMA = "imdb_partitions"
META_SCHEMA = "imdb_meta"
LOCK_CLASS = 7_041_933  # advisory-lock namespace for this platform's loads
SWAP_LOCK_TIMEOUT = "3s"  # readers queue behind the swap's lock at most this long per attempt
SWAP_ATTEMPTS = 20
BATCH_ROWS = 256_000
# ADBC encodes each Arrow batch whole, then sends it, blocking until the server has read all but a socket buffer's
# worth (a Unix socket's is 208 KiB): batches that fit in it let the client encode the next while the server
# copies this one, where large ones leave the two taking turns.
COPY_CHUNK_BYTES = 128 * 1024
MIN_PART_ROWS = 250_000  # below this, a partition's extra connection, DDL and ANALYZE cost more than they save
# Every column type of the catalog is built in, so ADBC's table of them will do: reading the server's pg_type
# instead made each connection take 35 ms rather than 5.
ADBC_OPTIONS = {"adbc.postgresql.type_resolver_mode": "builtin"}


@dataclass(frozen=True)
class LoadResult:
    rows: int
    seconds: float
    recreated_views: list[str]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def with_application_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"application_name": name}
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def column_sql(dataset: Dataset, column: Column, sql_type: str | None = None) -> str:
    """A column's DDL. Keyed or indexed text (the ids) collates as "C": byte order is how ids sort anyway, and
    index builds sort it 2x faster than under a locale, which disables abbreviated keys. Key columns are NOT NULL
    up front, so adding the primary key does not scan the whole table again to check it."""
    sql_type = sql_type or column.sql_type
    keyed = column.name in dataset.primary_key or any(column.name in index for index in dataset.indexes)
    collate = ' COLLATE "C"' if keyed and sql_type == "text" else ""
    not_null = " NOT NULL" if column.name in dataset.primary_key else ""
    return f'"{column.name}" {sql_type}{collate}{not_null}'


def create_table_sql(dataset: Dataset, schema: str) -> str:
    columns = ", ".join(column_sql(dataset, c) for c in dataset.columns)
    return f'CREATE TABLE "{schema}"."{dataset.table}" ({columns})'


def _quoted(columns: tuple[str, ...]) -> str:
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
        f'CREATE {kind}INDEX "{name}" ON {target} ({_quoted(columns)})'
        for kind, (name, columns) in zip(unique, index_names(dataset, table), strict=True)
    ]


def primary_key_sql(dataset: Dataset, schema: str, table: str | None = None) -> str:
    """The primary key on the unique index `index_sql` built (key columns are NOT NULL already: no scan)."""
    table = table or dataset.table
    return f'ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY USING INDEX "{table}_pkey"'


def ensure_schemas(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))  # CREATE ... IF NOT EXISTS can race
        for schema in (SCHEMA, INCOMING_SCHEMA, PARTITION_SCHEMA, META_SCHEMA):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
                table_name text PRIMARY KEY,
                source_sha256 text NOT NULL,
                rows bigint NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now()
            )"""
        )


@dataclass(frozen=True)
class CurrentLoad:
    """What ``imdb.<table>`` holds now: built from which raw file, how many rows."""

    source_sha256: str
    rows: int


def current_load(url: str, dataset: Dataset) -> CurrentLoad | None:
    """The load the current ``imdb.<table>`` came from, if the table exists and was built by the platform."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{META_SCHEMA}.loads",)).fetchone()[0] is None:
            return None
        row = conn.execute(
            f"""SELECT source_sha256, rows FROM {META_SCHEMA}.loads
                WHERE table_name = %s AND to_regclass(%s) IS NOT NULL""",
            (dataset.table, f"{SCHEMA}.{dataset.table}"),
        ).fetchone()
    return CurrentLoad(*row) if row else None


def load_table(
    dataset: Dataset, parquet: str, url: str, *, source_sha256: str, log: logging.Logger | None = None
) -> LoadResult:
    """Bulk-load ``parquet`` into a new table, index and analyze it, then swap it in for ``imdb.<table>``."""
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    app = f"imdb_assets load {dataset.table}"
    with psycopg.connect(with_application_name(url, app), autocommit=True) as control:
        ensure_schemas(control)
        # One load per table at a time, whoever starts it (a run, a sensor-launched run, a backfill).
        control.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
        try:
            rows = _ingest(control, dataset, parquet, with_application_name(url, app), log)
            views = _swap(control, dataset, source_sha256, rows, log)
        except BaseException:
            _drop_incoming(url, dataset)
            raise
        finally:
            if not control.closed and not control.broken:
                control.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
    return LoadResult(rows, time.monotonic() - started, views)


def _drop_incoming(url: str, dataset: Dataset) -> None:
    """Best effort: the next load drops a leftover anyway."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(INCOMING_SCHEMA, dataset.table)))
    except psycopg.Error:
        pass


class _Progress:
    """Rows sent over all of a load's streams, logged every few seconds."""

    def __init__(self, dataset: Dataset, total: int, log: logging.Logger) -> None:
        self.dataset, self.total, self.log = dataset, total, log
        self.sent = 0
        self.started = self.last_report = time.monotonic()
        self._lock = threading.Lock()

    def add(self, rows: int) -> None:
        with self._lock:
            self.sent += rows
            if time.monotonic() - self.last_report >= 5:
                self.last_report = time.monotonic()
                rate = self.sent / (self.last_report - self.started)
                self.log.info(f"{self.dataset.table}: {self.sent:,} of {self.total:,} rows sent ({rate:,.0f} rows/s)")


@dataclass(frozen=True)
class _Part:
    """One connection's share of a load: the frame's rows whose first key column lies in [low, high) (None:
    unbounded), read from the row groups that can hold them, into a table of its own."""

    table: str
    low: str | None
    high: str | None
    row_groups: list[int]
    straddling: frozenset[int]  # row groups that also hold rows of other parts: their rows are filtered by key

    def bounds_sql(self) -> sql.Composed:
        low = sql.SQL("MINVALUE") if self.low is None else sql.Literal(self.low)
        high = sql.SQL("MAXVALUE") if self.high is None else sql.Literal(self.high)
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(low, high)

    def keeps(self, keys: pa.Array) -> pa.Array:
        """Which of a straddling row group's ``keys`` are this part's."""
        low = pa.scalar(self.low, keys.type) if self.low is not None else None
        high = pa.scalar(self.high, keys.type) if self.high is not None else None
        if low is not None and high is not None:
            return pc.and_(pc.greater_equal(keys, low), pc.less(keys, high))
        return pc.greater_equal(keys, low) if low is not None else pc.less(keys, high)


def _plan_parts(dataset: Dataset, source: pq.ParquetFile, cores: int) -> list[_Part]:
    """Key ranges for up to one connection per core, of even rows (at least ``MIN_PART_ROWS`` each), cut at row
    groups' smallest keys: a frame in key order (IMDb's files are) gives each part whole row groups, bar the one
    key a cut may share. A frame in any other order loads just as correctly, slower: each part reads every row group
    that overlaps its range and keeps its own rows. Without min/max statistics, or too few rows to share, the load
    is one part, the table itself."""
    meta = source.metadata
    whole = [_Part(dataset.table, None, None, list(range(meta.num_row_groups)), frozenset())]
    parts = min(cores, meta.num_rows // MIN_PART_ROWS, meta.num_row_groups)
    key = dataset.primary_key[0]
    groups = []  # (least key, greatest key, rows) of each row group
    for group in map(meta.row_group, range(meta.num_row_groups)):
        statistics = next(c.statistics for c in map(group.column, range(group.num_columns)) if c.path_in_schema == key)
        if statistics is None or not statistics.has_min_max:
            return whole
        groups.append((statistics.min, statistics.max, group.num_rows))
    cuts, seen = [], 0
    for least, _, rows in sorted(groups):  # a cut where a part's share of the rows is reached
        if len(cuts) < parts - 1 and seen + rows / 2 >= meta.num_rows * (len(cuts) + 1) / parts:
            cuts.append(least)
        seen += rows
    cuts = sorted(set(cuts) - {min(groups)[0]}) if cuts else []  # a cut at the least key would leave a part empty
    if not cuts:
        return whole
    planned = []
    for number, (low, high) in enumerate(zip([None, *cuts], [*cuts, None], strict=True), start=1):
        overlapping = [
            g
            for g, (least, most, _) in enumerate(groups)
            if (high is None or least < high) and (low is None or most >= low)
        ]
        straddling = frozenset(
            g
            for g in overlapping
            if (low is not None and groups[g][0] < low) or (high is not None and groups[g][1] >= high)
        )
        planned.append(_Part(f"{dataset.table}_{number}", low, high, overlapping, straddling))
    return planned


def _load_part(
    dataset: Dataset, parquet: str, url: str, part: _Part, partitioned: bool, progress: _Progress, server_version: int
) -> int:
    """One connection's part, in one transaction: its rows as one ADBC ingest (a binary COPY), then its primary key
    and indexes. Its table is new to the transaction (created here, or a partition truncated here), so with
    wal_level=minimal none of it goes through the WAL. Then its statistics, the parts side by side."""
    source = pq.ParquetFile(parquet)
    schema = source.schema_arrow.remove(source.schema_arrow.get_field_index("source_line"))
    names = [c.name for c in dataset.columns]
    key = dataset.primary_key[0]

    def batches() -> Iterator[pa.RecordBatch]:
        for group in part.row_groups:
            for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=names, row_groups=[group]):
                yield batch.filter(part.keeps(batch.column(key))) if group in part.straddling else batch

    def counted() -> Iterator[pa.RecordBatch]:
        # Decoding Parquet on a thread of its own overlaps it with the COPY, which ADBC encodes on this one.
        for batch in read_ahead(batches()):
            yield from _chunks(batch)
            progress.add(batch.num_rows)

    with adbc.connect(url, db_kwargs=ADBC_OPTIONS) as conn, conn.cursor() as cur:
        cur.execute(
            f'TRUNCATE "{INCOMING_SCHEMA}"."{part.table}"'
            if partitioned
            else create_table_sql(dataset, INCOMING_SCHEMA)
        )
        rows = cur.adbc_ingest(
            part.table,
            pa.RecordBatchReader.from_batches(schema, counted()),
            mode="append",
            db_schema_name=INCOMING_SCHEMA,
        )
        progress.log.info(f"{part.table}: {rows:,} rows copied, building its primary key and indexes")
        if partitioned:  # the other parts use the other cores
            cur.execute("SET max_parallel_maintenance_workers = 0")
        for statement in [
            *index_sql(dataset, INCOMING_SCHEMA, part.table),
            primary_key_sql(dataset, INCOMING_SCHEMA, part.table),
        ]:
            cur.execute(statement)
        if server_version >= 150000:
            # The part's rows reach the server's activity statistics at its commit, not up to a second later, after
            # ANALYZE has counted none changed since: else autovacuum would soon analyze the table again.
            cur.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        cur.execute(f'ANALYZE "{INCOMING_SCHEMA}"."{part.table}"')
        conn.commit()
    return rows


def _chunks(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """``batch`` in zero-copy slices of about ``COPY_CHUNK_BYTES``."""
    rows = max(1, COPY_CHUNK_BYTES * batch.num_rows // max(batch.nbytes, 1))
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


def _ingest(control: psycopg.Connection, dataset: Dataset, parquet: str, url: str, log: logging.Logger) -> int:
    """Load the frame into ``imdb_incoming.<table>``, indexed and analyzed: one part per core, each into its own
    range partition, loaded, indexed and analyzed side by side; then the parent's primary key and indexes, attached
    from the partitions', and its own statistics.

    Measured on title.principals (2 cores): two COPYs into one committed table took 5.2-6.1 s for 9.8M rows, but
    then the table is WAL-logged and its heap interleaves the two streams, so its two indexes took 8.0 s more; two
    partitions, each loaded and indexed in its own transaction, took 9.6-11.4 s for all of it. For 20M rows, one
    table (one COPY, then parallel index builds) took 31.4 s, two partitions 23.5 s."""
    source = pq.ParquetFile(parquet)
    parts = _plan_parts(dataset, source, database.available_connections(control, settings.load_connections()))
    partitioned = len(parts) > 1
    incoming = qualified(INCOMING_SCHEMA, dataset.table)
    with control.transaction():
        control.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(incoming))
        if partitioned:
            key = sql.Identifier(dataset.primary_key[0])
            control.execute(
                sql.SQL(create_table_sql(dataset, INCOMING_SCHEMA) + " PARTITION BY RANGE ({})").format(key)
            )
            for part in parts:
                control.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                        qualified(INCOMING_SCHEMA, part.table), incoming, part.bounds_sql()
                    )
                )
    progress = _Progress(dataset, source.metadata.num_rows, log)
    with ThreadPoolExecutor(len(parts)) as pool:
        version = control.info.server_version
        loaded = [
            pool.submit(_load_part, dataset, parquet, url, part, partitioned, progress, version) for part in parts
        ]
        rows = sum(future.result() for future in loaded)
    how = f"{len(parts)} key-range partitions" if partitioned else "one table"
    log.info(f"{dataset.table}: {rows:,} rows copied and indexed on {len(parts)} connection(s), into {how}")
    if partitioned:
        with control.transaction():
            _attach_indexes(control, dataset, parts)
        _analyze_parent(control, url, dataset, parts)
    return rows


def _analyze_parent(control: psycopg.Connection, url: str, dataset: Dataset, parts: list[_Part]) -> None:
    """The partitioned table's own statistics, which the planner uses for the table as a whole; its partitions have
    theirs from their parts. ANALYZE of a partitioned table analyzes each partition too (PostgreSQL 18's ANALYZE
    ONLY does not), or skips those it cannot lock at once with SKIP_LOCKED: a second session holds the partitions'
    SHARE UPDATE EXCLUSIVE locks meanwhile, which block only another ANALYZE, VACUUM or DDL. The parent's sample
    still reads their rows. title.basics at 1/10: 1.94 s with the partitions analyzed twice, 1.77 s without."""
    partitions = sql.SQL(", ").join(qualified(INCOMING_SCHEMA, part.table) for part in parts)
    with psycopg.connect(url, autocommit=True) as holder, holder.transaction():
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(partitions))
        control.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(qualified(INCOMING_SCHEMA, dataset.table)))


def _attach_indexes(conn: psycopg.Connection, dataset: Dataset, parts: list[_Part]) -> None:
    """The partitioned table's primary key and indexes, made of its partitions' (attaching builds nothing)."""
    parent = qualified(INCOMING_SCHEMA, dataset.table)
    keys = sql.SQL(_quoted(dataset.primary_key))
    (pkey, _), *secondary = index_names(dataset)
    conn.execute(
        sql.SQL("ALTER TABLE ONLY {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(parent, sql.Identifier(pkey), keys)
    )
    for name, columns in secondary:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON ONLY {} ({})").format(sql.Identifier(name), parent, sql.SQL(_quoted(columns)))
        )
    for part in parts:
        for (name, _), (part_index, _) in zip(index_names(dataset), index_names(dataset, part.table), strict=True):
            conn.execute(
                sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
                    qualified(INCOMING_SCHEMA, name), qualified(INCOMING_SCHEMA, part_index)
                )
            )


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


_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass"
)


def _swap(control: psycopg.Connection, dataset: Dataset, source_sha256: str, rows: int, log) -> list[str]:
    """Replace ``imdb.<table>`` with the incoming table in one transaction, retrying while readers hold locks."""
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with control.transaction():
                control.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                current = control.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{dataset.table}",)).fetchone()[0]
                views = _dependent_views(control, dataset) if current else []
                if current:
                    # Take the locks in the order a reader of the outermost view does (view, inner views, table),
                    # so a reader and the swap wait for each other instead of deadlocking. (A materialized view's
                    # readers never reach the table, and LOCK refuses them: DROP ... CASCADE locks those.)
                    outermost_first = [v.qualified for v in reversed(views) if not v.materialized]
                    outermost_first.append(qualified(SCHEMA, dataset.table))
                    control.execute(
                        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(", ").join(outermost_first))
                    )
                    control.execute(sql.SQL("DROP TABLE {} CASCADE").format(qualified(SCHEMA, dataset.table)))
                control.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        qualified(INCOMING_SCHEMA, dataset.table), sql.Identifier(SCHEMA)
                    )
                )
                for (partition,) in control.execute(_PARTITIONS, (f"{SCHEMA}.{dataset.table}",)).fetchall():
                    control.execute(
                        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                            qualified(INCOMING_SCHEMA, partition), sql.Identifier(PARTITION_SCHEMA)
                        )
                    )
                for view in views:
                    view.recreate(control)
                _describe(control, dataset, source_sha256)
                control.execute(
                    f"""INSERT INTO {META_SCHEMA}.loads (table_name, source_sha256, rows) VALUES (%s, %s, %s)
                        ON CONFLICT (table_name) DO UPDATE
                        SET source_sha256 = excluded.source_sha256, rows = excluded.rows, loaded_at = now()""",
                    (dataset.table, source_sha256, rows),
                )
            names = [f"{v.schema}.{v.name}" for v in views]
            log.info(
                f"{SCHEMA}.{dataset.table} swapped in" + (f"; recreated views {', '.join(names)}" if names else "")
            )
            return names
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as error:
            log.warning(
                f"{SCHEMA}.{dataset.table} is busy ({type(error).__name__}, attempt {attempt} of {SWAP_ATTEMPTS}); "
                "retrying the swap"
            )
            time.sleep(min(2.0 * attempt, 10.0))
    raise RuntimeError(f"could not swap {SCHEMA}.{dataset.table}: readers held it for every attempt")


def _describe(conn: psycopg.Connection, dataset: Dataset, source_sha256: str) -> None:
    table = qualified(SCHEMA, dataset.table)
    comment = f"IMDb {dataset.file_name}: {dataset.description} Source sha256 {source_sha256}."
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(comment)))
    for column in dataset.columns:
        target = sql.SQL("{}.{}").format(table, sql.Identifier(column.name))
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(column.description)))
