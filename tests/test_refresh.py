"""What a refresh rebuilds: exactly the dbt models that are stale or missing, by Dagster's data and code versions."""

from __future__ import annotations

import shutil

from dagster_dbt import DbtProject

from imdb_assets.dbt import PROJECT_DIR
from imdb_assets.defs.dbt.project import prepare
from imdb_assets.defs.files.keys import parsed_key, raw_key, table_key
from tests.conftest import changed_keys
from tests.imdb_files import write_files
from tests.world import WORLD

MODELS = {
    *(f"imdb_staging/stg_imdb__{name}" for name in ("name_basics", "title_akas", "title_basics", "title_crew")),
    *(f"imdb_staging/stg_imdb__{name}" for name in ("title_episode", "title_principals", "title_ratings")),
    *(f"imdb_marts/{name}" for name in ("titles", "people", "title_people", "title_genres", "genre_year_stats")),
    *(f"imdb_marts/{name}" for name in ("series_episodes", "title_recommendations", "title_search", "name_search")),
    "imdb_intermediate/int_recommendation_titles",
    "imdb_intermediate/int_title_aka_texts",
    "imdb_staging/stg_imdb__title_ratings_history",
    "imdb_marts/title_rating_trends",
    "imdb_marts/title_trending_ranks",
}


def rebuilt_models(result) -> set[str]:
    return {
        key for key in changed_keys(result) if key.startswith(("imdb_staging/", "imdb_intermediate/", "imdb_marts/"))
    }


def test_marts_are_built_after_the_files_alone_and_a_dropped_mart_alone_is_rebuilt(world):
    world.refresh(layers=(raw_key, parsed_key, table_key))  # the three file groups, no model yet
    assert rebuilt_models(world.refresh(models=True)) == MODELS
    assert world.query("SELECT count(*) FROM imdb_marts.titles") == [(len(WORLD["title.basics"]),)]

    assert changed_keys(world.refresh(models=True)) == set()  # nothing changed: nothing rebuilt

    people = world.query("SELECT * FROM imdb_marts.title_people ORDER BY tconst, nconst, category")
    world.query("DROP TABLE imdb_marts.title_people CASCADE")
    result = world.refresh(models=True)
    # Rebuilt from the same inputs by the same code, it holds what it held: what reads it is left alone.
    assert rebuilt_models(result) == {"imdb_marts/title_people"}
    assert world.query("SELECT * FROM imdb_marts.title_people ORDER BY tconst, nconst, category") == people
    why = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "title_people")
    assert why.materialization.metadata["rebuilt_because"].value == "its relation is missing from the database"


def test_a_new_model_and_an_edited_model_are_built_and_nothing_else(world, tmp_path):
    world.refresh(models=True)

    copy = shutil.copytree(PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    (copy / "models" / "marts" / "top_rated.sql").write_text(
        "select tconst, primary_title, average_rating\nfrom {{ ref('titles') }}\nwhere num_votes >= 30000\n"
    )
    episodes = copy / "models" / "marts" / "series_episodes.sql"
    episodes.write_text(episodes.read_text() + "\n-- edited: episodes in season order\n")
    # An ephemeral model is no asset of its own: an edit to it is an edit to the mart it is inlined into.
    scores = copy / "models" / "intermediate" / "int_recommendation_scores.sql"
    scores.write_text(scores.read_text() + "\n-- edited: a step inlined into title_recommendations\n")
    edited = DbtProject(project_dir=copy, profiles_dir=copy)
    prepare(edited)  # what `make prepare` (or `dagster dev`) does after an edit

    result = world.refresh(models=True, dbt_project=edited)
    assert rebuilt_models(result) == {
        "imdb_marts/top_rated",
        "imdb_marts/series_episodes",
        "imdb_marts/title_recommendations",
    }
    reasons = {
        e.asset_key.path[-1]: e.materialization.metadata["rebuilt_because"].value
        for e in result.get_asset_materialization_events()
        if "rebuilt_because" in e.materialization.metadata
    }
    assert reasons == {
        "top_rated": "Dagster has no record of building it",
        "series_episodes": "its code changed",
        "title_recommendations": "its code changed",
    }
    assert world.query("SELECT tconst FROM imdb_marts.top_rated ORDER BY tconst") == [
        ("tt0000001",),
        ("tt0000002",),
        ("tt0000004",),
    ]

    # The user's model lives through a release of the file it reads, rebuilt with what the release changed.
    ratings = [dict(r) for r in WORLD["title.ratings"]]
    ratings[3]["num_votes"] = 100  # tt0000004 drops below the user's 30,000 votes
    write_files(tmp_path / "world", {"title.ratings": ratings})
    result = world.refresh(models=True, dbt_project=edited)
    assert "imdb_marts/top_rated" in rebuilt_models(result)
    assert world.query("SELECT tconst FROM imdb_marts.top_rated ORDER BY tconst") == [("tt0000001",), ("tt0000002",)]
