"""Incremental marts: built from the change log, they hold the rows a full build of the same tables holds."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey
from dbt.cli.main import dbtRunner

from imdb_assets import dbt, settings
from imdb_assets.dbt import PROJECT_DIR
from imdb_assets.defs.dbt import assets as dbt_assets
from imdb_assets.defs.dbt import staleness
from imdb_dev.marts_check import change_rows, copy_models, differences, incremental_models, record_changes
from tests.conftest import Platform

# What each incremental model follows, and so which a reload of title.ratings builds whole.
READ_RATINGS = {"titles", "series_episodes", "title_search"}


@pytest.fixture
def run_dbt(platform: Platform, tmp_path: Path, monkeypatch) -> Callable[..., None]:
    """`dbt run` in this process against the platform's database, partially parsed after its first call."""
    for name, value in dbt.environment(settings.load(), platform.db_url).items():
        monkeypatch.setenv(name, value)
    target = tmp_path / "target"
    target.mkdir()
    shutil.copy(PROJECT_DIR / "target" / "partial_parse.msgpack", target)
    runner = dbtRunner()

    def run(*args: str) -> None:
        result = runner.invoke(
            ["run", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR), "--target-path",
             str(target), "--quiet", *args]
        )  # fmt: skip
        assert result.success, result.exception or [r.message for r in result.result or [] if r.status != "success"]

    return run


def watermarks(conn: psycopg.Connection) -> dict[str, tuple[bool, int]]:
    """Each model's last build: whether it was full, and how many full builds it had."""
    rows = conn.execute("SELECT model, full_build, generation FROM imdb_meta.model_watermarks").fetchall()
    return {model: (full, generation) for model, full, generation in rows}


def a_release(conn: psycopg.Connection) -> dict[str, str]:
    """Changes across the tables as diff loads write them, each table in its own transaction with its change-log
    rows: a person credited as a director renamed, a title with credits deleted everywhere, a title retitled, a
    credit moved to another person, a new title with a new person, votes changed. The ids it picked."""
    one = lambda statement: conn.execute(statement).fetchone()  # noqa: E731
    (director,) = one("SELECT directors[1] FROM imdb.title_crew WHERE cardinality(directors) > 0 ORDER BY tconst")
    (deleted,) = one(
        "SELECT p.tconst FROM imdb.title_principals p JOIN imdb.title_basics b USING (tconst)"
        " JOIN imdb.title_ratings r USING (tconst) ORDER BY p.tconst LIMIT 1"
    )
    (retitled,) = one(
        "SELECT b.tconst FROM imdb.title_basics b JOIN imdb.title_principals p USING (tconst)"
        " ORDER BY b.tconst DESC LIMIT 1"
    )
    with conn.transaction():
        change_rows(
            conn, "name_basics", "update",
            "UPDATE imdb.name_basics SET primary_name = 'Renamed Director' WHERE nconst = %s RETURNING nconst",
            director,
        )  # fmt: skip
        change_rows(
            conn, "name_basics", "insert",
            "INSERT INTO imdb.name_basics VALUES ('nm9999999', 'New Person', 1990, NULL, '{actor}', %s)"
            " RETURNING nconst", [retitled],
        )  # fmt: skip
    for table, key in (
        ("title_principals", "tconst, ordering"),
        ("title_crew", "tconst"),
        ("title_ratings", "tconst"),
        ("title_akas", "title_id, ordering"),
        ("title_episode", "tconst"),
        ("title_basics", "tconst"),
    ):
        column = "title_id" if table == "title_akas" else "tconst"
        with conn.transaction():
            change_rows(conn, table, "delete", f"DELETE FROM imdb.{table} WHERE {column} = %s RETURNING {key}", deleted)
    with conn.transaction():
        change_rows(
            conn, "title_basics", "update",
            "UPDATE imdb.title_basics SET primary_title = 'Retitled', start_year = 1901, genres = '{Western}'"
            " WHERE tconst = %s RETURNING tconst", retitled,
        )  # fmt: skip
        change_rows(
            conn, "title_basics", "insert",
            "INSERT INTO imdb.title_basics VALUES ('tt9999999', 'movie', 'Brand New', 'Brand New', false, 2030,"
            " NULL, 90, '{Drama,Western}') RETURNING tconst",
        )  # fmt: skip
    with conn.transaction():
        change_rows(
            conn, "title_principals", "update",
            "UPDATE imdb.title_principals SET nconst = 'nm9999999', category = 'actor'"
            " WHERE (tconst, ordering) = (SELECT tconst, ordering FROM imdb.title_principals WHERE tconst = %s"
            " ORDER BY ordering LIMIT 1) RETURNING tconst, ordering", retitled,
        )  # fmt: skip
        change_rows(
            conn, "title_principals", "insert",
            "INSERT INTO imdb.title_principals VALUES ('tt9999999', 1, 'nm9999999', 'actor', NULL, '{Hero}')"
            " RETURNING tconst, ordering",
        )  # fmt: skip
    with conn.transaction():
        change_rows(
            conn, "title_crew", "insert",
            "INSERT INTO imdb.title_crew VALUES ('tt9999999', %s, '{}') RETURNING tconst", [director],
        )  # fmt: skip
    with conn.transaction():
        change_rows(
            conn, "title_ratings", "update",
            "UPDATE imdb.title_ratings SET num_votes = num_votes + 7 WHERE tconst IN"
            " (SELECT tconst FROM imdb.title_ratings ORDER BY tconst DESC LIMIT 20) RETURNING tconst",
        )  # fmt: skip
        change_rows(
            conn, "title_ratings", "insert",
            "INSERT INTO imdb.title_ratings VALUES ('tt9999999', 7.5, 1234) RETURNING tconst",
        )  # fmt: skip
    return {"director": director, "deleted": deleted, "retitled": retitled}


def test_marts_built_from_the_change_log_hold_the_rows_of_a_full_build(platform, run_dbt):
    platform.refresh()  # the seven tables
    models = incremental_models(dbt.read_manifest())
    assert {model.split(".")[1] for model in models} == {
        "titles", "title_genres", "title_people", "people", "series_episodes", "int_title_aka_texts",
        "title_search", "name_search",
    }  # fmt: skip
    with psycopg.connect(platform.db_url, autocommit=True) as conn:
        run_dbt()  # from an empty database: every model built whole, once
        assert set(watermarks(conn).values()) == {(True, 1)}
        picked = a_release(conn)

        run_dbt()
        assert set(watermarks(conn).values()) == {(False, 1)}  # no model built whole
        query = lambda statement, *params: conn.execute(statement, params).fetchall()  # noqa: E731
        assert ("Renamed Director",) in query(
            "SELECT unnest(director_names) FROM imdb_marts.titles WHERE %s = ANY("
            "SELECT unnest(directors) FROM imdb.title_crew c WHERE c.tconst = titles.tconst)",
            picked["director"],
        )
        assert query("SELECT director_names FROM imdb_marts.titles WHERE tconst = 'tt9999999'") == [
            (["Renamed Director"],)
        ]
        for mart, column in (("titles", "tconst"), ("title_people", "tconst"), ("title_search", "tconst"),
                             ("title_genres", "tconst"), ("series_episodes", "episode_tconst")):  # fmt: skip
            assert query(f"SELECT count(*) FROM imdb_marts.{mart} WHERE {column} = %s", picked["deleted"]) == [(0,)]
        assert query(
            "SELECT known_for_titles, credits_by_category, first_credited_year FROM imdb_marts.people"
            " WHERE nconst = 'nm9999999'"
        ) == [(["Retitled"], {"actor": 2}, 1901)]
        assert query("SELECT primary_name FROM imdb_marts.name_search WHERE nconst = %s", picked["director"]) == [
            ("Renamed Director",)
        ]
        assert query("SELECT num_votes FROM imdb_marts.title_search WHERE tconst = 'tt9999999'") == [(1234,)]

        # Row for row what a full build of the same tables holds.
        copy_models(conn, models)
        run_dbt("--full-refresh")
        assert differences(conn, models) == {}
        assert set(watermarks(conn).values()) == {(True, 2)}

        # A full load of title.ratings records one 'reload' row: the models reading it are built whole.
        with conn.transaction():
            conn.execute("UPDATE imdb.title_ratings SET num_votes = num_votes * 2, average_rating = 5.0")
            conn.execute(
                "INSERT INTO imdb_meta.changes (release_date, table_name, change)"
                " VALUES (current_date, 'title_ratings', 'reload')"
            )
            record_changes(conn, "name_basics", "update", [(picked["director"],)])  # and a diff, of another table
        run_dbt()
        built = watermarks(conn)
        assert {model for model, (full, _) in built.items() if full} == READ_RATINGS
        assert query(
            "SELECT count(*) FROM imdb_marts.titles t JOIN imdb.title_ratings r USING (tconst)"
            " WHERE t.num_votes <> r.num_votes OR t.average_rating <> 5.0"
        ) == [(0,)]
        assert query("SELECT DISTINCT season_average_rating FROM imdb_marts.series_episodes"
                     " WHERE season_rated_episodes > 0") == [(Decimal("5.00"),)]  # fmt: skip

        # A release of title.ratings alone: Dagster rebuilds the models reading it, not int_title_aka_texts, whose
        # watermark stays behind; title_search, which reads both, still consumes the change.
        with conn.transaction():
            change_rows(
                conn, "title_ratings", "update",
                "UPDATE imdb.title_ratings SET num_votes = 4321 WHERE tconst = 'tt9999999' RETURNING tconst",
            )  # fmt: skip
        run_dbt("--exclude", "int_title_aka_texts")
        assert query("SELECT num_votes FROM imdb_marts.title_search WHERE tconst = 'tt9999999'") == [(4321,)]


def test_the_dbt_step_builds_whole_what_its_config_or_a_code_change_asks_for():
    rebuild = {
        AssetKey(["imdb_marts", "titles"]): staleness.Rebuild(staleness.CODE_CHANGED, whole=True),
        AssetKey(["imdb_marts", "people"]): staleness.Rebuild("imdb_staging/stg_imdb__name_basics changed"),
    }
    assert dbt_assets._build_args(["genre_year_stats"], rebuild, full_refresh=False) == [
        "build", "--exclude", "genre_year_stats", "--vars", '{"full_refresh_models": ["titles"]}'
    ]  # fmt: skip
    assert dbt_assets._build_args([], rebuild, full_refresh=True) == ["build", "--full-refresh"]
    titles = dbt_assets.imdb_dbt_models.specs_by_key[AssetKey(["imdb_marts", "titles"])]
    # The change log is written by the tables' assets, which the models depend on already: no node of the graph.
    assert {dep.asset_key for dep in titles.deps} == {
        AssetKey(["imdb_staging", f"stg_imdb__{table}"])
        for table in ("title_basics", "title_ratings", "title_crew", "title_episode", "name_basics")
    }
