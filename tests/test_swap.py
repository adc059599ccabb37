"""The atomic swap: readers see the whole old table or the whole new one, and views built on a table survive."""

from __future__ import annotations

import logging
import os
import shutil
import threading

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imdb_assets import load
from imdb_assets.catalog import SCHEMA
from imdb_assets.sample import generate
from tests.conftest import BASICS, RATINGS


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


def test_a_frame_of_many_row_groups_loads_on_parallel_connections_and_keys_are_checked_across_them(
    platform, db_url, caplog
):
    platform.refresh(RATINGS)
    frame = pq.read_table(platform.store.parquet_path(RATINGS))
    before = platform.table(RATINGS)
    many_groups = platform.store.root / "many_groups.parquet"
    pq.write_table(frame, many_groups, row_group_size=len(frame) // 7 + 1)
    streams = min(os.cpu_count() or 1, pq.ParquetFile(many_groups).num_row_groups)
    assert streams >= 2, "this machine has one core: the parallel path is not exercised"

    log = logging.getLogger("test_load")
    with caplog.at_level(logging.INFO, logger=log.name):
        result = load.load_table(RATINGS, str(many_groups), db_url, source_sha256="many", log=log)
    assert f"{len(frame):,} rows copied on {streams} connection(s)" in caplog.text
    assert result.rows == len(frame) and platform.table(RATINGS) == before  # same rows, whichever stream sent them
    assert platform.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'imdb.title_ratings'::regclass AND contype = 'p'"
    ) == [("title_ratings_pkey",)]

    # The first row again at the end: the two copies travel on different connections; the key still catches it.
    duplicated = pa.concat_tables([frame, frame.slice(0, 1)])
    pq.write_table(duplicated, many_groups, row_group_size=len(frame) // 7 + 1)
    with pytest.raises(psycopg.errors.UniqueViolation):
        load.load_table(RATINGS, str(many_groups), db_url, source_sha256="duplicated", log=log)
    assert platform.table(RATINGS) == before
    assert platform.query("SELECT to_regclass('imdb_incoming.title_ratings')") == [(None,)]
