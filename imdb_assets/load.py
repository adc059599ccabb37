"""Load a parsed frame into PostgreSQL and swap it in atomically, keeping the table's identity.

``imdb.<table>`` is a table partitioned by range of its first key column, created once (so the schema's default
privileges apply, and its owner, grants, comments, views, triggers and policies are its users' to keep). A load
builds new partitions beside it: the frame is bulk-ingested by ADBC (binary COPY) on up to one connection per core,
each taking a range of the key (chosen from the Parquet row groups' statistics) into a standalone table of
``imdb_partitions`` named for this load, created in the transaction of its COPY (with ``wal_level=minimal`` it skips
the WAL), indexed in it and committed; then each part analyzes its table, side by side. Each part carries a CHECK
constraint equal to its key range, so attaching it scans nothing.

Then one short transaction swaps the partitions: it drops the old ones and attaches the new ones (the parent's
primary key and indexes take the partitions' own: no rebuild). Readers see the whole old table or the whole new one;
any failure before that commit leaves the old table untouched. After it the parent gets its own statistics and
materialized views built on it are refreshed.

What a partition swap cannot keep (a foreign key referencing the table, a publication of it) makes the load fail
before it changes anything, naming it. A parent from an older version of the platform (a plain table, or another
layout) is replaced once, in the same transaction, carrying over its owner, grants, comments and dependent views.
"""

from __future__ import annotations

import logging
import secrets
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
# Every column type of the catalog is built in, so ADBC's own table of them will do: a connection then opens
# without reading the server's pg_type.
ADBC_OPTIONS = {"adbc.postgresql.type_resolver_mode": "builtin"}


@dataclass(frozen=True)
class LoadResult:
    rows: int
    seconds: float
    refreshed_views: list[str]  # materialized views built on the table, refreshed with its new rows

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class RefreshRefused(RuntimeError):
    """``imdb.<table>`` carries something the refresh would break or lose; nothing was changed."""


def with_application_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"application_name": name}
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


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
        for schema in (SCHEMA, PARTITION_SCHEMA, META_SCHEMA):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {META_SCHEMA}.loads (
                table_name text PRIMARY KEY,
                source_sha256 text NOT NULL,
                rows bigint NOT NULL,
                loaded_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        # The raw file's Last-Modified, for clients that judge freshness by IMDb's release (the API's /v1/datasets).
        conn.execute(f"ALTER TABLE {META_SCHEMA}.loads ADD COLUMN IF NOT EXISTS source_last_modified text")


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
    dataset: Dataset,
    parquet: str,
    url: str,
    *,
    source_sha256: str,
    source_last_modified: str | None = None,
    log: logging.Logger | None = None,
    connections: int | None = None,
) -> LoadResult:
    """Bulk-load ``parquet`` into new partitions, index and analyze them, then swap them into ``imdb.<table>``,
    on at most ``connections`` connections at once (default: one per core)."""
    if connections is not None and connections < 1:
        raise ValueError(f"connections must be at least 1, not {connections}")
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    app = f"imdb_assets load {dataset.table}"
    with psycopg.connect(with_application_name(url, app), autocommit=True) as control:
        ensure_schemas(control)
        # One load per table at a time, whoever starts it (a run, a sensor-launched run, a backfill).
        control.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
        try:
            _drop_unattached(control, dataset)  # a crashed load's parts
            with control.transaction():  # fail before the work when the swap is bound to be refused
                _refuse_unkept(control, dataset, replacing=_relkind(control, dataset) == "r")
            prefix = f"{dataset.table}_{secrets.token_hex(4)}"
            cores = database.available_connections(control, connections or settings.cpu_count())
            rows, parts = _ingest(control, dataset, parquet, with_application_name(url, app), prefix, cores, log)
            _swap(control, dataset, parts, (source_sha256, source_last_modified), rows, log)
            _analyze_parent(control, url, dataset, parts)
            views = _refresh_materialized_views(control, dataset, log)
        except BaseException:
            _drop_unattached_after_failure(url, dataset)
            raise
        finally:
            if not control.closed and not control.broken:
                control.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
    return LoadResult(rows, time.monotonic() - started, views)


def _relkind(conn: psycopg.Connection, dataset: Dataset) -> str | None:
    """'p' for a partitioned ``imdb.<table>``, 'r' for a plain one (an older version's), None if there is none."""
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (f"{SCHEMA}.{dataset.table}",)
    ).fetchone()
    return row[0] if row else None


_UNATTACHED = rf"""
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = '{PARTITION_SCHEMA}'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
  AND c.relname ~ ('^' || %s || '_[0-9a-f]{{8}}_[0-9]+$')
"""


def _drop_unattached(conn: psycopg.Connection, dataset: Dataset) -> None:
    """Drop the parts of loads of this table that never got attached (a load that failed or crashed)."""
    with conn.transaction():
        for (name,) in conn.execute(_UNATTACHED, (dataset.table,)).fetchall():
            conn.execute(sql.SQL("DROP TABLE {}").format(qualified(PARTITION_SCHEMA, name)))


def _drop_unattached_after_failure(url: str, dataset: Dataset) -> None:
    """Best effort, on a connection of its own (the load's may be broken): the next load drops leftovers anyway."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            _drop_unattached(conn, dataset)
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

    def check_sql(self, key: str) -> sql.Composable:
        """A CHECK constraint equal to the range (bar NULL, which the key's NOT NULL excludes), by which attaching
        the table as the partition of that range proves it holds no other rows without reading them."""
        column = sql.Identifier(key)
        conditions = [sql.SQL("{} >= {}").format(column, sql.Literal(self.low))] if self.low is not None else []
        if self.high is not None:
            conditions.append(sql.SQL("{} < {}").format(column, sql.Literal(self.high)))
        if not conditions:
            return sql.SQL("")
        name = sql.Identifier(f"{self.table}_range")
        return sql.SQL(", CONSTRAINT {} CHECK ({})").format(name, sql.SQL(" AND ").join(conditions))

    def keeps(self, keys: pa.Array) -> pa.Array:
        """Which of a straddling row group's ``keys`` are this part's."""
        low = pa.scalar(self.low, keys.type) if self.low is not None else None
        high = pa.scalar(self.high, keys.type) if self.high is not None else None
        if low is not None and high is not None:
            return pc.and_(pc.greater_equal(keys, low), pc.less(keys, high))
        return pc.greater_equal(keys, low) if low is not None else pc.less(keys, high)


def _plan_parts(dataset: Dataset, source: pq.ParquetFile, cores: int, prefix: str) -> list[_Part]:
    """Key ranges for up to one connection per core, of even rows (at least ``MIN_PART_ROWS`` each), cut at row
    groups' smallest keys: a frame in key order (IMDb's files are) gives each part whole row groups, bar the one
    key a cut may share. A frame in any other order loads just as correctly, slower: each part reads every row group
    that overlaps its range and keeps its own rows. Without min/max statistics, or too few rows to share, the load
    is one part, of every key. Parts are tables named ``<prefix>_<n>``."""
    meta = source.metadata
    whole = [_Part(f"{prefix}_1", None, None, list(range(meta.num_row_groups)), frozenset())]
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
        planned.append(_Part(f"{prefix}_{number}", low, high, overlapping, straddling))
    return planned


def _load_part(
    dataset: Dataset, parquet: str, url: str, part: _Part, alone: bool, progress: _Progress, server_version: int
) -> int:
    """One connection's part, in one transaction: its table created, its rows as one ADBC ingest (a binary COPY),
    then its primary key and indexes. The table is new to the transaction, so with wal_level=minimal none of it
    goes through the WAL. Then its statistics, the parts side by side."""
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
        cur.execute(create_table_sql(dataset, PARTITION_SCHEMA, part.table, part.check_sql(key)).as_string(None))
        rows = cur.adbc_ingest(
            part.table,
            pa.RecordBatchReader.from_batches(schema, counted()),
            mode="append",
            db_schema_name=PARTITION_SCHEMA,
        )
        progress.log.info(f"{part.table}: {rows:,} rows copied, building its primary key and indexes")
        if not alone:  # the other parts use the other cores
            cur.execute("SET max_parallel_maintenance_workers = 0")
        for statement in [
            *index_sql(dataset, PARTITION_SCHEMA, part.table),
            primary_key_sql(dataset, PARTITION_SCHEMA, part.table),
        ]:
            cur.execute(statement)
        if server_version >= 150000:
            # The part's rows reach the server's activity statistics at its commit, not up to a second later, after
            # ANALYZE has counted none changed since: else autovacuum would soon analyze the table again.
            cur.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        cur.execute(f'ANALYZE "{PARTITION_SCHEMA}"."{part.table}"')
        conn.commit()
    return rows


def _chunks(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """``batch`` in zero-copy slices of about ``COPY_CHUNK_BYTES``."""
    rows = max(1, COPY_CHUNK_BYTES * batch.num_rows // max(batch.nbytes, 1))
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


def _ingest(
    control: psycopg.Connection, dataset: Dataset, parquet: str, url: str, prefix: str, cores: int, log: logging.Logger
) -> tuple[int, list[_Part]]:
    """Load the frame into new tables of ``imdb_partitions``, one part per core (``cores``), each a key range,
    loaded, indexed and analyzed side by side. Returns the rows and the parts.

    A table per part, rather than several COPYs into one table: each is created and filled in one transaction, so
    it skips the WAL, and its indexes are built on a heap of its own in key order rather than on interleaved
    streams (docs/benchmarks.md has the comparison)."""
    source = pq.ParquetFile(parquet)
    parts = _plan_parts(dataset, source, cores, prefix)
    progress = _Progress(dataset, source.metadata.num_rows, log)
    with ThreadPoolExecutor(len(parts)) as pool:
        version = control.info.server_version
        alone = len(parts) == 1
        loaded = [pool.submit(_load_part, dataset, parquet, url, part, alone, progress, version) for part in parts]
        rows = sum(future.result() for future in loaded)
    how = "one partition" if alone else f"{len(parts)} key-range partitions"
    log.info(f"{dataset.table}: {rows:,} rows copied and indexed on {len(parts)} connection(s), into {how}")
    return rows, parts


def _analyze_parent(control: psycopg.Connection, url: str, dataset: Dataset, parts: list[_Part]) -> None:
    """The partitioned table's own statistics, which the planner uses for the table as a whole; its partitions have
    theirs from their parts. ANALYZE of a partitioned table analyzes each partition too (PostgreSQL 18's ANALYZE
    ONLY does not), or skips those it cannot lock at once with SKIP_LOCKED: a second session holds the partitions'
    SHARE UPDATE EXCLUSIVE locks meanwhile, which block only another ANALYZE, VACUUM or DDL. The parent's sample
    still reads their rows, and no partition is analyzed twice."""
    partitions = sql.SQL(", ").join(qualified(PARTITION_SCHEMA, part.table) for part in parts)
    with psycopg.connect(url, autocommit=True) as holder, holder.transaction():
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(partitions))
        control.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(qualified(SCHEMA, dataset.table)))


def platform_comment(dataset: Dataset) -> str:
    """The table's comment when the platform creates it; the source of its rows is in ``imdb_meta.loads``."""
    return f"IMDb {dataset.file_name}: {dataset.description}"


def _create_parent(conn: psycopg.Connection, dataset: Dataset) -> None:
    """``imdb.<table>``, partitioned by range of its first key column, with the primary key and indexes that its
    partitions' own become part of when they are attached, and the platform's comments."""
    table = qualified(SCHEMA, dataset.table)
    key = sql.Identifier(dataset.primary_key[0])
    conn.execute(sql.SQL("{} PARTITION BY RANGE ({})").format(create_table_sql(dataset, SCHEMA), key))
    (pkey, columns), *secondary = index_names(dataset)
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            table, sql.Identifier(pkey), sql.SQL(_quoted(columns))
        )
    )
    for name, columns in secondary:
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} ({})").format(sql.Identifier(name), table, sql.SQL(_quoted(columns)))
        )
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(platform_comment(dataset))))
    for column in dataset.columns:
        target = sql.SQL("{}.{}").format(table, sql.Identifier(column.name))
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(column.description)))


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


def _layout_difference(conn: psycopg.Connection, dataset: Dataset, part: _Part) -> str | None:
    """How the existing ``imdb.<table>`` differs from the layout this load's partitions need (None: it does not):
    plain rather than partitioned, other columns, types or collations than ``part`` (built from the catalog), another
    partition key, or one of the catalog's indexes missing. A user's extra index is no difference."""
    parent = f"{SCHEMA}.{dataset.table}"
    if _relkind(conn, dataset) != "p":
        return "it is a plain table, from an older version of the platform"
    if (
        conn.execute(_COLUMNS, (parent,)).fetchall()
        != conn.execute(_COLUMNS, (f"{PARTITION_SCHEMA}.{part.table}",)).fetchall()
    ):
        return "its columns differ from the catalog's"
    key_matches = conn.execute(
        "SELECT pg_get_partkeydef(%s::regclass) = 'RANGE (' || quote_ident(%s) || ')'", (parent, dataset.primary_key[0])
    ).fetchone()[0]
    if not key_matches:
        return "its partition key differs from the catalog's"
    indexes = {(primary, tuple(columns)) for primary, columns in conn.execute(_INDEXES, (parent,)).fetchall()}
    needed = {(True, dataset.primary_key)} | {(False, columns) for columns in dataset.indexes}
    if missing := needed - indexes:
        return f"it lacks the index on {', '.join(_quoted(columns) for _, columns in sorted(missing))}"
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


def _refuse_unkept(conn: psycopg.Connection, dataset: Dataset, *, replacing: bool) -> None:
    """Raise ``RefreshRefused`` naming what ``imdb.<table>`` carries that the refresh would break or drop: a
    foreign key referencing it (its rows are replaced wholesale) or a publication of it (subscribers would not see
    the swap); and when ``replacing`` an older version's table, what a new table would not have: triggers,
    policies, rules, constraints, indexes and columns of the user's, tables inheriting from it."""
    if _relkind(conn, dataset) is None:
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
    _refuse_unkept(conn, dataset, replacing=True)
    owner, comment, grants, column_comments = conn.execute(_KEPT, (f"{SCHEMA}.{dataset.table}",)).fetchone()
    conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(table))
    _create_parent(conn, dataset)
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
    if (comment.fetchone()[0] or "").startswith(f"{platform_comment(dataset)} Source sha256 "):
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


def _swap(
    control: psycopg.Connection, dataset: Dataset, parts: list[_Part], source: tuple[str, str | None], rows: int, log
) -> None:
    """In one transaction, retried while readers hold locks: drop the partitions of ``imdb.<table>`` and attach
    ``parts`` in their place (creating the table first if there is none, or replacing one of another layout)."""
    parent = qualified(SCHEMA, dataset.table)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with control.transaction():
                control.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                old = []
                if _relkind(control, dataset) is None:
                    _create_parent(control, dataset)
                    _refuse_unkept(control, dataset, replacing=False)  # a publication of all tables, or of imdb
                elif why := _layout_difference(control, dataset, parts[0]):
                    _replace_parent(control, dataset, why, log)
                else:
                    control.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(parent))
                    _refuse_unkept(control, dataset, replacing=False)
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


def _refresh_materialized_views(control: psycopg.Connection, dataset: Dataset, log: logging.Logger) -> list[str]:
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
