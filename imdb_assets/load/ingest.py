"""Filling a load's parts: each on a connection of its own, one ADBC ingest (binary COPY) into a new table of
``imdb_partitions``, indexed and committed in the transaction that created it (so with ``wal_level=minimal`` none of
it goes through the WAL), then analyzed; the parts side by side, with the rows sent logged as they go.

Also what becomes of parts that never get attached (a load that failed or crashed): the next load of the table, or
the failing load itself, drops them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
from psycopg import sql

from imdb_assets import database, storage
from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.load.ddl import PARTITION_SCHEMA, create_table_sql, index_sql, primary_key_sql, qualified
from imdb_assets.load.parts import Part, plan_parts
from imdb_assets.parse import read_ahead
from imdb_assets.storage import Location

BATCH_ROWS = 256_000
# ADBC encodes each Arrow batch whole, then sends it, blocking until the server has read all but a socket buffer's
# worth (a Unix socket's is 208 KiB): batches that fit in it let the client encode the next while the server
# copies this one, where large ones leave the two taking turns.
COPY_CHUNK_BYTES = 128 * 1024
# Every column type of the catalog is built in, so ADBC's own table of them will do: a connection then opens
# without reading the server's pg_type.
ADBC_OPTIONS = {"adbc.postgresql.type_resolver_mode": "builtin"}

_UNATTACHED = rf"""
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = '{PARTITION_SCHEMA}'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
  AND c.relname ~ ('^' || %s || '_[0-9a-f]{{8}}_[0-9]+$')
"""


def drop_unattached(conn: psycopg.Connection, dataset: Dataset) -> None:
    """Drop the parts of loads of this table that never got attached (a load that failed or crashed)."""
    with conn.transaction():
        for (name,) in conn.execute(_UNATTACHED, (dataset.table,)).fetchall():
            conn.execute(sql.SQL("DROP TABLE {}").format(qualified(PARTITION_SCHEMA, name)))


def drop_unattached_after_failure(url: str, dataset: Dataset) -> None:
    """Best effort, on a connection of its own (the load's may be broken): the next load drops leftovers anyway."""
    try:
        with database.connect(url, connect_timeout=5) as conn:
            drop_unattached(conn, dataset)
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


def _load_part(
    dataset: Dataset, parquet: Location, url: str, part: Part, alone: bool, progress: _Progress, server_version: int
) -> int:
    """One connection's part, in one transaction: its table created, its rows as one ADBC ingest (a binary COPY),
    then its primary key and indexes. The table is new to the transaction, so with wal_level=minimal none of it
    goes through the WAL. Then its statistics, the parts side by side."""
    source = storage.parquet_file(parquet)
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
            yield from chunks(batch)
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


def chunks(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """``batch`` in zero-copy slices of about ``COPY_CHUNK_BYTES``."""
    rows = max(1, COPY_CHUNK_BYTES * batch.num_rows // max(batch.nbytes, 1))
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


def ingest_parts(
    control: psycopg.Connection,
    dataset: Dataset,
    parquet: Location,
    url: str,
    prefix: str,
    cores: int,
    min_part_rows: int,
    log: logging.Logger,
) -> tuple[int, list[Part]]:
    """Load the frame into new tables of ``imdb_partitions``, one part per core (``cores``, each of at least
    ``min_part_rows``), each a key range, loaded, indexed and analyzed side by side. Returns the rows and the parts.

    A table per part, rather than several COPYs into one table: each is created and filled in one transaction, so
    it skips the WAL, and its indexes are built on a heap of its own in key order rather than on interleaved
    streams (docs/benchmarks.md has the comparison)."""
    source = storage.parquet_file(parquet)
    parts = plan_parts(dataset, source, cores, prefix, min_part_rows)
    progress = _Progress(dataset, source.metadata.num_rows, log)
    with ThreadPoolExecutor(len(parts)) as pool:
        version = control.info.server_version
        alone = len(parts) == 1
        loaded = [pool.submit(_load_part, dataset, parquet, url, part, alone, progress, version) for part in parts]
        rows = sum(future.result() for future in loaded)
    how = "one partition" if alone else f"{len(parts)} key-range partitions"
    log.info(f"{dataset.table}: {rows:,} rows copied and indexed on {len(parts)} connection(s), into {how}")
    return rows, parts


def analyze_parent(control: psycopg.Connection, url: str, dataset: Dataset, parts: list[Part]) -> None:
    """The partitioned table's own statistics, which the planner uses for the table as a whole; its partitions have
    theirs from their parts. ANALYZE of a partitioned table analyzes each partition too (PostgreSQL 18's ANALYZE
    ONLY does not), or skips those it cannot lock at once with SKIP_LOCKED: a second session holds the partitions'
    SHARE UPDATE EXCLUSIVE locks meanwhile, which block only another ANALYZE, VACUUM or DDL. The parent's sample
    still reads their rows, and no partition is analyzed twice."""
    partitions = sql.SQL(", ").join(qualified(PARTITION_SCHEMA, part.table) for part in parts)
    with database.connect(url) as holder, holder.transaction():
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(partitions))
        control.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(qualified(SCHEMA, dataset.table)))
