"""Disk space: a step refused before it writes when its estimate does not fit (a small free-space figure is
simulated, the disk is never filled), a mart whose sort outgrows temp_file_limit failing its step, and the sizes
shown in the metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import AssetSelection, materialize
from dagster_dbt import DbtProject

from imdb_assets import database, disk, settings
from imdb_assets.dbt import PROJECT_DIR
from imdb_assets.defs.dbt.assets import imdb_dbt_models
from imdb_assets.defs.dbt.project import prepare
from imdb_assets.defs.files.assets import imdb_file_assets
from imdb_assets.defs.resources import Warehouse
from tests.conftest import RATINGS, materialized_keys
from tests.imdb_files import write_files
from tests.world import WORLD

GIB = 1 << 30
TITLES_VOTES = "SELECT tconst, num_votes FROM imdb_marts.titles ORDER BY tconst"
GENRES = "SELECT * FROM imdb_marts.title_genres ORDER BY tconst, genre"


def test_a_table_estimate_scales_the_last_load_per_row_or_the_frame_for_a_first_load():
    assert disk.table_estimate(rows=2_000, last_rows=1_000, last_bytes=50_000, parquet_bytes=7) == 100_000
    assert disk.table_estimate(rows=2_000, last_rows=None, last_bytes=None, parquet_bytes=1_000) == 18_000


def test_a_need_over_the_free_space_is_refused_naming_both(monkeypatch, tmp_path):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 2_500_000)
    disk.refuse_without_room("refreshing x", {"raw file": 1_000_000}, tmp_path, 2.0)  # 2 MB fit in 2.5
    with pytest.raises(disk.NotEnoughDisk) as refused:
        disk.refuse_without_room("refreshing x", {"raw file": 1_000_000, "table": 500_000}, tmp_path, 2.0)
    assert str(refused.value).startswith(
        f"refreshing x needs about 3.0 MB of disk (raw file 1.0 MB, table 500.0 kB, times 2 for temporary files "
        f"and growth) and the disk of {tmp_path} has 2.5 MB free"
    )
    disk.refuse_without_room("refreshing x", {"table": 10**15}, tmp_path, 0)  # 0: no check


def test_free_bytes_measures_the_disk_a_folder_not_yet_made_would_be_on(tmp_path):
    assert disk.free_bytes(tmp_path / "data" / "raw") == shutil.disk_usage(tmp_path).free > 0


def test_the_embedded_server_limits_temporary_files(pg_server, monkeypatch, tmp_path):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 40 * GIB + 123)
    assert database.temp_file_limit(tmp_path, None) == "10GB"  # a quarter, in whole GB
    monkeypatch.setattr(disk, "free_bytes", lambda folder: GIB)
    assert database.temp_file_limit(tmp_path, None) == "1GB"  # never less
    assert database.temp_file_limit(tmp_path, "-1") == "-1"
    monkeypatch.setenv("IMDB_TEMP_FILE_LIMIT", "20 gigabytes")
    with pytest.raises(settings.SettingsError, match="IMDB_TEMP_FILE_LIMIT='20 gigabytes'"):
        settings.load()
    with database.connect(pg_server) as conn:
        assert conn.execute("SHOW temp_file_limit").fetchone() != ("-1",)


def test_a_refresh_refused_for_lack_of_disk_keeps_the_old_tables_and_marts(world, tmp_path, monkeypatch):
    built = world.refresh(models=True)
    events = built.get_asset_materialization_events()
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in events}
    for relation in ("imdb/title_ratings", "imdb_marts/titles"):
        sizes = metadata[relation]
        assert sizes["heap_bytes"].value > 0 and sizes["index_bytes"].value > 0, relation
        assert sizes["table_bytes"].value == sizes["heap_bytes"].value + sizes["index_bytes"].value
        # The tests' server is the session's, outside this data folder: it holds the raw files and frames.
        assert sizes["data_folder_bytes"].value >= world.store.parquet_path(RATINGS).stat().st_size
        assert sizes["data_disk_free_bytes"].value > 0
    ratings, titles = world.table(RATINGS), world.query(TITLES_VOTES)
    # A new release of the ratings, one vote more for each title, on a disk with 1 kB free.
    new_release = [rating | {"num_votes": rating["num_votes"] + 1} for rating in WORLD["title.ratings"]]
    write_files(tmp_path / "world", {"title.ratings": new_release})
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 1_000)
    # The tests' database is given by its URL; as the embedded server's, its tables and marts count too.
    monkeypatch.setattr(Warehouse, "embedded", property(lambda warehouse: True))

    refused = world.refresh(RATINGS, models=True, raise_on_error=False)
    assert not refused.success and materialized_keys(refused) == set()
    failure = next(e for e in refused.all_events if e.is_step_failure).step_failure_data.error
    assert "refreshing title.ratings.tsv.gz needs about" in str(failure) and "table" in str(failure), failure
    assert "has 1.0 kB free: refused before changing anything" in str(failure), failure
    assert world.table(RATINGS) == ratings and world.query(TITLES_VOTES) == titles

    # The dbt step alone, asked to rebuild every model, is refused before it builds one.
    forced = materialize(
        [*imdb_file_assets, imdb_dbt_models],
        selection=AssetSelection.assets(imdb_dbt_models),
        resources=world.resources,
        instance=world.instance,
        run_config={"ops": {"imdb_dbt_models": {"config": {"force": True}}}},
        raise_on_error=False,
    )
    assert not forced.success and materialized_keys(forced) == set()
    failure = next(e for e in forced.all_events if e.is_step_failure).step_failure_data.error
    assert "the dbt step needs about" in str(failure) and "rebuilt tables" in str(failure), failure
    assert world.query(TITLES_VOTES) == titles

    monkeypatch.undo()  # with the disk back, the same refresh goes through
    world.refresh(RATINGS, models=True)
    assert world.query(TITLES_VOTES) == [(tconst, votes + 1 if votes else votes) for tconst, votes in titles]


def test_a_mart_whose_sort_outgrows_temp_file_limit_fails_its_step_and_keeps_the_old_mart(world, tmp_path: Path):
    world.refresh(models=True)
    genres = world.query(GENRES)
    # A sort of 3M integers in title_genres spills past work_mem into temporary files, here limited to 1MB (as a
    # superuser may: ALTER DATABASE, for the sessions dbt opens).
    copy = shutil.copytree(PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    model = copy / "models" / "marts" / "title_genres.sql"
    runaway = "(select count(*) from (select g from generate_series(1, 3000000) as g order by g desc) as runaway)"
    model.write_text(model.read_text() + f"and {runaway} > 0\n")  # the model ends with its WHERE clause
    edited = DbtProject(project_dir=copy, profiles_dir=copy)
    prepare(edited)
    (name,) = world.query("SELECT current_database()")[0]
    world.query(f"ALTER DATABASE \"{name}\" SET temp_file_limit = '1MB'")

    result = world.refresh(models=True, dbt_project=edited, raise_on_error=False)
    assert not result.success
    assert "imdb_marts/title_genres" not in materialized_keys(result)
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "temporary file size exceeds temp_file_limit (1024kB)" in str(failure), failure
    assert world.query(GENRES) == genres
    assert world.query("SELECT to_regclass('imdb_marts.title_genres__dbt_tmp')") == [(None,)]
