"""The API's cache of answers by release (imdb_api/cache.py), over real HTTP on 127.0.0.1: two servers on the same
database, one caching and one not, answer alike; a change of the data that is not a release shows which answers
came from the cache; a new release is answered anew; keys and rate limits hold on a hit; the size bound holds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from imdb_api.cache import AnswerCache
from tests.api_server import ApiServer, new_key
from tests.conftest import Platform, drop_database, fresh_database
from tests.imdb_files import write_files
from tests.mirror_server import MirrorServer
from tests.test_api import RATE_LIMIT, TWIN_HEARTS, api_env
from tests.world import WORLD

# Read routes of every kind, with query parameters in both orders.
PATHS = [
    "/v1/titles/tt0000001",
    "/v1/titles/tt0000010/episodes?season=2",
    "/v1/titles/tt0000001/credits?category=director",
    "/v1/titles/tt0000001/similar",
    "/v1/titles?genre=Drama&sort=rating&limit=2",
    "/v1/titles?limit=2&sort=rating&genre=Drama",
    "/v1/names/nm0000001/filmography?limit=2",
    "/v1/search/titles?q=twin%20hea",
    "/v1/charts/top?min_votes=1000",
    "/v1/stats/genres",
]


@dataclass
class CacheWorld:
    db_url: str
    data_dir: Path
    tmp: Path
    cached: ApiServer
    uncached: ApiServer

    def server(self, **settings: str) -> ApiServer:
        return ApiServer(api_env(self.db_url, self.data_dir, **settings), self.tmp)


@pytest.fixture(scope="module")
def cache_world(tmp_path_factory, pg_server: str) -> Iterator[CacheWorld]:
    tmp = tmp_path_factory.mktemp("api_cache")
    db_url = fresh_database(pg_server, "test_api_cache")
    mirror = MirrorServer(write_files(tmp / "world", WORLD))
    try:
        Platform(mirror.base_url, tmp / "data", db_url).refresh(models=True)
    finally:
        mirror.stop()
    env = api_env(db_url, tmp / "data", IMDB_API_RATE_LIMIT="100000/minute")
    cached = ApiServer(env, tmp)
    uncached = ApiServer(env | {"IMDB_API_CACHE_MB": "0"}, tmp)
    yield CacheWorld(db_url, tmp / "data", tmp, cached, uncached)
    cached.stop()
    uncached.stop()
    drop_database(pg_server, "test_api_cache")


def change_without_a_release(db_url: str, tconst: str, title: str) -> None:
    """A title renamed in the mart in place: the data changes, but neither the load log nor the marts' relations,
    so the release does not."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE imdb_marts.titles SET primary_title = %s WHERE tconst = %s", (title, tconst))


def new_release(db_url: str) -> None:
    """What a load records when it swaps a table in, as test_api does: the release changes."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE imdb_meta.loads SET loaded_at = now() WHERE table_name = 'title_ratings'")


def wait_for_answer(client: httpx.Client, path: str, expected: Callable[[dict], bool]) -> None:
    """The release is read again within a second (release.CHECK_SECONDS): by then the new one is answered."""
    deadline = time.monotonic() + 5
    while not expected(client.get(path).json()):
        assert time.monotonic() < deadline, "the cache answered the previous release after a new one"
        time.sleep(0.2)


def test_an_answer_from_the_cache_is_the_uncached_one_until_the_release_changes(cache_world: CacheWorld) -> None:
    key = new_key(cache_world.db_url, "reader")
    with cache_world.cached.client(key) as cached, cache_world.uncached.client(key) as uncached:
        for path in PATHS:
            first, again, fresh = cached.get(path), cached.get(path), uncached.get(path)
            assert first.status_code == again.status_code == fresh.status_code == 200, (path, first.text)
            assert first.content == again.content == fresh.content, path
            assert first.headers["etag"] == again.headers["etag"] == fresh.headers["etag"], path
            assert again.headers["content-type"] == "application/json", path
        assert cached.get("/v1/titles/tt0000001").json() == TWIN_HEARTS
        # The same parameters in another order and spelling are the same answer.
        assert cached.get(PATHS[5]).content == cached.get("/v1/titles?limit=2&genre=Drama&sort=rating").content
        # A 304 still goes before the cache.
        etag = cached.get(PATHS[0]).headers["etag"]
        assert cached.get(PATHS[0], headers={"If-None-Match": etag}).status_code == 304
        assert cached.get(PATHS[0], headers={"If-None-Match": "*"}).content == b""

        change_without_a_release(cache_world.db_url, "tt0000001", "Twin Hearts Renamed")
        try:
            # The release is unchanged: the caching server answers what it built; the other one reads the change.
            assert uncached.get(PATHS[0]).json()["primary_title"] == "Twin Hearts Renamed"
            assert cached.get(PATHS[0]).json() == TWIN_HEARTS
            assert cached.get("/v1/titles/tt0000001?").json() == TWIN_HEARTS  # an empty query is none
            # A URL not asked before is built now, from the changed data.
            assert cached.get("/v1/titles?genre=Drama&limit=1").json()["items"][0]["primary_title"] == (
                "Twin Hearts Renamed"
            )
            new_release(cache_world.db_url)
            wait_for_answer(cached, PATHS[0], lambda answer: answer["primary_title"] == "Twin Hearts Renamed")
            assert cached.get(PATHS[0]).headers["etag"] != etag
        finally:
            change_without_a_release(cache_world.db_url, "tt0000001", "Twin Hearts")
            new_release(cache_world.db_url)
        wait_for_answer(cached, PATHS[0], lambda answer: answer == TWIN_HEARTS)


def test_errors_are_not_cached(cache_world: CacheWorld) -> None:
    key = new_key(cache_world.db_url, "reader")
    with cache_world.cached.client(key) as client:
        assert client.get("/v1/names/nm0009999").status_code == 404
        assert client.get("/v1/titles?limit=0").status_code == 422
        person = "INSERT INTO imdb_marts.people (nconst, primary_name) VALUES ('nm0009999', 'Late Person')"
        with psycopg.connect(cache_world.db_url, autocommit=True) as conn:
            conn.execute(person)
        try:
            # Found now, with the release unchanged: the 404 before was not kept.
            assert client.get("/v1/names/nm0009999").json()["primary_name"] == "Late Person"
        finally:
            with psycopg.connect(cache_world.db_url, autocommit=True) as conn:
                conn.execute("DELETE FROM imdb_marts.people WHERE nconst = 'nm0009999'")


def test_a_cached_answer_still_needs_a_valid_key_and_counts_against_its_limit(cache_world: CacheWorld) -> None:
    server = cache_world.server()  # the suite's rate limit
    try:
        key = new_key(cache_world.db_url, "reader")
        with server.client(key) as reader:
            assert reader.get(PATHS[0]).json() == TWIN_HEARTS  # now in the cache
            for other in (None, "imdbk_" + "x" * 43, "not-a-key"):
                with server.client(other) as client:
                    response = client.get(PATHS[0])
                    assert response.status_code == 401 and "Twin" not in response.text, other
                    assert "etag" not in response.headers
            statuses = [reader.get(PATHS[0]).status_code for _ in range(RATE_LIMIT - 1)]
            assert statuses == [200] * (RATE_LIMIT - 1)
            assert reader.get(PATHS[0]).status_code == 429
    finally:
        server.stop()


def test_the_cache_keeps_the_most_recently_used_answers_within_its_size(cache_world: CacheWorld) -> None:
    """A server whose cache holds two of three titles' answers: the least recently used one is built again."""
    titles = ["tt0000001", "tt0000002", "tt0000003"]
    key = new_key(cache_world.db_url, "reader")
    with cache_world.uncached.client(key) as uncached:
        answers = [uncached.get(f"/v1/titles/{t}").json() for t in titles]
        sizes = [len(uncached.get(f"/v1/titles/{t}").content) for t in titles]
    server = cache_world.server(IMDB_API_CACHE_MB=repr((sum(sizes) - 1) / 2**20), IMDB_API_RATE_LIMIT="100000/minute")
    try:
        with server.client(key) as client:
            for tconst in (titles[0], titles[1], titles[0], titles[2]):  # the second is now the oldest: evicted
                client.get(f"/v1/titles/{tconst}").raise_for_status()
            for tconst in titles:
                change_without_a_release(cache_world.db_url, tconst, f"Renamed {tconst}")
            # The two kept first (a miss would be stored, evicting one of them), then the evicted one, built again.
            assert client.get(f"/v1/titles/{titles[0]}").json() == answers[0]
            assert client.get(f"/v1/titles/{titles[2]}").json() == answers[2]
            assert client.get(f"/v1/titles/{titles[1]}").json()["primary_title"] == f"Renamed {titles[1]}"
    finally:
        server.stop()
        for tconst, answer in zip(titles, answers, strict=True):
            change_without_a_release(cache_world.db_url, tconst, answer["primary_title"])


def test_the_cache_holds_one_release_within_its_bytes() -> None:
    cache = AnswerCache(max_bytes=10)
    assert cache.get("r1", ("/a",)) is None
    cache.put("r1", ("/a",), b"aaaa")
    cache.put("r1", ("/b",), b"bbbb")
    assert cache.get("r1", ("/a",)) == b"aaaa"  # /b is now the least recently used
    cache.put("r1", ("/c",), b"cccc")
    assert (cache.get("r1", ("/b",)), cache.get("r1", ("/a",)), cache.get("r1", ("/c",))) == (None, b"aaaa", b"cccc")
    assert cache.size == 8
    cache.put("r1", ("/big",), b"x" * 11)  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.size == 8 and cache.get("r1", ("/big",)) is None
    assert cache.get("r2", ("/a",)) is None  # a new release empties it
    assert cache.size == 0 and not cache.bodies
    cache.put("r1", ("/a",), b"aaaa")  # built under the previous release: not kept
    assert cache.get("r2", ("/a",)) is None


def test_a_mart_built_in_place_is_a_new_release(cache_world: CacheWorld) -> None:
    """An incremental build changes a mart's rows, not its relation: its watermark, moved in the build's
    transaction, is what tells the cache (and the ETag) that the answers changed."""
    key = new_key(cache_world.db_url, "reader")
    with cache_world.cached.client(key) as cached:
        etag = cached.get(PATHS[0]).headers["etag"]
        change_without_a_release(cache_world.db_url, "tt0000001", "Twin Hearts Incremental")
        with psycopg.connect(cache_world.db_url, autocommit=True) as conn:
            moved = "UPDATE imdb_meta.model_watermarks SET consumed_id = consumed_id + %s WHERE model = 'titles'"
            assert conn.execute(moved, (1,)).rowcount == 1
            try:
                wait_for_answer(cached, PATHS[0], lambda answer: answer["primary_title"] == "Twin Hearts Incremental")
                assert cached.get(PATHS[0]).headers["etag"] != etag
            finally:
                change_without_a_release(cache_world.db_url, "tt0000001", "Twin Hearts")
                conn.execute(moved, (-1,))
        wait_for_answer(cached, PATHS[0], lambda answer: answer == TWIN_HEARTS)
