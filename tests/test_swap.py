"""The atomic swap: readers see the whole old table or the whole new one, and views built on a table survive."""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import threading

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imdb_assets import load, settings
from imdb_assets.catalog import SCHEMA
from imdb_assets.defs import metadata
from imdb_assets.defs.files.keys import parsed_key, raw_key
from imdb_assets.defs.resources import Warehouse
from imdb_assets.load import ingest
from imdb_dev.generator import generate
from tests.conftest import BASICS, PRINCIPALS, RATINGS, UNATTACHED


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
    # The views are the same objects, on the same table: only the materialized one needed its rows refreshed.
    assert table_event.materialization.metadata["refreshed_views"].value == ["analytics.genre_counts"]
    assert platform.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'imdb.title_basics'::regclass AND contype = 'p'"
    ) == [("title_basics_pkey",)]
    assert platform.query(STATISTICS, "imdb", "title_basics") == [(True, len(BASICS.columns))]
    ((schema, name, bounds),) = platform.query(PARTITIONS, "imdb.title_basics")  # a frame too small to split
    assert bounds == "FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"
    assert platform.query(ANALYZED, f"{schema}.{name}") == [(1, 0)]


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
    streams = min(settings.cpu_count(), 7)
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
    assert {schema for schema, _, _ in partitions} == {"imdb_partitions"}
    load_ids = {
        re.fullmatch(rf"title_ratings_([0-9a-f]{{8}})_{n}", name)[1] for n, (_, name, _) in enumerate(partitions, 1)
    }
    assert len(partitions) == streams and len(load_ids) == 1  # named for their load, numbered in key order
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
    assert platform.query("SELECT * FROM public.well_rated ORDER BY 1") == well_rated  # the same view, on the new rows
    # Statistics for the whole table and for each partition, each partition analyzed once, by its own part, after
    # its rows were counted: autovacuum has no change left to analyze again.
    columns = len(RATINGS.columns)
    assert platform.query(STATISTICS, "imdb", "title_ratings") == [(True, columns)]
    for _, name, _ in partitions:
        assert platform.query(STATISTICS, "imdb_partitions", name) == [(False, columns)]
        assert platform.query(ANALYZED, f"imdb_partitions.{name}") == [(1, 0)]
    warehouse = Warehouse(database_url=db_url, data_dir=str(platform.store.root))
    size = metadata.relation_metadata(warehouse, "imdb.title_ratings")["table_bytes"]
    names = [f"{schema}.{name}" for schema, name, _ in partitions]
    assert size > 0 and platform.query(
        "SELECT sum(pg_total_relation_size(name::regclass))::bigint FROM unnest(%s::text[]) name", names
    ) == [(size,)]

    # Rows in no order at all: every row group spans every range, each part keeps its own rows; the old partitions
    # go with the old table.
    shuffled = frame.take(np.random.default_rng(0).permutation(len(frame)))
    load.load_table(RATINGS, _in_groups(platform, shuffled, "shuffled.parquet"), db_url, source_sha256="x", log=log)
    assert platform.table(RATINGS) == before
    assert platform.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_partitions'") == [(streams,)]
    assert platform.query("SELECT * FROM public.well_rated ORDER BY 1") == well_rated
    partitions = platform.query(PARTITIONS, "imdb.title_ratings")

    # The first row again at the end: the key still catches it, and the table and its partitions stay as they were.
    duplicated = _in_groups(platform, pa.concat_tables([frame, frame.slice(0, 1)]), "duplicated.parquet")
    with pytest.raises(adbc.IntegrityError, match=r"Key \(tconst\)=\(tt\d+\) is duplicated"):
        load.load_table(RATINGS, duplicated, db_url, source_sha256="duplicated", log=log)
    assert platform.table(RATINGS) == before
    assert platform.query(UNATTACHED) == [(0,)]
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
    assert len(platform.query(PARTITIONS, "imdb.title_principals")) == min(settings.cpu_count(), groups.num_row_groups)
    assert platform.query(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'imdb.title_principals'::regclass ORDER BY 1"
    ) == [("imdb.title_principals_nconst_idx", True), ("imdb.title_principals_pkey", True)]


def test_the_copy_gets_every_row_once_in_slices_that_fit_a_socket_buffer(platform, db_url, monkeypatch):
    """ADBC sends each batch whole before encoding the next: slices of a socket buffer's size overlap the two."""
    platform.refresh(BASICS)
    before = platform.table(BASICS)
    batch = pq.read_table(platform.store.parquet_path(BASICS)).combine_chunks().to_batches()[0]
    assert batch.nbytes > ingest.COPY_CHUNK_BYTES, "too few rows for the batch to be sliced"
    chunks = list(ingest.chunks(batch))
    assert len(chunks) >= 2 and all(chunk.nbytes <= 1.5 * ingest.COPY_CHUNK_BYTES for chunk in chunks)
    assert pa.Table.from_batches(chunks).equals(pa.Table.from_batches([batch]))

    monkeypatch.setattr(ingest, "COPY_CHUNK_BYTES", 1)  # a slice per row: no row is lost or sent twice at the seams
    result = load.load_table(BASICS, str(platform.store.parquet_path(BASICS)), db_url, source_sha256="by the row")
    assert result.rows == batch.num_rows and platform.table(BASICS) == before


ROLES = """
DO $$ BEGIN
    CREATE ROLE swap_default_reader; CREATE ROLE swap_table_reader; CREATE ROLE swap_column_reader;
    CREATE ROLE swap_owner; CREATE ROLE swap_rls_reader;
EXCEPTION WHEN duplicate_object THEN NULL; END $$
"""
USAGE = "GRANT USAGE ON SCHEMA imdb TO swap_default_reader, swap_table_reader, swap_column_reader, swap_rls_reader"
OWNER = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass"


def _changed(platform, name: str, drop: int = 100) -> str:
    """The frame of the last refresh of title.ratings without its last ``drop`` rows, a Parquet file of its own."""
    frame = pq.read_table(platform.store.parquet_path(RATINGS))
    return _in_groups(platform, frame.slice(0, len(frame) - drop), name)


def _as(platform, role: str, statement: str) -> list[tuple]:
    with psycopg.connect(platform.db_url) as conn, conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        return conn.execute(statement).fetchall()


def test_a_reload_keeps_grants_default_privileges_comments_and_owner(platform, db_url):
    platform.query(ROLES)
    platform.query(
        "CREATE SCHEMA imdb; ALTER DEFAULT PRIVILEGES IN SCHEMA imdb GRANT SELECT ON TABLES TO swap_default_reader"
    )
    platform.query(USAGE)
    platform.refresh(RATINGS)
    platform.query("INSERT INTO imdb.title_ratings VALUES ('tt9999999', 5.0, 1)")  # gone at the next reload
    rows = platform.query("SELECT count(*) FROM imdb.title_ratings")[0][0]
    table_id = platform.query("SELECT 'imdb.title_ratings'::regclass::oid")
    # The platform's own comment, set when it created the table: the sha256 is in imdb_meta.loads.
    assert platform.query("SELECT obj_description('imdb.title_ratings'::regclass)") == [
        (f"IMDb {RATINGS.file_name}: {RATINGS.description}",)
    ]
    platform.query(
        """GRANT SELECT ON imdb.title_ratings TO swap_table_reader;
        GRANT SELECT (tconst, num_votes) ON imdb.title_ratings TO swap_column_reader;
        COMMENT ON TABLE imdb.title_ratings IS 'ratings, as our team uses them';
        COMMENT ON COLUMN imdb.title_ratings.num_votes IS 'votes, ours';
        ALTER TABLE imdb.title_ratings OWNER TO swap_owner"""
    )

    result = load.load_table(RATINGS, _changed(platform, "changed.parquet"), db_url, source_sha256="changed")
    assert result.rows == rows - 101
    assert platform.query("SELECT 'imdb.title_ratings'::regclass::oid") == table_id  # the same table, new rows
    for role in ("swap_default_reader", "swap_table_reader"):
        assert _as(platform, role, "SELECT count(*) FROM imdb.title_ratings") == [(rows - 101,)]
    assert _as(platform, "swap_column_reader", "SELECT count(num_votes) FROM imdb.title_ratings") == [(rows - 101,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(platform, "swap_column_reader", "SELECT average_rating FROM imdb.title_ratings")
    assert platform.query("SELECT obj_description('imdb.title_ratings'::regclass)") == [
        ("ratings, as our team uses them",)
    ]
    assert platform.query("SELECT col_description('imdb.title_ratings'::regclass, 3)") == [("votes, ours",)]
    assert platform.query("SELECT col_description('imdb.title_ratings'::regclass, 1)") == [
        (RATINGS.columns[0].description,)
    ]
    assert platform.query(OWNER, "imdb.title_ratings") == [("swap_owner",)]
    assert platform.query("SELECT source_sha256, rows FROM imdb_meta.loads") == [("changed", rows - 101)]


def test_a_foreign_key_or_a_publication_is_refused_before_anything_changes(platform, db_url):
    platform.refresh(RATINGS)
    before = platform.table(RATINGS)
    partitions = platform.query(PARTITIONS, "imdb.title_ratings")
    loaded = platform.query("SELECT * FROM imdb_meta.loads")
    changed = _changed(platform, "changed.parquet")
    platform.query(
        f"""CREATE TABLE public.watchlist (tconst text REFERENCES imdb.title_ratings (tconst));
        INSERT INTO public.watchlist VALUES ('{before[0][0]}')"""
    )

    def refused(match: str) -> None:
        with pytest.raises(load.RefreshRefused, match=match):
            load.load_table(RATINGS, changed, db_url, source_sha256="changed")
        assert platform.table(RATINGS) == before
        assert platform.query(PARTITIONS, "imdb.title_ratings") == partitions
        assert platform.query("SELECT * FROM imdb_meta.loads") == loaded
        assert platform.query(UNATTACHED) == [(0,)]

    refused(r"^imdb\.title_ratings: its refresh would break foreign key watchlist_tconst_fkey of watchlist; nothing")
    platform.query("DROP TABLE public.watchlist; CREATE PUBLICATION ratings_feed FOR TABLE imdb.title_ratings")
    refused(r"would break publication ratings_feed;")
    platform.query("DROP PUBLICATION ratings_feed")
    assert load.load_table(RATINGS, changed, db_url, source_sha256="changed").rows == len(before) - 100


def test_a_trigger_and_a_row_level_security_policy_keep_working_after_a_reload(platform, db_url):
    platform.query(ROLES)
    platform.refresh(RATINGS)
    platform.query(
        f"""{USAGE};
        CREATE TABLE public.rating_changes (tconst text, votes int);
        CREATE FUNCTION public.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO public.rating_changes VALUES (NEW.tconst, NEW.num_votes); RETURN NEW; END $$;
        CREATE TRIGGER record_change AFTER UPDATE ON imdb.title_ratings
            FOR EACH ROW EXECUTE FUNCTION public.record_change();
        ALTER TABLE imdb.title_ratings ENABLE ROW LEVEL SECURITY;
        CREATE POLICY well_rated ON imdb.title_ratings FOR SELECT TO swap_rls_reader USING (average_rating >= 8);
        GRANT SELECT ON imdb.title_ratings TO swap_rls_reader"""
    )

    load.load_table(RATINGS, _changed(platform, "changed.parquet"), db_url, source_sha256="changed")
    (tconst, votes), *_ = platform.query("SELECT tconst, num_votes FROM imdb.title_ratings ORDER BY tconst")
    platform.query("UPDATE imdb.title_ratings SET num_votes = num_votes + 1 WHERE tconst = %s", tconst)
    assert platform.query("SELECT * FROM public.rating_changes") == [(tconst, votes + 1)]
    well_rated = platform.query("SELECT count(*) FROM imdb.title_ratings WHERE average_rating >= 8")
    assert 0 < well_rated[0][0] < platform.query("SELECT count(*) FROM imdb.title_ratings")[0][0]
    assert _as(platform, "swap_rls_reader", "SELECT count(*) FROM imdb.title_ratings") == well_rated


def test_a_table_laid_out_otherwise_than_the_catalog_is_refused_with_its_rows_kept(platform, db_url, monkeypatch):
    """The platform does not migrate its tables: a load refuses one whose layout is not the catalog's, before the
    work and again in the swap, naming the difference; dropped, it is created anew by the next load."""
    platform.refresh(RATINGS)
    frame = _changed(platform, "changed.parquet")
    platform.query("ALTER TABLE imdb.title_ratings ALTER COLUMN num_votes TYPE bigint, ADD COLUMN note text")
    before = platform.table(RATINGS)
    partitions = platform.query(PARTITIONS, "imdb.title_ratings")
    loaded = platform.query("SELECT * FROM imdb_meta.loads")

    def refused(difference: str) -> None:
        with pytest.raises(load.RefreshRefused) as refusal:
            load.load_table(RATINGS, frame, db_url, source_sha256="changed")
        assert str(refusal.value) == (
            f"imdb.title_ratings: {difference}; nothing was changed. The platform does not migrate its tables: drop "
            "it (DROP TABLE imdb.title_ratings CASCADE, after saving what you built on it) and refresh again, which "
            "creates it as the catalog says (docs/operations.md, Upgrades)."
        )
        assert platform.table(RATINGS) == before
        assert platform.query(PARTITIONS, "imdb.title_ratings") == partitions
        assert platform.query("SELECT * FROM imdb_meta.loads") == loaded
        assert platform.query(UNATTACHED) == [(0,)]

    columns = (
        "its columns differ from the catalog's: num_votes is bigint rather than integer, note is not in the catalog"
    )
    refused(columns)
    with monkeypatch.context() as swap_only:  # the swap checks again, under its lock, with the parts built
        swap_only.setattr(load, "refuse_before_the_work", lambda conn, dataset: None)
        refused(columns)

    platform.query(
        f"""DROP TABLE imdb.title_ratings;
        {load.create_table_sql(RATINGS, SCHEMA).as_string(None)};
        INSERT INTO imdb.title_ratings VALUES ('tt0000001', 5.5, 10)"""
    )
    before, partitions = platform.table(RATINGS), []
    refused("it is not a partitioned table")

    platform.query("DROP TABLE imdb.title_ratings CASCADE")
    assert load.load_table(RATINGS, frame, db_url, source_sha256="changed").rows == len(pq.read_table(frame))
    assert platform.query("SELECT relkind FROM pg_class WHERE oid = 'imdb.title_ratings'::regclass") == [("p",)]
    assert platform.query(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'imdb.title_ratings'::regclass AND attname = 'num_votes'"
    ) == [("integer",)]


def test_parts_attach_without_a_scan_and_a_crashed_loads_parts_are_dropped(platform, db_url, monkeypatch):
    """Each part's CHECK constraint is its range: attaching it proves the partition constraint without reading
    the rows, which the server says at debug1."""
    monkeypatch.setattr(load, "MIN_PART_ROWS", 1)
    platform.refresh(RATINGS, layers=(raw_key, parsed_key))
    frame = _in_groups(platform, pq.read_table(platform.store.parquet_path(RATINGS)), "groups.parquet")
    platform.query(
        f"""CREATE SCHEMA imdb_partitions;
        {load.create_table_sql(RATINGS, "imdb_partitions", "title_ratings_0badcafe_1").as_string(None)};
        CREATE TABLE imdb_partitions.title_ratings_backup (tconst text)"""
    )
    notices: list[str] = []
    connect = psycopg.connect

    def debug_connect(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        conn.execute("SET client_min_messages = debug1")
        return conn

    monkeypatch.setattr(psycopg, "connect", debug_connect)
    with pytest.raises(ValueError, match="connections must be at least 1, not 0"):
        load.load_table(RATINGS, frame, db_url, source_sha256="none", connections=0)
    for connections, parts in [(1, 1), (None, min(settings.cpu_count(), 7))]:
        notices.clear()
        load.load_table(RATINGS, frame, db_url, source_sha256="s", connections=connections)
        partitions = [name for _, name, _ in platform.query(PARTITIONS, "imdb.title_ratings")]
        assert len(partitions) == parts
        implied = [n for n in notices if n.endswith("is implied by existing constraints")]
        assert implied == [
            f'partition constraint for table "{name}" is implied by existing constraints' for name in partitions
        ]
    monkeypatch.undo()
    # The crashed load's part is gone, a table of another name is not.
    assert platform.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'imdb_partitions' AND tablename NOT IN "
        "(SELECT relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid)"
    ) == [("title_ratings_backup",)]
