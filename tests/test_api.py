"""The REST API over real HTTP on 127.0.0.1, on the constructed IMDb of tests/world.py loaded and modeled by the
platform itself: exact answers, paging, search, keys and roles, bad input, and the API's database role."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import given, settings
from psycopg.conninfo import make_conninfo
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imdb_api import keys, models
from imdb_api.common import encode_cursor
from imdb_api.database import API_ROLE, check_read_only, ensure_api_tables
from tests.api_server import ApiServer, new_key
from tests.conftest import Platform, drop_database, fresh_database
from tests.dagster_dev import clean_env, free_port
from tests.imdb_files import write_files
from tests.mirror_server import MirrorServer
from tests.stock_server import PASSWORD as STOCK_PASSWORD
from tests.stock_server import ROLE as STOCK_ROLE
from tests.stock_server import StockServer
from tests.world import WORLD

RATE_LIMIT = 40


@dataclass
class ApiWorld:
    platform: Platform
    api: ApiServer
    db_url: str
    data_dir: Path

    def client(self, role: str = "reader"):
        return self.api.client(new_key(self.db_url, role))


def api_env(db_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    return clean_env() | {
        "DATABASE_URL": db_url,
        "IMDB_DATA_DIR": str(data_dir),
        "IMDB_API_RATE_LIMIT": f"{RATE_LIMIT}/minute",
        "IMDB_API_KEY_CACHE_SECONDS": "0",
        # Nothing listens there: a refresh is a clear 503, never a run on a Dagster that happens to be on :3000.
        "IMDB_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        **settings,
    }


@pytest.fixture(scope="module")
def world_database(pg_server: str) -> Iterator[str]:
    yield fresh_database(pg_server, "test_api_world")
    drop_database(pg_server, "test_api_world")


# The world's ratings history, as loads of releases over 40 days up to LATEST_RELEASE would have kept it: (tconst,
# days before that release, rating, votes), NULLs where the title lost its rating; the last values are the world's.
LATEST_RELEASE = date(2026, 3, 31)
RATINGS_HISTORY = [
    ("tt0000001", 40, 8.0, 20000), ("tt0000001", 10, 8.1, 44000), ("tt0000001", 0, 8.1, 50000),
    ("tt0000002", 40, 7.9, 39000), ("tt0000002", 7, 7.9, 40000),
    ("tt0000003", 5, 6.0, 12000), ("tt0000003", 0, 6.0, 20000),  # new 5 days before
    ("tt0000004", 40, 7.0, 30000),
    ("tt0000010", 40, 8.4, 9000), ("tt0000010", 3, 8.5, 10000),
    ("tt0000011", 40, 8.0, 1000), ("tt0000011", 20, None, None), ("tt0000011", 2, 8.0, 3000),
    ("tt0000012", 40, 9.0, 1000),
    ("tt0000013", 40, 7.0, 400), ("tt0000013", 0, 7.0, 500),
    ("tt0000014", 40, 6.0, 100), ("tt0000014", 6, None, None),  # unrated now
]  # fmt: skip


def write_ratings_history(platform: Platform) -> None:
    """RATINGS_HISTORY in place of whatever the loads appended: the release dates of the world's files are today's."""
    with psycopg.connect(platform.db_url, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM imdb.title_ratings_history")
        conn.cursor().executemany(
            "INSERT INTO imdb.title_ratings_history VALUES (%s, %s, %s, %s)",
            [
                (tconst, LATEST_RELEASE - timedelta(ago), rating, votes)
                for tconst, ago, rating, votes in RATINGS_HISTORY
            ],
        )


@pytest.fixture(scope="module")
def api_world(tmp_path_factory, world_database: str) -> Iterator[ApiWorld]:
    """The world loaded and modeled once for the module, with its ratings history, and the API serving it."""
    tmp = tmp_path_factory.mktemp("api")
    mirror = MirrorServer(write_files(tmp / "world", WORLD))
    platform = Platform(mirror.base_url, tmp / "data", world_database)
    platform.refresh()
    write_ratings_history(platform)
    platform.build_models()
    api = ApiServer(api_env(world_database, tmp / "data"), tmp, "--new-reader-key", "make api")
    yield ApiWorld(platform, api, world_database, tmp / "data")
    api.stop()
    mirror.stop()


@pytest.fixture
def reader(api_world: ApiWorld):
    with api_world.client("reader") as client:
        yield client


TWIN_HEARTS = {
    "tconst": "tt0000001",
    "title_type": "movie",
    "primary_title": "Twin Hearts",
    "original_title": "Twin Hearts",
    "is_adult": False,
    "start_year": 2001,
    "end_year": None,
    "runtime_minutes": 100,
    "genres": ["Drama", "Romance"],
    "rating": {"average": 8.1, "votes": 50000},
    "directors": [{"nconst": "nm0000001", "name": "Ada Director"}],
    "writers": [{"nconst": "nm0000002", "name": "Ben Writer"}, {"nconst": "nm0000001", "name": "Ada Director"}],
    "episode": None,
}


def test_a_title_in_full(reader) -> None:
    assert reader.get("/v1/titles/tt0000001").json() == TWIN_HEARTS
    pilot = reader.get("/v1/titles/tt0000011").json()
    assert pilot["episode"] == {"series_tconst": "tt0000010", "series_title": "The Show", "season": 1, "episode": 1}
    assert pilot["directors"] == [{"nconst": "nm0000007", "name": "Gus Showrunner"}]
    assert pilot["writers"] == [] and pilot["rating"] == {"average": 8.0, "votes": 3000}
    unrated = reader.get("/v1/titles/tt0000014").json()
    assert unrated["rating"] is None and unrated["episode"]["season"] == 2


def test_a_person_and_their_filmography(reader) -> None:
    assert reader.get("/v1/names/nm0000001").json() == {
        "nconst": "nm0000001",
        "primary_name": "Ada Director",
        "birth_year": 1960,
        "death_year": None,
        "professions": ["director", "writer"],
        "known_for": [
            {"tconst": "tt0000001", "primary_title": "Twin Hearts"},
            {"tconst": "tt0000002", "primary_title": "Twin Hearts II"},
            {"tconst": "tt0000099", "primary_title": None},
        ],
        "credits_by_category": {"director": 2, "writer": 2},
        "total_credits": 4,
        "first_credited_year": 2001,
        "last_credited_year": 2003,
    }
    films = reader.get("/v1/names/nm0000001/filmography").json()
    assert [(f["tconst"], f["category"], f["start_year"]) for f in films["items"]] == [
        ("tt0000002", "writer", 2003),
        ("tt0000002", "director", 2003),
        ("tt0000001", "writer", 2001),
        ("tt0000001", "director", 2001),
    ]
    assert films["next_cursor"] is None


def test_a_series_its_episodes_and_a_titles_lists(reader) -> None:
    episodes = reader.get("/v1/titles/tt0000010/episodes").json()["items"]
    assert [(e["tconst"], e["season"], e["episode"], e["title"], e["average_rating"]) for e in episodes] == [
        ("tt0000011", 1, 1, "Pilot", 8.0),
        ("tt0000012", 1, 2, "Second", 9.0),
        ("tt0000013", 2, 1, "Finale", 7.0),
        ("tt0000014", 2, 2, "Unaired", None),
    ]
    assert [e["tconst"] for e in reader.get("/v1/titles/tt0000010/episodes?season=2").json()["items"]] == [
        "tt0000013",
        "tt0000014",
    ]
    credits = reader.get("/v1/titles/tt0000001/credits").json()["items"]
    assert [(c["nconst"], c["category"], c["billing_order"]) for c in credits] == [
        ("nm0000003", "actress", 1),
        ("nm0000004", "actor", 2),
        ("nm0000005", "actress", 3),
        ("nm0000001", "director", 4),
        ("nm0000001", "writer", None),
        ("nm0000002", "writer", None),
    ]
    assert credits[0]["name"] == "Cleo Actor" and credits[0]["characters"] == ["Someone"]
    directors = reader.get("/v1/titles/tt0000001/credits?category=director").json()["items"]
    assert [c["nconst"] for c in directors] == ["nm0000001"]
    akas = reader.get("/v1/titles/tt0000001/akas").json()["items"]
    assert [(a["ordering"], a["title"], a["region"]) for a in akas] == [
        (1, "Twin Hearts", "US"),
        (2, "Cœurs jumeaux", "FR"),
    ]
    similar = reader.get("/v1/titles/tt0000001/similar").json()["items"]
    assert similar[0]["tconst"] == "tt0000002" and similar[0]["rank"] == 1
    assert similar[0]["shared_cast"] == 3 and similar[0]["shared_genres"] == 2
    for path in ("credits", "akas", "similar", "episodes"):
        assert reader.get(f"/v1/titles/tt0000098/{path}").status_code == 404


def test_paging_visits_every_title_once(reader) -> None:
    expected = sorted(t["tconst"] for t in WORLD["title.basics"])
    for sort in ("votes", "rating", "year"):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 2, "sort": sort} | ({"cursor": cursor} if cursor else {})
            page = reader.get("/v1/titles", params=params).json()
            seen += [t["tconst"] for t in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == expected and len(seen) == len(set(seen)), sort
        assert pages == 5
    by_votes = reader.get("/v1/titles", params={"limit": 3}).json()["items"]
    assert [t["tconst"] for t in by_votes] == ["tt0000001", "tt0000002", "tt0000004"]
    comedies = reader.get("/v1/titles", params={"genre": "Comedy", "type": "movie"}).json()["items"]
    assert [t["tconst"] for t in comedies] == ["tt0000003"]
    recent = reader.get("/v1/titles", params={"year_from": 2010, "year_to": 2015, "sort": "year"}).json()["items"]
    assert [t["tconst"] for t in recent] == ["tt0000012", "tt0000011", "tt0000010", "tt0000003"]
    # A cursor of one sort order is refused for another.
    cursor = reader.get("/v1/titles", params={"limit": 1}).json()["next_cursor"]
    assert reader.get("/v1/titles", params={"sort": "year", "cursor": cursor}).status_code == 400


def test_search_by_aka_word_prefix_and_folded_accents(reader) -> None:
    def found(path: str, q: str) -> list[str]:
        response = reader.get(path, params={"q": q})
        assert response.status_code == 200, response.text
        return [item.get("tconst") or item.get("nconst") for item in response.json()["items"]]

    assert found("/v1/search/titles", "jumeaux") == ["tt0000001"]  # only an aka has this word
    assert found("/v1/search/titles", "twin hea")[:2] == ["tt0000001", "tt0000002"]  # prefix; more votes first
    assert found("/v1/search/titles", "COMEDIE") == ["tt0000003"]  # "Comédie", accent and case folded
    assert found("/v1/search/titles", "comédie sans") == ["tt0000003"]
    assert found("/v1/search/titles", "unaired nonsenseword") == ["tt0000014"]  # any word, when no title has all
    assert found("/v1/search/titles", "zzz") == []
    assert found("/v1/search/names", "ada") == ["nm0000001"]
    assert found("/v1/search/names", "actor") == ["nm0000003", "nm0000004", "nm0000005"]  # equal credits: by id


def test_charts_stats_and_datasets(reader) -> None:
    top = reader.get("/v1/charts/top", params={"min_votes": 1000}).json()["items"]
    assert [t["tconst"] for t in top] == ["tt0000001", "tt0000002", "tt0000004", "tt0000003"]
    dramas = reader.get("/v1/charts/top", params={"min_votes": 1000, "genre": "Drama", "limit": 1}).json()["items"]
    assert [t["tconst"] for t in dramas] == ["tt0000001"]
    stats = {g["genre"]: g for g in reader.get("/v1/stats/genres").json()["items"]}
    assert stats["Romance"]["titles"] == 3 and stats["Romance"]["total_votes"] == 120000
    assert stats["Romance"]["weighted_average_rating"] == round((8.1 * 50000 + 7.9 * 40000 + 7.0 * 30000) / 120000, 2)
    assert reader.get("/v1/stats/genres", params={"year_from": 2010}).json()["items"][0]["genre"] == "Comedy"
    items = reader.get("/v1/datasets").json()["items"]
    datasets = {d["file"]: d for d in items if d["kind"] == "table"}
    assert datasets["title.ratings.tsv.gz"]["rows"] == len(WORLD["title.ratings"])
    # Each table's and mart's size, heap and indexes apart; the marts after the seven tables.
    marts = {d["table"]: d for d in items if d["kind"] == "mart"}
    assert [d["kind"] for d in items[:7]] == ["table"] * 7 and "imdb_marts.titles" in marts
    for item in [*datasets.values(), *marts.values()]:
        assert item["heap_bytes"] > 0 and item["index_bytes"] >= 0, item
    assert datasets["title.ratings.tsv.gz"]["index_bytes"] > 0 and marts["imdb_marts.titles"]["index_bytes"] > 0
    assert datasets["title.ratings.tsv.gz"]["source_last_modified"].endswith("GMT")
    published = parsedate_to_datetime(datasets["title.ratings.tsv.gz"]["source_last_modified"])
    assert datasets["title.ratings.tsv.gz"]["release_date"] == published.date().isoformat()
    assert datetime.fromisoformat(
        datasets["title.basics.tsv.gz"]["loaded_at"]
    ) > datetime.now().astimezone() - timedelta(hours=1)


def test_a_titles_ratings_history_in_date_order_paged(reader) -> None:
    """Each row holds until the title's next, across pages too; a lost rating is a row of nulls."""
    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = reader.get("/v1/titles/tt0000011/ratings/history", params=params).json()
        pages.append(page["items"])
        if (cursor := page["next_cursor"]) is None:
            break
    assert pages == [
        [
            {"valid_from": "2026-02-19", "valid_to": "2026-03-11", "average_rating": 8.0, "num_votes": 1000},
            {"valid_from": "2026-03-11", "valid_to": "2026-03-29", "average_rating": None, "num_votes": None},
        ],
        [{"valid_from": "2026-03-29", "valid_to": None, "average_rating": 8.0, "num_votes": 3000}],
    ]
    assert reader.get("/v1/titles/tt0000004/ratings/history").json() == {
        "items": [{"valid_from": "2026-02-19", "valid_to": None, "average_rating": 7.0, "num_votes": 30000}],
        "next_cursor": None,
    }
    missing = reader.get("/v1/titles/tt0009999/ratings/history")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "no title tt0009999"


def test_trending_ranks_titles_by_votes_gained_per_window_type_and_genre(reader) -> None:
    def chart(**params) -> list[tuple[int, str, int]]:
        response = reader.get("/v1/charts/trending", params=params)
        assert response.status_code == 200, response.text
        return [(t["rank"], t["tconst"], t["votes_gained"]) for t in response.json()["items"]]

    # Over 7 days (from 03-24): tt0000003 is new since (all its votes), tt0000011 was unrated then (a lost rating),
    # tt0000002 changed on 03-24 itself (no gain, so not listed), tt0000004 and tt0000012 did not change.
    week = [(1, "tt0000003", 20000), (2, "tt0000001", 6000), (3, "tt0000011", 3000), (4, "tt0000010", 1000)]
    assert chart() == chart(days=7) == [*week, (5, "tt0000013", 100)]
    assert chart(days=1) == [(1, "tt0000003", 8000), (2, "tt0000001", 6000), (3, "tt0000013", 100)]
    # Over 30 days tt0000011 counts from its votes before it lost its rating; tt0000002 and tt0000010 tie, and the
    # one with more votes comes first.
    assert chart(days=30) == [
        (1, "tt0000001", 30000),
        (2, "tt0000003", 20000),
        (3, "tt0000011", 2000),
        (4, "tt0000002", 1000),
        (5, "tt0000010", 1000),
        (6, "tt0000013", 100),
    ]
    assert chart(type="movie") == [(1, "tt0000003", 20000), (2, "tt0000001", 6000)]
    comedies = [(1, "tt0000003", 20000), (2, "tt0000011", 3000), (3, "tt0000010", 1000), (4, "tt0000013", 100)]
    assert chart(genre="Comedy") == comedies
    assert chart(type="tvEpisode", genre="Comedy") == [(1, "tt0000011", 3000), (2, "tt0000013", 100)]
    assert chart(days=30, type="movie", genre="Drama") == [(1, "tt0000001", 30000), (2, "tt0000002", 1000)]
    assert chart(genre="Western") == []
    # min_votes leaves titles out without renumbering the chart.
    assert chart(min_votes=1000) == week
    assert chart(min_votes=25000) == [(2, "tt0000001", 6000)]
    first = reader.get("/v1/charts/trending", params={"limit": 2}).json()
    assert first["items"][1] == {
        "rank": 2,
        "tconst": "tt0000001",
        "primary_title": "Twin Hearts",
        "title_type": "movie",
        "start_year": 2001,
        "genres": ["Drama", "Romance"],
        "average_rating": 8.1,
        "num_votes": 50000,
        "votes_gained": 6000,
        "rating_change": 0.0,
    }
    assert first["items"][0]["rating_change"] is None  # tt0000003 was unrated 7 days before
    seen, cursor = [t["tconst"] for t in first["items"]], first["next_cursor"]
    while cursor:
        page = reader.get("/v1/charts/trending", params={"limit": 2, "cursor": cursor}).json()
        seen, cursor = seen + [t["tconst"] for t in page["items"]], page["next_cursor"]
    assert seen == [tconst for _, tconst, _ in chart()]


def test_the_trending_routes_need_a_key_and_answer_a_304_for_the_held_release(api_world: ApiWorld, reader) -> None:
    for url in ("/v1/charts/trending?days=30&genre=Drama", "/v1/titles/tt0000001/ratings/history"):
        etag = reader.get(url).headers["etag"]
        held = reader.get(url, headers={"If-None-Match": etag})
        assert held.status_code == 304 and held.content == b"", url
        with api_world.api.client() as anonymous:
            assert anonymous.get(url).status_code == 401, url


def test_answers_carry_their_release_and_a_client_holding_one_gets_a_304(api_world: ApiWorld, reader) -> None:
    """ETag and Last-Modified of the release behind an answer; If-None-Match naming it (alone, in a list, or `*`)
    gets a 304 without a body; another URL, an error, or a new load of a table gets a full answer again."""
    first = reader.get("/v1/titles/tt0000001")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "no-cache"
    tables = [d for d in reader.get("/v1/datasets").json()["items"] if d["kind"] == "table"]
    newest = max(parsedate_to_datetime(d["source_last_modified"]) for d in tables)
    assert parsedate_to_datetime(last_modified) == newest
    for held in (etag, f'"other", {etag}', etag.removeprefix("W/"), "*"):
        again = reader.get("/v1/titles/tt0000001", headers={"If-None-Match": held})
        assert again.status_code == 304 and again.content == b"", held
        assert again.headers["etag"] == etag and again.headers["last-modified"] == last_modified
    assert reader.get("/v1/titles/tt0000001", headers={"If-None-Match": '"other"'}).json() == TWIN_HEARTS
    other_url = reader.get("/v1/titles/tt0000002", headers={"If-None-Match": etag})
    assert other_url.status_code == 200 and other_url.headers["etag"] != etag
    missing = reader.get("/v1/titles/tt0009999", headers={"If-None-Match": "*"})
    assert missing.status_code == 404 and "etag" not in missing.headers
    # A load swaps a table in and records it, as here: the release, and so every ETag, changes within a second.
    with psycopg.connect(api_world.db_url, autocommit=True) as conn:
        conn.execute("UPDATE imdb_meta.loads SET loaded_at = now() WHERE table_name = 'title_ratings'")
    deadline = time.monotonic() + 5
    while (after := reader.get("/v1/titles/tt0000001", headers={"If-None-Match": etag})).status_code == 304:
        assert time.monotonic() < deadline, "the ETag did not change after a load"
        time.sleep(0.5)
    assert after.status_code == 200 and after.json() == TWIN_HEARTS and after.headers["etag"] != etag


def test_a_304_needs_a_valid_key_first_and_a_malformed_if_none_match_is_a_200(api_world: ApiWorld, reader) -> None:
    etag = reader.get("/v1/datasets").headers["etag"]
    for malformed in ("", ",,", "W/", '"unterminated', '*, "x"', "x" * 1000):
        response = reader.get("/v1/datasets", headers={"If-None-Match": malformed})
        assert response.status_code == 200 and response.headers["etag"] == etag, malformed
    for key in (None, "imdbk_" + "x" * 43):
        with api_world.api.client(key) as client:
            for held in (etag, "*"):
                response = client.get("/v1/datasets", headers={"If-None-Match": held})
                assert response.status_code == 401 and "etag" not in response.headers
    with api_world.api.client() as anonymous:
        assert "etag" not in anonymous.get("/healthz").headers


def test_answers_match_the_models_openapi_documents(api_world: ApiWorld, reader) -> None:
    documented = {
        "/v1/titles/tt0000001": models.Title,
        "/v1/titles/tt0000011": models.Title,
        "/v1/titles?limit=2": models.Page[models.TitleSummary],
        "/v1/search/titles?q=twin": models.Items[models.TitleHit],
        "/v1/search/names?q=actor": models.Items[models.NameHit],
        "/v1/titles/tt0000001/credits": models.Items[models.Credit],
        "/v1/titles/tt0000001/akas": models.Items[models.Aka],
        "/v1/titles/tt0000001/similar": models.Items[models.Similar],
        "/v1/titles/tt0000010/episodes": models.Items[models.Episode],
        "/v1/names/nm0000001": models.Person,
        "/v1/names/nm0000001/filmography?limit=1": models.Page[models.FilmographyEntry],
        "/v1/charts/top?min_votes=0": models.Items[models.TitleSummary],
        "/v1/stats/genres": models.Items[models.GenreStats],
        "/v1/charts/trending?days=30": models.Page[models.TrendingTitle],
        "/v1/titles/tt0000011/ratings/history?limit=1": models.Page[models.RatingChange],
        "/v1/datasets": models.Items[models.DatasetFreshness],
        "/v1/titles/tt9999999": models.Error,
    }
    for path, model in documented.items():
        body = reader.get(path).json()
        model.model_validate(body)
        assert body.get("items", [body]), path  # every list above has something to check
    with api_world.client("admin") as admin:
        made = admin.post("/v1/keys", json={"name": "doc", "role": "reader"}).json()
        models.NewKeyCreated.model_validate(made)
        models.Items[models.KeyInfo].model_validate(admin.get("/v1/keys").json())
        models.KeyInfo.model_validate(admin.delete(f"/v1/keys/{made['id']}").json())
    schema = reader.get("/openapi.json").json()
    title = schema["paths"]["/v1/titles/{tconst}"]["get"]["responses"]
    assert title["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Title")
    assert title["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/titles/tt1", 422),
        ("/v1/titles/nm0000001", 422),
        ("/v1/titles/tt0000001'%20OR%201=1--", 422),
        ("/v1/titles/tt9999999", 404),
        ("/v1/names/nm9999999", 404),
        ("/v1/names/nm0000001/filmography?cursor=bm90IGEgY3Vyc29y", 400),
        ("/v1/titles?limit=100000", 422),
        ("/v1/titles?limit=-1", 422),
        ("/v1/titles?sort=name", 422),
        ("/v1/titles?cursor=%22%3B%20DROP%20TABLE%20x", 400),
        # Cursors of the right shape that this API did not make: a key that is no number, one holding NUL, a rating
        # beyond numeric's range, a year beyond integer's, a tconst holding NUL.
        ("/v1/titles?cursor=" + encode_cursor("votes", "abc", "tt0000001"), 400),
        ("/v1/titles?cursor=" + encode_cursor("votes", "1\0", "tt0000001"), 400),
        ("/v1/titles?sort=rating&cursor=" + encode_cursor("rating", "1e999999", "tt0000001"), 400),
        ("/v1/names/nm0000001/filmography?cursor=" + encode_cursor(99999999999, "tt0000001", "actor"), 400),
        ("/v1/names/nm0000001/filmography?cursor=" + encode_cursor(2000, "tt\x000000001", "actor"), 400),
        ("/v1/titles?genre=Drama';--", 422),
        ("/v1/titles?year_from=abc", 422),
        ("/v1/titles?frobnicate=1", 400),
        ("/v1/charts/trending?days=5", 422),
        ("/v1/charts/trending?days=week", 422),
        ("/v1/charts/trending?min_votes=-1", 422),
        ("/v1/charts/trending?genre=Drama';--", 422),
        ("/v1/charts/trending?limit=0", 422),
        ("/v1/charts/trending?cursor=" + encode_cursor("2"), 400),
        ("/v1/charts/trending?cursor=" + encode_cursor(2**31), 400),
        ("/v1/charts/trending?since=2026-01-01", 400),
        ("/v1/titles/tt9999999/ratings/history", 404),
        ("/v1/titles/tt1/ratings/history", 422),
        ("/v1/titles/tt0000001/ratings/history?cursor=" + encode_cursor("2026-02-30"), 400),
        ("/v1/titles/tt0000001/ratings/history?cursor=" + encode_cursor("yesterday"), 400),
        ("/v1/search/titles?q=", 422),
        ("/v1/search/titles?q=%27%3B%20DROP%20TABLE%20imdb.title_basics%3B%20--", 200),
        ("/v1/search/titles?q=%21%26%7C%3A%2A%28%29", 422),
        ("/v1/search/names?q=ada%00", 422),
        ("/v1/search/titles?q=" + "a" * 5000, 414),
        ("/v1/runs/not-a-run", 403),
        ("/v1/nothing-here", 404),
    ],
)
def test_bad_input_gets_a_clear_4xx(reader, path: str, status: int) -> None:
    response = reader.get(path)
    assert response.status_code == status, response.text
    if status != 200:
        error = response.json()["error"]
        assert error["status"] == status and error["message"]


def test_a_url_over_2048_characters_gets_a_documented_414(api_world: ApiWorld) -> None:
    """Before any route or key check: a long query string or a long path, on any route or none."""
    with api_world.api.client() as anonymous:
        for url in ("/v1/search/titles?q=" + "a" * 2100, "/healthz?" + "x" * 2100, "/v1/titles/" + "t" * 2100):
            response = anonymous.get(url)
            assert response.status_code == 414, url
            assert models.Error.model_validate(response.json()).error.message.startswith("the URL is longer")
        paths = anonymous.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            too_long = operation["responses"]["414"]
            assert too_long["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), (method, path)


def test_a_body_over_16_kib_gets_a_413_whether_its_length_is_given_or_not(api_world: ApiWorld) -> None:
    """A body of a declared length is refused before it is read; a chunked one, as soon as it passes the limit."""

    def chunked():
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 10_000
        yield b'", "role": "reader"}'

    with api_world.client("admin") as admin:
        for content in (b"x" * 20_000, chunked()):
            response = admin.post("/v1/keys", content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == 413, response.text
            assert models.Error.model_validate(response.json()).error.message.startswith("the body is larger")


# Every status each route documents in /openapi.json: exactly those it can answer. Any route may answer 400 (an
# unknown query parameter), 413, 414 (the middleware's limits) and 500; one that needs a key, 401, 429 and 503
# (keys are checked in the database); 403 only where a reader's key is not enough, 404 only with an id in the
# path, 422 only with parameters or a body; 304 on a read route, whose answers carry their release's ETag.
DOCUMENTED_STATUSES = {
    "GET /healthz": "200 400 413 414 500",
    "GET /readyz": "200 400 413 414 500 503",
    "GET /v1/titles/{tconst}": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/titles": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/titles/{tconst}/credits": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/titles/{tconst}/akas": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/titles/{tconst}/similar": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/titles/{tconst}/episodes": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/search/titles": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/search/names": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/names/{nconst}": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/names/{nconst}/filmography": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/charts/top": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/titles/{tconst}/ratings/history": "200 304 400 401 404 413 414 422 429 500 503",
    "GET /v1/charts/trending": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/stats/genres": "200 304 400 401 413 414 422 429 500 503",
    "GET /v1/datasets": "200 304 400 401 413 414 429 500 503",
    "POST /v1/refresh": "202 400 401 403 413 414 422 429 500 503",
    "GET /v1/runs/{run_id}": "200 400 401 403 404 413 414 422 429 500 503",
    "POST /v1/keys": "201 400 401 403 413 414 422 429 500 503",
    "GET /v1/keys": "200 400 401 403 413 414 429 500 503",
    "DELETE /v1/keys/{key_id}": "200 400 401 403 404 413 414 422 429 500 503",
}


def test_openapi_documents_exactly_the_statuses_each_route_answers(reader) -> None:
    schema = reader.get("/openapi.json").json()
    documented = {
        f"{method.upper()} {path}": " ".join(sorted(operation["responses"]))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == DOCUMENTED_STATUSES
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), path
    # FastAPI's own shape for a 422, which this API never answers, is documented nowhere.
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    unauthorized = schema["paths"]["/v1/titles"]["get"]["responses"]["401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True


# Each route is fuzzed with a key of the least role it needs.
FUZZ_ROLES = {"operations": "operator", "keys": "admin"}
FUZZ_EXAMPLES = 50  # per route, of valid input and of invalid input


@dataclass
class FuzzedApi:
    schema: Any
    keys: dict[str, str]
    revocable_key_id: int


@pytest.fixture(scope="module")
def fuzzed_api(api_world: ApiWorld, tmp_path_factory) -> Iterator[FuzzedApi]:
    """A second API on the module's world and data folder (whose password for the API's role it shares), with
    the rate limit lifted: the module's 40 a minute would turn the fuzzer's requests into 429s."""
    env = api_env(api_world.db_url, api_world.data_dir, IMDB_API_RATE_LIMIT="1000000/minute")
    api = ApiServer(env, tmp_path_factory.mktemp("fuzz"))
    role_keys = {role: new_key(api_world.db_url, role, f"fuzz-{role}") for role in keys.ROLES}
    with api.client(role_keys["admin"]) as admin:
        revocable = admin.post("/v1/keys", json={"name": "fuzz-revocable", "role": "reader"}).json()["id"]
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    schema.config.update(base_url=api.url)
    yield FuzzedApi(schema, role_keys, revocable)
    api.stop()


# Every route of /openapi.json (the test above holds DOCUMENTED_STATUSES to it), one test each. schemathesis' own
# pytest integration (`from_fixture`, `parametrize`) fails on pytest 9.2 (it sets the node's `_nodeid`, which
# pytest no longer has), so the routes are parameters here and Hypothesis draws each one's cases.
@pytest.mark.parametrize("route", DOCUMENTED_STATUSES)
def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(fuzzed_api: FuzzedApi, route: str) -> None:
    """schemathesis against the real server over HTTP, with valid and invalid input: every status, header, media
    type and body as /openapi.json documents it, and no 5xx but the operator routes' 503 (Dagster is absent)."""
    method, path = route.split(" ")
    operation = fuzzed_api.schema[path][method]
    role = FUZZ_ROLES.get(operation.tags[0], "reader")
    key = {} if operation.tags == ["health"] else {"Authorization": f"Bearer {fuzzed_api.keys[role]}"}
    checks = [status_code_conformance, content_type_conformance, response_headers_conformance]
    checks += [response_schema_conformance, *([] if role == "operator" else [not_a_server_error])]
    # A valid revocation revokes the key made for it: a generated id could be the fuzzer's own key, or another
    # test's. Invalid input needs input to spoil: a parameter (the key aside) or a body.
    revocable = {"key_id": fuzzed_api.revocable_key_id} if "{key_id}" in path else {}
    takes_input = operation.body or any(p.name != "Authorization" for p in operation.iter_parameters())
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,):
        fixed = revocable if mode == GenerationMode.POSITIVE else {}

        @given(case=operation.as_strategy(mode, headers=key, path_parameters=fixed))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            database=None,
            deadline=None,
            derandomize=True,
        )
        def answers_as_documented(case) -> None:
            response = case.call_and_validate(checks=checks)
            assert response.status_code < 500 or (role == "operator" and response.status_code == 503), response.text

        answers_as_documented()


def test_a_query_that_waits_too_long_is_cancelled_with_a_clear_503(api_world: ApiWorld, reader) -> None:
    """A table locked past the statement timeout (3 s): the request ends in time, with JSON, not a 500 or a hang."""
    with psycopg.connect(api_world.db_url) as conn:
        conn.execute("LOCK TABLE imdb_marts.people IN ACCESS EXCLUSIVE MODE")
        # A person no other test asks for: an answer already in the API's cache would need no query.
        response = reader.get("/v1/names/nm0000006")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "took too long" in response.json()["error"]["message"]
        assert response.elapsed.total_seconds() < 10
    assert reader.get("/v1/names/nm0000006").status_code == 200


def test_every_data_route_needs_a_valid_key(api_world: ApiWorld) -> None:
    db = api_world.db_url
    routes = ["/v1/titles/tt0000001", "/v1/titles", "/v1/search/titles?q=twin", "/v1/datasets", "/v1/names/nm0000001"]
    expired = new_key(db, "reader", expires_at=datetime.now().astimezone() - timedelta(seconds=1))
    revoked = new_key(db, "reader")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE imdb_api.keys SET revoked_at = now() WHERE key_hash = %s", (keys.key_hash(revoked),))
    for key in (None, "imdbk_" + "x" * 43, "not-a-key", expired, revoked):
        with api_world.api.client(key) as client:
            for route in routes:
                response = client.get(route)
                assert response.status_code == 401, (key, route, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "Twin" not in response.text
    with api_world.api.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready"}
        assert anonymous.get("/docs").status_code == 200
        assert "/v1/titles/{tconst}" in anonymous.get("/openapi.json").json()["paths"]


def test_roles_allow_and_refuse(api_world: ApiWorld) -> None:
    with api_world.client("reader") as reader:
        assert reader.post("/v1/refresh").status_code == 403
        assert reader.get("/v1/runs/00000000-0000-0000-0000-000000000000").status_code == 403
        assert reader.get("/v1/keys").status_code == 403
        assert reader.post("/v1/keys", json={"name": "x", "role": "admin"}).status_code == 403
    with api_world.client("operator") as operator:
        assert operator.get("/v1/titles/tt0000001").status_code == 200
        assert operator.get("/v1/keys").status_code == 403
        # Allowed, but Dagster is not running behind this API: a clear 503, and still audited.
        response = operator.post("/v1/refresh", json={"files": ["title.ratings"]})
        assert response.status_code == 503 and "Dagster" in response.json()["error"]["message"]
        response = operator.get("/v1/runs/00000000-0000-0000-0000-000000000000")
        assert response.status_code == 503 and "Dagster" in response.json()["error"]["message"]
        assert operator.post("/v1/refresh", json={"files": ["title.nonsense"]}).status_code == 422
        assert operator.post("/v1/refresh", json={"everything": True}).status_code == 422
    with api_world.client("admin") as admin:
        # NUL, which PostgreSQL's text cannot hold.
        assert admin.post("/v1/keys", json={"name": "nul\0", "role": "reader"}).status_code == 422
        made = admin.post("/v1/keys", json={"name": "carol", "role": "reader", "expires_in_days": 1})
        assert made.status_code == 201
        carol = made.json()
        assert carol["role"] == "reader" and carol["key"].startswith(keys.PREFIX)
        listed = {k["id"]: k for k in admin.get("/v1/keys").json()["items"]}
        assert listed[carol["id"]]["name"] == "carol" and "key" not in listed[carol["id"]]
        with api_world.api.client(carol["key"]) as client:
            assert client.get("/v1/titles/tt0000001").status_code == 200
            assert admin.delete(f"/v1/keys/{carol['id']}").status_code == 200
            assert client.get("/v1/titles/tt0000001").status_code == 401
        assert admin.delete("/v1/keys/999999").status_code == 404
    with psycopg.connect(api_world.db_url) as conn:
        audit = conn.execute("SELECT actor, role, action, outcome FROM imdb_api.audit_log ORDER BY id").fetchall()
    actions = [(role, action, outcome) for _, role, action, outcome in audit]
    assert ("operator", "refresh", "dagster unavailable") in actions
    assert ("admin", "create_key", "ok") in actions and ("admin", "revoke_key", "ok") in actions
    assert ("admin", "revoke_key", "not found") in actions


def test_make_api_prints_a_curl_line_with_a_working_reader_key(api_world: ApiWorld) -> None:
    curl = next(line for line in api_world.api.tail(100_000).splitlines() if line.strip().startswith("curl "))
    argv = shlex.split(curl)
    key = argv[argv.index("-H") + 1].removeprefix("Authorization: Bearer ")
    url = argv[-1]
    assert url.startswith(f"http://127.0.0.1:{api_world.api.port}/v1/search/titles?q=")
    with api_world.api.client(key) as client:
        assert client.get(url).status_code == 200
        assert client.post("/v1/refresh").status_code == 403  # a reader


def test_the_keys_cli_creates_lists_and_revokes(api_world: ApiWorld, tmp_path: Path) -> None:
    env = clean_env() | {"DATABASE_URL": api_world.db_url, "IMDB_DATA_DIR": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "imdb_api.keys", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    created = cli("create", "--role", "reader", "--name", "alice", "--expires-in-days", "30")
    assert created.returncode == 0, created.stderr
    alice = json.loads(created.stdout)
    assert alice["name"] == "alice" and alice["role"] == "reader" and "shown again" in created.stderr
    assert datetime.fromisoformat(alice["expires_at"]) > datetime.now().astimezone() + timedelta(days=29)
    with api_world.api.client(alice["key"]) as client:
        assert client.get("/v1/titles/tt0000001").status_code == 200
        listed = {k["id"]: k for k in json.loads(cli("list").stdout)}
        assert listed[alice["id"]]["name"] == "alice" and "key" not in listed[alice["id"]]
        assert cli("revoke", str(alice["id"])).returncode == 0
        assert client.get("/v1/titles/tt0000001").status_code == 401
    assert cli("revoke", "999999").returncode == 1
    assert cli("create", "--role", "superuser", "--name", "x").returncode == 2
    with psycopg.connect(api_world.db_url) as conn:
        actions = conn.execute("SELECT actor, action FROM imdb_api.audit_log WHERE actor LIKE 'cli:%'").fetchall()
    assert {action for _, action in actions} >= {"create_key", "revoke_key"}


def test_keys_are_stored_only_as_hashes(api_world: ApiWorld) -> None:
    secret = new_key(api_world.db_url, "reader", "hash-check")
    assert len(secret) - len(keys.PREFIX) >= 22  # at least 128 bits of base64
    with psycopg.connect(api_world.db_url) as conn:
        rows = conn.execute("SELECT * FROM imdb_api.keys WHERE name = 'hash-check'").fetchall()
        stored = " ".join(map(str, rows[0]))
    assert secret not in stored and secret[len(keys.PREFIX) + 6 :] not in stored
    assert bytes(rows[0][3]) == keys.key_hash(secret)
    assert secret not in api_world.api.tail(100_000)


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(api_world: ApiWorld) -> None:
    with api_world.client("reader") as client:
        statuses = [client.get("/v1/titles/tt0000001").status_code for _ in range(RATE_LIMIT)]
        assert statuses == [200] * RATE_LIMIT
        response = client.get("/v1/titles/tt0000001")
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 60
    with api_world.client("reader") as other:  # the limit is per key
        assert other.get("/v1/titles/tt0000001").status_code == 200


def test_the_apis_database_role_can_only_read(api_world: ApiWorld) -> None:
    # The embedded server trusts local connections, so the test logs in as the role without its password.
    with psycopg.connect(make_conninfo(api_world.db_url, user=API_ROLE), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM imdb_marts.titles").fetchone()[0] == len(WORLD["title.basics"])
        assert conn.execute("SHOW statement_timeout").fetchone()[0] in ("3s", "3000ms")
        for statement in (
            "INSERT INTO imdb.title_ratings VALUES ('tt0000099', 1.0, 1)",
            "UPDATE imdb_marts.titles SET primary_title = 'x'",
            "DELETE FROM imdb.title_basics",
            "TRUNCATE imdb.title_akas",
            "CREATE TABLE imdb.mine (x int)",
            "CREATE TABLE imdb_marts.mine (x int)",
            "CREATE TABLE public.mine (x int)",
            "DROP TABLE imdb_marts.people",
            "DELETE FROM imdb_api.keys",
            "UPDATE imdb_api.keys SET role = 'admin'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(api_world.db_url) as conn:
        (superuser,) = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (API_ROLE,)).fetchone()
    assert superuser is False


def test_on_a_stock_server_as_the_operators_own_role_search_tolerates_typos(
    stock_server: StockServer, tmp_path: Path
) -> None:
    """Debian's PostgreSQL, the platform as a non-superuser through a postgres:// URL, and the API as a read-only
    role the operator made (IMDB_API_DATABASE_URL, as docs/operations.md shows). That server has pg_trgm: a query
    nothing matches word for word finds names spelled alike."""
    url = stock_server.url()
    mirror = MirrorServer(write_files(tmp_path / "world", WORLD))
    try:
        Platform(mirror.base_url, tmp_path / "data", url).refresh(models=True)
    finally:
        mirror.stop()
    with stock_server.admin("imdb") as conn:
        conn.execute("CREATE ROLE imdb_reader LOGIN PASSWORD 'reader'")
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_api_tables(conn)
        conn.execute(
            """GRANT USAGE ON SCHEMA imdb, imdb_marts, imdb_meta, imdb_api TO imdb_reader;
               GRANT SELECT ON ALL TABLES IN SCHEMA imdb, imdb_marts TO imdb_reader;
               GRANT SELECT ON imdb_meta.loads TO imdb_reader;
               GRANT SELECT, INSERT, UPDATE (revoked_at) ON imdb_api.keys TO imdb_reader;
               GRANT INSERT ON imdb_api.audit_log TO imdb_reader"""
        )
    reader_url = url.replace(f"{STOCK_ROLE}:{STOCK_PASSWORD}@", "imdb_reader:reader@")
    with pytest.raises(PermissionError, match="read-only role"):
        check_read_only(url)  # the platform's own role may write: the API refuses to serve as it
    api = ApiServer(api_env(url, tmp_path / "data", IMDB_API_DATABASE_URL=reader_url), tmp_path)
    try:
        with api.client(new_key(url, "reader")) as client:

            def found(path: str, q: str) -> list[str]:
                items = client.get(path, params={"q": q}).json()["items"]
                return [item.get("tconst") or item.get("nconst") for item in items]

            assert client.get("/v1/titles/tt0000001").json() == TWIN_HEARTS
            assert found("/v1/search/titles", "jumeaux") == ["tt0000001"]
            assert found("/v1/search/titles", "Unrelatd Comdy") == ["tt0000003"]
            assert found("/v1/search/names", "Gsu Showrunnr") == ["nm0000007"]
            assert found("/v1/search/titles", "qqqq xxxx") == []
    finally:
        api.stop()
