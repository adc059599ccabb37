"""End to end through Dagster: HTTP mirror -> raw files -> parsed frames -> PostgreSQL tables, in real runs."""

from __future__ import annotations

import email.utils
import gzip
import shutil
import threading
import time

import psycopg
import pytest

from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.defs.files.keys import HISTORY_KEY, parsed_key, raw_key, table_key
from imdb_assets.disk import readable_size
from imdb_assets.download import LocalCopy
from imdb_dev.generator import Manifest, generate
from tests import reference
from tests.conftest import (
    BASICS,
    PRINCIPALS,
    RATINGS,
    SHARED_SAMPLE,
    UNATTACHED,
    Platform,
    changed_keys,
    materialized_keys,
)

HISTORY = HISTORY_KEY.to_user_string()  # appended by each load of title.ratings


def assert_table_matches_file(platform: Platform, dataset, path) -> reference.Expected:
    expected = reference.read(dataset, path)
    assert platform.table(dataset) == sorted(expected.rows.values(), key=lambda r: _sort_key(dataset, r))
    return expected


def _sort_key(dataset, row):
    positions = [i for i, c in enumerate(dataset.columns) if c.name in dataset.primary_key]
    return tuple(row[i] for i in positions)


def rejected_lines(platform: Platform, dataset) -> list[int]:
    lines = platform.store.rejects_path(dataset).read_text(encoding="utf-8").splitlines()[1:]
    return sorted(int(line.split("\t", 1)[0]) for line in lines)


def test_round_trip_every_value_and_exactly_the_malformed_lines(platform, mirror_dir, generated):
    result = platform.refresh()
    manifest = Manifest.read(generated / "manifest.json")
    assert len(materialized_keys(result)) == 3 * len(DATASETS) + 1  # and the ratings history
    for dataset in DATASETS:
        expected = assert_table_matches_file(platform, dataset, mirror_dir / dataset.file_name)
        malformed = sorted(m.line for m in manifest.files[dataset.file_stem].malformed)
        assert malformed, f"the generator put no malformed line in {dataset.file_name}"
        assert rejected_lines(platform, dataset) == malformed == expected.rejected_lines
        assert len(expected.rows) == manifest.files[dataset.file_stem].valid_rows

    table_events = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[0] == SCHEMA
    }
    ratings = table_events[RATINGS.table]
    assert ratings["dagster/row_count"].value == manifest.files["title.ratings"].valid_rows
    assert ratings["rejects"].value == len(manifest.files["title.ratings"].malformed)
    assert ratings["table_bytes"].value > 0
    assert ratings["table_size"].value == readable_size(ratings["table_bytes"].value)
    # The preview is what the table holds, read back: its first rows, every column.
    preview = ratings["preview"].value
    assert [c.name for c in preview.schema.columns] == [c.name for c in RATINGS.columns]
    first = platform.query(f"SELECT tconst, num_votes FROM {SCHEMA}.{RATINGS.table} LIMIT 5")
    assert [(r.data["tconst"], r.data["num_votes"]) for r in preview.records] == first
    # Every layer says where the data came from: the file's URL and the Last-Modified the mirror sent.
    sent = email.utils.formatdate((mirror_dir / RATINGS.file_name).stat().st_mtime, usegmt=True)
    for key in (raw_key(RATINGS), parsed_key(RATINGS), table_key(RATINGS)):
        event = next(e for e in result.get_asset_materialization_events() if e.asset_key == key)
        source = event.materialization.metadata
        assert source["source_url"].value == platform.resources["source"].url(RATINGS), key
        assert source["source_last_modified"].value == sent, key


def test_sizes_read_as_a_person_reads_them():
    assert [readable_size(n) for n in (0, 950, 32_768, 1_400_000, 2_350_000_000)] == [
        "0 B",
        "950 B",
        "32.8 kB",
        "1.4 MB",
        "2.4 GB",
    ]


def test_quirky_text_is_byte_exact(platform, mirror_dir):
    platform.refresh(BASICS, PRINCIPALS)
    titles = [t for (t,) in platform.query(f"SELECT primary_title FROM {SCHEMA}.title_basics")]
    assert any(t.startswith('"') and t.count('"') % 2 == 1 for t in titles), "an unbalanced leading quote"
    assert any("\\" in t for t in titles), "a backslash survives without escape processing"
    assert any(len(t) > 1000 for t in titles), "a very long value"
    assert any(not t.isascii() for t in titles), "non-ASCII text"
    characters = platform.query(f"SELECT characters FROM {SCHEMA}.title_principals WHERE characters IS NOT NULL")
    flat = [c for (values,) in characters for c in values]
    assert any('"' in c for c in flat), "quotes inside characters are decoded from JSON"
    assert max(len(values) for (values,) in characters) >= 20, "long arrays"


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason=f"real IMDb excerpts not found at {SHARED_SAMPLE}")
def test_real_imdb_excerpts_load_with_zero_rejects(tmp_path, data_dir, db_url):
    platform = Platform(f"file://{SHARED_SAMPLE}/", data_dir, db_url, max_reject_fraction=0.0)
    result = platform.refresh()
    for dataset in DATASETS:
        expected = assert_table_matches_file(platform, dataset, SHARED_SAMPLE / dataset.file_name)
        assert expected.rejected_lines == [] and rejected_lines(platform, dataset) == []
        assert len(expected.rows) == 999
    assert platform.query(f"SELECT average_rating::text FROM {SCHEMA}.title_ratings WHERE tconst = 'tt0000001'") == [
        ("5.8",)
    ]
    assert len(materialized_keys(result)) == 3 * len(DATASETS) + 1  # and the ratings history


def test_unchanged_file_rebuilds_nothing_and_changed_file_rebuilds_its_chain(platform, mirror, mirror_dir, tmp_path):
    platform.refresh()
    again = platform.refresh()
    assert len(materialized_keys(again)) == 3 * len(DATASETS) + 1  # every asset reports, none did any work
    assert changed_keys(again) == set()
    assert mirror.gets(RATINGS.file_name) == [200, 304]

    fresh = tmp_path / "fresh"
    generate(fresh, 30_000, seed=99, only=["title.ratings"])
    shutil.copy(fresh / RATINGS.file_name, mirror_dir / RATINGS.file_name)
    third = platform.refresh()
    assert changed_keys(third) == {"raw/title_ratings", "parsed/title_ratings", "imdb/title_ratings", HISTORY}
    assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)


def test_file_url_compares_size_and_mtime(tmp_path, mirror_dir, data_dir, db_url):
    platform = Platform(f"file://{mirror_dir}/", data_dir, db_url)
    assert len(changed_keys(platform.refresh(RATINGS))) == 4  # the three layers and the ratings history
    assert changed_keys(platform.refresh(RATINGS)) == set()
    path = mirror_dir / RATINGS.file_name
    generate(tmp_path / "fresh", 30_000, seed=5, only=["title.ratings"])
    shutil.copy(tmp_path / "fresh" / RATINGS.file_name, path)
    assert changed_keys(platform.refresh(RATINGS)) == {
        "raw/title_ratings",
        "parsed/title_ratings",
        "imdb/title_ratings",
        HISTORY,
    }
    assert_table_matches_file(platform, RATINGS, path)


# Faults: each one must leave the previous table answering with its old rows.


@pytest.fixture
def loaded(platform, mirror_dir):
    """A platform whose ratings are loaded; returns the rows the table holds before the fault."""
    platform.refresh(RATINGS)
    before = platform.table(RATINGS)
    assert before
    return before


def replace_with_new_release(mirror_dir, tmp_path, seed=11):
    generate(tmp_path / f"new{seed}", 30_000, seed=seed, only=["title.ratings"])
    shutil.copy(tmp_path / f"new{seed}" / RATINGS.file_name, mirror_dir / RATINGS.file_name)


def test_truncated_gzip_fails_and_keeps_old_table_and_file(platform, loaded, mirror_dir, tmp_path):
    raw = platform.store.raw_path(RATINGS)
    old_sha = LocalCopy.read(raw).sha256
    replace_with_new_release(mirror_dir, tmp_path)
    data = (mirror_dir / RATINGS.file_name).read_bytes()
    (mirror_dir / RATINGS.file_name).write_bytes(data[: len(data) * 2 // 3])

    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "truncated gzip" in str(failure.event_specific_data.error)
    assert platform.table(RATINGS) == loaded
    assert LocalCopy.read(raw).sha256 == old_sha
    assert gzip.decompress(raw.read_bytes())  # the previous copy is still whole


def test_http_500_is_retried_then_succeeds(platform, loaded, mirror, mirror_dir, tmp_path):
    replace_with_new_release(mirror_dir, tmp_path)
    mirror.fail_next("500", "500")
    result = platform.refresh(RATINGS)
    assert mirror.gets(RATINGS.file_name)[-3:] == [500, 500, 200]
    assert "imdb/title_ratings" in materialized_keys(result)
    assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)


def test_connection_dropped_mid_transfer_is_retried(platform, loaded, mirror, mirror_dir, tmp_path):
    replace_with_new_release(mirror_dir, tmp_path)
    mirror.fail_next("drop")
    platform.refresh(RATINGS)
    assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)


def test_connection_dropped_on_every_attempt_keeps_old_table(platform, loaded, mirror, mirror_dir, tmp_path):
    replace_with_new_release(mirror_dir, tmp_path)
    mirror.fail_next(*["drop"] * 5)
    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success
    assert platform.table(RATINGS) == loaded
    assert not list(platform.store.raw_path(RATINGS).parent.glob(".*.part")), "no partial file left behind"


def test_rejects_above_threshold_fail_and_keep_old_table(platform, loaded, mirror_dir, tmp_path):
    generate(tmp_path / "bad", 30_000, seed=3, malformed_fraction=0.2, only=["title.ratings"])
    shutil.copy(tmp_path / "bad" / RATINGS.file_name, mirror_dir / RATINGS.file_name)
    parquet = platform.store.parquet_path(RATINGS)
    parquet_before = parquet.read_bytes()

    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "above IMDB_MAX_REJECT_FRACTION=0.05" in message and "rejected" in message
    assert failure.step_key == "refresh_title_ratings"
    assert platform.table(RATINGS) == loaded
    assert parquet.read_bytes() == parquet_before
    assert len(rejected_lines(platform, RATINGS)) > 0.1 * len(loaded)


def test_database_connection_killed_during_load_keeps_old_table(platform, loaded, mirror_dir, tmp_path, db_url):
    generate(tmp_path / "big", 600_000, seed=4, only=["title.ratings", "title.principals"])
    for dataset in (RATINGS, PRINCIPALS):
        shutil.copy(tmp_path / "big" / dataset.file_name, mirror_dir / dataset.file_name)
    platform.refresh(PRINCIPALS)  # principals: big enough that its COPY runs long enough to be killed
    principals_before = platform.query(f"SELECT count(*) FROM {SCHEMA}.title_principals")
    generate(tmp_path / "big2", 700_000, seed=8, only=["title.principals"])
    shutil.copy(tmp_path / "big2" / PRINCIPALS.file_name, mirror_dir / PRINCIPALS.file_name)
    platform.refresh(PRINCIPALS, layers=(raw_key,))
    platform.refresh(PRINCIPALS, layers=(parsed_key,))

    killed = []
    done = threading.Event()

    def kill_copy():
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not done.is_set() and not killed:
                killed.extend(
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'imdb_assets load title_principals' AND query ILIKE 'COPY%%'"
                    ).fetchall()
                )
                time.sleep(0.002)

    killer = threading.Thread(target=kill_copy)
    killer.start()
    try:
        result = platform.refresh(PRINCIPALS, layers=(table_key,), raise_on_error=False)
    finally:
        done.set()
        killer.join()
    assert killed, "the load's COPY was never seen running"
    assert not result.success
    assert platform.query(f"SELECT count(*) FROM {SCHEMA}.title_principals") == principals_before
    assert platform.table(RATINGS) == loaded
    assert platform.query(UNATTACHED) == [(0,)]  # the failed load's partitions are gone

    # The next refresh heals it: the file is unchanged, but the table is not built from it, so the chain runs again,
    # reusing the already parsed frame instead of downloading or parsing twice.
    healed = platform.refresh(PRINCIPALS)
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in healed.get_asset_materialization_events()
    }
    assert metadata["raw/title_principals"]["downloaded"].value is False
    assert metadata["parsed/title_principals"]["reused"].value is True
    assert metadata["imdb/title_principals"]["reloaded"].value is True
    assert_table_matches_file(platform, PRINCIPALS, mirror_dir / PRINCIPALS.file_name)
    assert changed_keys(platform.refresh(PRINCIPALS)) == set()
