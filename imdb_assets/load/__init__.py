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

A release older than the one the table holds (by the Last-Modified each load records) is refused under the table's
lock, before any work, unless the caller allows it: the last guard of release order after the download's own.

What a partition swap cannot keep (a foreign key referencing the table, a publication of it) makes the load fail
before it changes anything, naming it, and so does a parent laid out otherwise than the catalog says (other columns,
another partition key): the platform does not migrate its tables, a dropped one is created anew by the next load.

`load_table` below runs the steps in order: `ddl` (the tables' and indexes' SQL, the schemas), `parts` (the key
ranges, from the Parquet statistics), `ingest` (the parts filled, indexed and analyzed side by side) and `swap` (the
transaction that attaches them, and what it refuses).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from imdb_assets import database, release
from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.load.ddl import (
    CHANGE_LOG,
    LOCK_CLASS,
    META_SCHEMA,
    PARTITION_SCHEMA,
    column_sql,
    create_table_sql,
    ensure_schemas,
    index_names,
    index_sql,
    primary_key_sql,
)
from imdb_assets.load.ingest import analyze_parent, drop_unattached, drop_unattached_after_failure, ingest_parts
from imdb_assets.load.parts import MIN_PART_ROWS
from imdb_assets.load.swap import RefreshRefused, refresh_materialized_views, refuse_before_the_work, swap_partitions
from imdb_assets.settings import cpu_count

__all__ = [
    "CHANGE_LOG",
    "META_SCHEMA",
    "MIN_PART_ROWS",
    "PARTITION_SCHEMA",
    "CurrentLoad",
    "LoadResult",
    "RefreshRefused",
    "column_sql",
    "create_table_sql",
    "current_load",
    "ensure_schemas",
    "index_names",
    "index_sql",
    "load_table",
    "primary_key_sql",
]


@dataclass(frozen=True)
class LoadResult:
    rows: int
    seconds: float
    refreshed_views: list[str]  # materialized views built on the table, refreshed with its new rows

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def with_application_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"application_name": name}
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@dataclass(frozen=True)
class CurrentLoad:
    """What ``imdb.<table>`` holds now: built from which raw file (and its Last-Modified, if it had one), how many
    rows."""

    source_sha256: str
    rows: int
    source_last_modified: str | None


def current_load(conn: psycopg.Connection, dataset: Dataset) -> CurrentLoad | None:
    """The load the current ``imdb.<table>`` came from, if the table exists and was built by the platform."""
    if database.one_row(conn.execute("SELECT to_regclass(%s)", (f"{META_SCHEMA}.loads",)).fetchone())[0] is None:
        return None
    row = conn.execute(
        f"""SELECT source_sha256, rows, source_last_modified FROM {META_SCHEMA}.loads
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
    allow_older_release: bool = False,
    log: logging.Logger | None = None,
    connections: int | None = None,
) -> LoadResult:
    """Bulk-load ``parquet`` into new partitions, index and analyze them, then swap them into ``imdb.<table>``,
    on at most ``connections`` connections at once (default: one per core). A release dated before the table's is
    refused with OlderReleaseRefused unless ``allow_older_release``."""
    if connections is not None and connections < 1:
        raise ValueError(f"connections must be at least 1, not {connections}")
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    app = f"imdb_assets load {dataset.table}"
    with database.connect(with_application_name(url, app)) as control:
        ensure_schemas(control)
        # One load per table at a time, whoever starts it (a run, a sensor-launched run, a backfill).
        control.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
        try:
            held = current_load(control, dataset)
            if held is not None and not allow_older_release:
                release.refuse_older(dataset.file_name, source_last_modified, held.source_last_modified)
            drop_unattached(control, dataset)  # a crashed load's parts
            refuse_before_the_work(control, dataset)
            prefix = f"{dataset.table}_{secrets.token_hex(4)}"
            cores = database.available_connections(control, connections or cpu_count())
            # MIN_PART_ROWS is looked up here at each load, so a test can lower it (monkeypatch load.MIN_PART_ROWS).
            app_url = with_application_name(url, app)
            rows, parts = ingest_parts(control, dataset, parquet, app_url, prefix, cores, MIN_PART_ROWS, log)
            swap_partitions(control, dataset, parts, (source_sha256, source_last_modified), rows, log)
            analyze_parent(control, url, dataset, parts)
            views = refresh_materialized_views(control, dataset, log)
        except BaseException:
            drop_unattached_after_failure(url, dataset)
            raise
        finally:
            if not control.closed and not control.broken:
                control.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
    return LoadResult(rows, time.monotonic() - started, views)
