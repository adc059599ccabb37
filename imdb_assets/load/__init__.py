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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from imdb_assets import database, history, release, storage
from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.diff import FrameDiff, diff_frames
from imdb_assets.load.apply import apply_diff
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
from imdb_assets.storage import Location

__all__ = [
    "CHANGE_LOG",
    "DIFF",
    "FULL",
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
    "kept_frame",
    "load_table",
    "primary_key_sql",
]


FULL, DIFF = "full", "diff"


@dataclass(frozen=True)
class LoadResult:
    rows: int
    seconds: float
    refreshed_views: list[str]  # materialized views built on the table, refreshed with its new rows
    method: str = FULL  # FULL: new partitions swapped in; DIFF: only the changed rows written
    diff: FrameDiff | None = None  # what changed, when the frame the table held was there to compare with

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


def kept_frame(kept_dir: Location, dataset: Dataset, source_sha256: str) -> Location:
    """Where the load keeps the frame ``imdb.<table>`` holds, named by its raw file's sha256."""
    return kept_dir / f"{dataset.table}.{source_sha256}.parquet"


def _keep_frame(kept_dir: Location, dataset: Dataset, parquet: Location, source_sha256: str) -> None:
    """Keep ``parquet`` as the frame the table now holds (in a folder a hard link: no bytes until the parse
    replaces the frame), and drop the one it held before."""
    storage.ensure_folder(kept_dir)
    target = kept_frame(kept_dir, dataset, source_sha256)
    staged = target.with_suffix(".staged")
    storage.remove(staged)
    storage.keep_copy(parquet, staged)
    storage.publish(staged, target)
    for other in kept_dir.glob(f"{dataset.table}.*.parquet"):
        if other != target:
            other.unlink()


def _comparable(previous: Location, parquet: Location) -> bool:
    """Whether two frames have the same columns and types, so that a diff between them means something."""
    schemas = [storage.parquet_file(frame).schema_arrow for frame in (previous, parquet)]
    return schemas[0].equals(schemas[1], check_metadata=False)


def _record_reload(dataset: Dataset, day: date) -> Callable[[psycopg.Connection], None]:
    """What a full load records in its swap's transaction: one 'reload' row in the change log (anything may have
    changed) and, for title.ratings, the history's rows that differ from the new table."""

    def record(conn: psycopg.Connection) -> None:
        conn.execute(
            f"INSERT INTO {META_SCHEMA}.{CHANGE_LOG} (release_date, table_name, change) VALUES (%s, %s, 'reload')",
            (day, dataset.table),
        )
        if dataset.table == history.RATINGS_TABLE:
            conn.execute(history.append_from_table_sql(day))

    return record


def load_table(
    dataset: Dataset,
    parquet: str | Location,
    url: str,
    *,
    source_sha256: str,
    source_last_modified: str | None = None,
    allow_older_release: bool = False,
    log: logging.Logger | None = None,
    connections: int | None = None,
    kept_dir: Location | None = None,
    diff_max_share: float = 0.0,
) -> LoadResult:
    """Load ``parquet`` into ``imdb.<table>``: as a diff when the frame the table holds is kept in ``kept_dir`` and
    at most ``diff_max_share`` of its rows changed, else whole (new partitions bulk-loaded on at most
    ``connections`` connections at once, default one per core, indexed, analyzed and swapped in). The frame is then
    kept in ``kept_dir`` for the next release's diff. A release dated before the table's is refused with
    OlderReleaseRefused unless ``allow_older_release``."""
    if connections is not None and connections < 1:
        raise ValueError(f"connections must be at least 1, not {connections}")
    log = log or logging.getLogger(__name__)
    parquet = storage.location(parquet)
    started = time.monotonic()
    app = f"imdb_assets load {dataset.table}"
    day = release.release_day(source_last_modified)
    source = (source_sha256, source_last_modified)
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
            app_url = with_application_name(url, app)
            previous = kept_frame(kept_dir, dataset, held.source_sha256) if kept_dir and held else None
            diff = None
            if previous is not None and previous.exists() and _comparable(previous, parquet):
                # The diff's rows are this step's own: on the data folder's disk, or the local disk beside a bucket.
                scratch_dir = kept_dir if isinstance(kept_dir, Path) else None
                with tempfile.TemporaryDirectory(prefix=f".diff-{dataset.table}-", dir=scratch_dir) as scratch:
                    diff = diff_frames(dataset, previous, parquet, Path(scratch))
                    if diff.share <= diff_max_share:
                        apply_diff(app_url, dataset, diff, day, source, log)
                        rows, method = diff.new_rows, DIFF
                    else:
                        log.info(
                            f"{dataset.table}: {diff.share:.2%} of its rows changed, above the diff's "
                            f"{diff_max_share:.2%}: loading it whole"
                        )
            if diff is None or diff.share > diff_max_share:
                prefix = f"{dataset.table}_{secrets.token_hex(4)}"
                cores = database.available_connections(control, connections or cpu_count())
                # MIN_PART_ROWS is looked up here at each load, so a test can lower it (monkeypatch load.MIN_PART_ROWS).
                rows, parts = ingest_parts(control, dataset, parquet, app_url, prefix, cores, MIN_PART_ROWS, log)
                swap_partitions(control, dataset, parts, source, rows, log, _record_reload(dataset, day))
                analyze_parent(control, url, dataset, parts)
                method = FULL
            views = refresh_materialized_views(control, dataset, log)
            if kept_dir is not None:
                _keep_frame(kept_dir, dataset, parquet, source_sha256)
        except BaseException:
            drop_unattached_after_failure(url, dataset)
            raise
        finally:
            if not control.closed and not control.broken:
                control.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, dataset.table))
    return LoadResult(rows, time.monotonic() - started, views, method, diff)
