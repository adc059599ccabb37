"""The dbt layer after a build, when something changes: a release of one file rebuilds only the models downstream of
it, a broken upstream row fails its check and blocks the marts, a mart breaking its contract keeps its built table,
and source freshness follows each table's last load. Each test builds the constructed IMDb of tests/world.py anew
(apart from tests/test_dbt.py, so that the two modules can run side by side)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import AssetSelection, materialize
from dagster_dbt import DbtProject

from imdb_assets import history
from imdb_assets.catalog import DATASETS
from imdb_assets.dbt import PROJECT_DIR
from imdb_assets.defs.dbt import assets as dbt_assets
from imdb_assets.defs.dbt.project import prepare
from tests.conftest import RATINGS, changed_keys, materialized_keys
from tests.imdb_files import write_files
from tests.test_dbt import FORCE_REBUILD, check_results
from tests.world import WORLD


def standing_results(result) -> dict[tuple[str, str], str | None]:
    """Each check evaluated by the run: the run whose result it repeats (it stands), or None (it was tested)."""
    return {
        (e.asset_key.to_user_string(), e.check_name): e.metadata["result_of_run"].value
        if "result_of_run" in e.metadata
        else None
        for e in result.get_asset_check_evaluations()
    }


def test_a_refresh_of_one_file_rebuilds_only_the_models_downstream_of_it(world, tmp_path):
    first = world.refresh(models=True)
    ratings = [dict(r) for r in WORLD["title.ratings"]]
    ratings[0]["num_votes"] = 60000
    write_files(tmp_path / "world", {"title.ratings": ratings})

    result = world.refresh(models=True)
    assert changed_keys(result) == {
        "raw/title_ratings",
        "parsed/title_ratings",
        "imdb/title_ratings",
        "imdb/title_ratings_history",
        "imdb_staging/stg_imdb__title_ratings",
        "imdb_marts/titles",
        "imdb_marts/series_episodes",
        "imdb_marts/genre_year_stats",
        "imdb_intermediate/int_recommendation_titles",
        "imdb_marts/title_recommendations",
        "imdb_marts/title_search",  # ranks by votes
        # The ratings history, which the ratings' loads append to, and the trends built from it.
        "imdb_staging/stg_imdb__title_ratings_history",
        "imdb_marts/title_rating_trends",
        "imdb_marts/title_trending_ranks",
    }
    assert world.query("SELECT num_votes FROM imdb_marts.titles WHERE tconst = 'tt0000001'") == [(60000,)]

    # The checks of the rebuilt models were tested; those of the others passed on the data they still hold and stand.
    second = standing_results(result)
    assert second.keys() == standing_results(first).keys()
    assert [check for check, run in second.items() if check[0] in changed_keys(result) and run] == []
    people = [run for (asset, _), run in second.items() if asset == "imdb_marts/people"]
    assert people and set(people) == {first.run_id}

    again = world.refresh(models=True)
    assert changed_keys(again) == set()  # nothing changed: no dbt run at all
    third = standing_results(again)
    passed = {(e.asset_key.to_user_string(), e.check_name) for e in again.get_asset_check_evaluations() if e.passed}
    assert {check for check, run in third.items() if run} == passed
    assert {third[check] for check in passed} <= {first.run_id, result.run_id}


def test_a_broken_upstream_row_fails_its_check_and_blocks_the_marts(world):
    world.refresh(models=True)
    titles_before = world.query("SELECT * FROM imdb_marts.titles ORDER BY tconst")
    # Force a duplicate key into stg_imdb__title_ratings, which the table's primary key would otherwise refuse.
    world.query("ALTER TABLE imdb.title_ratings DROP CONSTRAINT title_ratings_pkey")
    world.query("INSERT INTO imdb.title_ratings VALUES ('tt0000001', 1.0, 1)")

    models = AssetSelection.assets(*dbt_assets.imdb_dbt_models.keys)
    result = materialize(
        [dbt_assets.imdb_dbt_models],
        selection=models,
        resources=world.resources,
        instance=world.instance,
        raise_on_error=False,
        run_config=FORCE_REBUILD,  # the table changed behind Dagster's back: no data version says so
    )
    assert not result.success
    assert check_results(result)["unique_stg_imdb__title_ratings_tconst"] is False
    built = materialized_keys(result)
    assert "imdb_staging/stg_imdb__title_ratings" in built  # the view is rebuilt, then its check fails
    blocked = {"titles", "series_episodes", "genre_year_stats", "title_recommendations"}
    assert not {f"imdb_marts/{m}" for m in blocked} & built
    assert "imdb_marts/title_people" in built  # does not read ratings, so not blocked
    assert world.query("SELECT * FROM imdb_marts.titles ORDER BY tconst") == titles_before


def test_a_mart_whose_sql_breaks_its_contract_fails_its_build_and_keeps_the_built_table(world, tmp_path):
    world.refresh(models=True)
    genres_before = world.query("SELECT * FROM imdb_marts.title_genres ORDER BY tconst, genre")
    copy = shutil.copytree(PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    genres = copy / "models" / "marts" / "title_genres.sql"
    genres.write_text(genres.read_text().replace("genre.position::integer", "genre.position"))  # bigint
    edited = DbtProject(project_dir=copy, profiles_dir=copy)
    prepare(edited)

    result = world.refresh(models=True, dbt_project=edited, raise_on_error=False)
    assert not result.success
    assert "imdb_marts/title_genres" not in materialized_keys(result)  # the only model edited, so the only stale one
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "Compilation Error in model title_genres" in str(failure), failure
    assert "assert_columns_equivalent" in str(failure), failure  # the contract's check of names and types
    assert world.query("SELECT * FROM imdb_marts.title_genres ORDER BY tconst, genre") == genres_before


def source_freshness(db_url: str, target: Path) -> dict[str, str]:
    """`dbt source freshness` by the platform's entry point: each table's status."""
    command = [sys.executable, "-m", "imdb_assets.cli", "dbt", "source", "freshness", "--target-path", str(target)]
    subprocess.run(command, env=os.environ | {"DATABASE_URL": db_url}, capture_output=True, text=True)
    results = json.loads((target / "sources.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1]: r["status"] for r in results}


def test_source_freshness_reads_when_each_table_was_loaded(world, tmp_path):
    world.refresh()
    tables = {dataset.table for dataset in DATASETS} | {history.HISTORY_TABLE}  # the history, as its ratings
    assert source_freshness(world.db_url, tmp_path / "fresh") == dict.fromkeys(tables, "pass")

    # IMDb publishes daily: a table loaded three days ago warns, one loaded eight days ago is an error.
    ago = "UPDATE imdb_meta.loads SET loaded_at = now() - %s::interval WHERE table_name = %s"
    world.query(ago, "3 days", RATINGS.table)
    world.query(ago, "8 days", "title_basics")
    statuses = source_freshness(world.db_url, tmp_path / "stale")
    stale = {RATINGS.table: "warn", history.HISTORY_TABLE: "warn", "title_basics": "error"}
    assert statuses == {**dict.fromkeys(tables, "pass"), **stale}
