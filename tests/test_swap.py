"""The atomic swap: readers see the whole old table or the whole new one, and views built on a table survive."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import threading

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imdb_assets import load, metadata
from imdb_assets.catalog import SCHEMA
from imdb_assets.sample import generate
from tests.conftest import BASICS, PRINCIPALS, RATINGS


def test_readers_see_old_or_new_table_and_dependent_views_survive(platform, mirror_dir, tmp_path, db_url):
    platform.refresh(BASICS)
    old_count = platform.query(f"SELECT count(*) FROM {SCHEMA}.title_basics")[0][0]
    platform.query(
        f"""CREATE SCHEMA analytics;
        CREATE VIEW analytics.stg_titles AS SELECT tconst, primary_title, genres FROM {SCHEMA}.title_basics;
        CREATE VIEW analytics.title_count AS SELECT count(*) AS n FROM analytics.stg_titles;
        CREATE MATERIALIZED VIEW analytics.genre_counts AS
            SELECT unnest(genres) AS genre, count(*) AS n FROM analytics.stg_titles GROUP BY 1;
        DO $$ BEGIN CREATE ROLE analyst; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
        GRANT SELECT ON analytics.stg_titles TO analyst;
        COMMENT ON VIEW analytics.stg_titles IS 'staging: one row per title';
        COMMENT ON COLUMN analytics.stg_titles.primary_title IS 'as promoted'"""
    )
    generate(tmp_path / "new", 60_000, seed=21, only=["title.basics"])
    shutil.copy(tmp_path / "new" / BASICS.file_name, mirror_dir / BASICS.file_name)

    seen: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def read_continuously():
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    seen.append(conn.execute("SELECT n FROM analytics.title_count").fetchone()[0])
                except psycopg.Error as error:
                    errors.append(error)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        result = platform.refresh(BASICS)
    finally:
        stop.set()
        reader.join()
    new_count = platform.query(f"SELECT count(*) FROM {SCHEMA}.title_basics")[0][0]
    assert new_count != old_count
    assert errors == []
    assert seen and set(seen) <= {old_count, new_count}
    assert seen[0] == old_count and seen[-1] == new_count

    assert platform.query("SELECT n FROM analytics.title_count") == [(new_count,)]
    genre_total = platform.query("SELECT sum(n) FROM analytics.genre_counts")[0][0]
    assert genre_total == platform.query(f"SELECT count(*) FROM {SCHEMA}.title_basics, unnest(genres)")[0][0]
    comment = platform.query("SELECT obj_description('analytics.stg_titles'::regclass)")
    assert comment == [("staging: one row per title",)]
    assert platform.query("SELECT col_description('analytics.stg_titles'::regclass, 2)") == [("as promoted",)]
    assert platform.query("SELECT has_table_privilege('analyst', 'analytics.stg_titles', 'SELECT')") == [(True,)]
    table_event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[0] == SCHEMA)
    assert table_event.materialization.metadata["recreated_views"].value == [
        "analytics.stg_titles",
        "analytics.genre_counts",
        "analytics.title_count",
    ]
    assert platform.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'imdb.title_basics'::regclass AND contype = 'p'"
    ) == [("title_basics_pkey",)]
    assert platform.query(STATISTICS, "imdb", "title_basics") == [(False, len(BASICS.columns))]
    assert platform.query(ANALYZED, "imdb.title_basics") == [(1, 0)]


STATISTICS = """
SELECT inherited, count(*)::int FROM pg_stats WHERE schemaname = %s AND tablename = %s GROUP BY inherited
"""
ANALYZED = "SELECT analyze_count, n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = %s::regclass"
PARTITIONS = """
SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = %s::regclass ORDER BY c.relname
"""


def _in_groups(platform, table: pa.Table, name: str, groups: int = 7) -> str:
    path = platform.store.root / name
    pq.write_table(table, path, row_group_size=len(table) // groups + 1)
    return str(path)


def test_a_frame_of_many_row_groups_loads_into_key_range_partitions_side_by_side(platform, db_url, caplog, monkeypatch):
    monkeypatch.setattr(load, "MIN_PART_ROWS", 1)  # the test's few rows, shared as a large frame's would be
    platform.refresh(RATINGS)
    frame = pq.read_table(platform.store.parquet_path(RATINGS))
    before = platform.table(RATINGS)
    streams = min(os.cpu_count() or 1, 7)
    assert streams >= 2, "this machine has one core: the parallel path is not exercised"
    platform.query("CREATE VIEW public.well_rated AS SELECT tconst FROM imdb.title_ratings WHERE average_rating >= 8")
    well_rated = platform.query("SELECT * FROM public.well_rated ORDER BY 1")

    log = logging.getLogger("test_load")
    with caplog.at_level(logging.INFO, logger=log.name):
        result = load.load_table(
            RATINGS, _in_groups(platform, frame, "sorted.parquet"), db_url, source_sha256="s", log=log
        )
    assert (
        f"{len(frame):,} rows copied and indexed on {streams} connection(s), into {streams} key-range partitions"
        in (caplog.text)
    )
    assert result.rows == len(frame) and platform.table(RATINGS) == before  # same rows, whichever part took them
    partitions = platform.query(PARTITIONS, "imdb.title_ratings")
    assert [(schema, name) for schema, name, _ in partitions] == [
        ("imdb_partitions", f"title_ratings_{n}") for n in range(1, streams + 1)
    ]
    ranges = [re.fullmatch(r"FOR VALUES FROM \((.+)\) TO \((.+)\)", bound).groups() for _, _, bound in partitions]
    assert ranges[0][0] == "MINVALUE" and ranges[-1][1] == "MAXVALUE"  # contiguous ranges covering every key
    assert all(high == low for (_, high), (low, _) in itertools.pairwise(ranges))
    per_partition = platform.query("SELECT count(*) FROM imdb.title_ratings GROUP BY tableoid")
    assert len(per_partition) == streams and all(n > 0 for (n,) in per_partition)
    group_rows = len(frame) // 7 + 1  # even parts: cut at row groups, within one row group of each other
    assert max(per_partition)[0] - min(per_partition)[0] <= group_rows, per_partition
    assert platform.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'imdb.title_ratings'::regclass AND contype = 'p'"
    ) == [("title_ratings_pkey",)]
    assert platform.query("SELECT indisvalid FROM pg_index WHERE indrelid = 'imdb.title_ratings'::regclass") == [
        (True,)
    ]
    assert platform.query("SELECT * FROM public.well_rated ORDER BY 1") == well_rated  # recreated on the new table
    # Statistics for the whole table and for each partition, each partition analyzed once, by its own part, after
    # its rows were counted: autovacuum has no change left to analyze again.
    columns = len(RATINGS.columns)
    assert platform.query(STATISTICS, "imdb", "title_ratings") == [(True, columns)]
    for _, name, _ in partitions:
        assert platform.query(STATISTICS, "imdb_partitions", name) == [(False, columns)]
        assert platform.query(ANALYZED, f"imdb_partitions.{name}") == [(1, 0)]
    size = metadata.relation_metadata(db_url, "imdb.title_ratings")["table_bytes"]
    names = [f"{schema}.{name}" for schema, name, _ in partitions]
    assert size > 0 and platform.query(
        "SELECT sum(pg_total_relation_size(name::regclass))::bigint FROM unnest(%s::text[]) name", names
    ) == [(size,)]

    # Rows in no order at all: every row group spans every range, each part keeps its own rows; the old partitions
    # go with the old table.
    shuffled = frame.take(np.random.default_rng(0).permutation(len(frame)))
    load.load_table(RATINGS, _in_groups(platform, shuffled, "shuffled.parquet"), db_url, source_sha256="x", log=log)
    assert platform.table(RATINGS) == before
    assert platform.query(
        "SELECT count(*) FROM pg_tables WHERE schemaname IN ('imdb_partitions', 'imdb_incoming')"
    ) == [(streams,)]
    assert platform.query("SELECT * FROM public.well_rated ORDER BY 1") == well_rated
    partitions = platform.query(PARTITIONS, "imdb.title_ratings")

    # The first row again at the end: the key still catches it, and the table and its partitions stay as they were.
    duplicated = _in_groups(platform, pa.concat_tables([frame, frame.slice(0, 1)]), "duplicated.parquet")
    with pytest.raises(adbc.IntegrityError, match=r"Key \(tconst\)=\(tt\d+\) is duplicated"):
        load.load_table(RATINGS, duplicated, db_url, source_sha256="duplicated", log=log)
    assert platform.table(RATINGS) == before
    assert platform.query("SELECT to_regclass('imdb_incoming.title_ratings')") == [(None,)]
    assert platform.query(PARTITIONS, "imdb.title_ratings") == partitions


def test_a_key_shared_by_two_row_groups_lands_whole_in_one_partition(platform, db_url, monkeypatch):
    """title.principals: a title's rows run on across a row-group boundary, where a partition's range may begin."""
    monkeypatch.setattr(load, "MIN_PART_ROWS", 1)
    platform.refresh(PRINCIPALS)
    frame = pq.read_table(platform.store.parquet_path(PRINCIPALS))
    before = platform.table(PRINCIPALS)
    path = _in_groups(platform, frame, "principals.parquet", groups=len(frame) // 1000)
    groups = pq.ParquetFile(path)
    shared = [
        g
        for g in range(groups.num_row_groups - 1)
        if groups.metadata.row_group(g).column(0).statistics.max
        == groups.metadata.row_group(g + 1).column(0).statistics.min
    ]
    assert shared, "no title spans two row groups: the case is not exercised"

    load.load_table(PRINCIPALS, path, db_url, source_sha256="shared")
    assert platform.table(PRINCIPALS) == before
    assert platform.query(
        "SELECT count(*) FROM (SELECT tconst FROM imdb.title_principals GROUP BY tconst "
        "HAVING count(DISTINCT tableoid) > 1) t"
    ) == [(0,)]
    assert len(platform.query(PARTITIONS, "imdb.title_principals")) == min(os.cpu_count() or 1, groups.num_row_groups)
    assert platform.query(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'imdb.title_principals'::regclass ORDER BY 1"
    ) == [("imdb.title_principals_nconst_idx", True), ("imdb.title_principals_pkey", True)]


def test_the_copy_gets_every_row_once_in_slices_that_fit_a_socket_buffer(platform, db_url, monkeypatch):
    """ADBC sends each batch whole before encoding the next: slices of a socket buffer's size overlap the two."""
    platform.refresh(BASICS)
    before = platform.table(BASICS)
    batch = pq.read_table(platform.store.parquet_path(BASICS)).combine_chunks().to_batches()[0]
    assert batch.nbytes > load.COPY_CHUNK_BYTES, "too few rows for the batch to be sliced"
    chunks = list(load._chunks(batch))
    assert len(chunks) >= 2 and all(chunk.nbytes <= 1.5 * load.COPY_CHUNK_BYTES for chunk in chunks)
    assert pa.Table.from_batches(chunks).equals(pa.Table.from_batches([batch]))

    monkeypatch.setattr(load, "COPY_CHUNK_BYTES", 1)  # a slice per row: no row is lost or sent twice at the seams
    result = load.load_table(BASICS, str(platform.store.parquet_path(BASICS)), db_url, source_sha256="by the row")
    assert result.rows == batch.num_rows and platform.table(BASICS) == before
