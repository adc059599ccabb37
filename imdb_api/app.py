"""The FastAPI application: routes under /v1, keys and roles, errors as JSON, OpenAPI at /docs.

Serve it with `make api` (or `uv run python -m imdb_api`); `create_app()` is the factory uvicorn calls.
"""

from __future__ import annotations

import base64
import gc
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import psycopg
import psycopg_pool
from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from imdb_api import database, keys, models, queries
from imdb_api.auth import Caller, KeyChecker, audit, require
from imdb_api.errors import ApiError, error_response, install
from imdb_api.runs import DagsterUnavailable, Runs
from imdb_assets import settings as platform_settings
from imdb_assets.catalog import BY_STEM, DATASETS
from imdb_assets.database import one_row

TCONST = r"^tt\d{7,10}$"
NCONST = r"^nm\d{7,10}$"
WORD = r"^[A-Za-z][A-Za-z-]{0,31}$"
MAX_QUERY_STRING = 2048
MAX_BODY = 16 * 1024
REQUIRED_RELATIONS = [f"imdb.{d.table}" for d in DATASETS] + [
    f"imdb_marts.{name}"
    for name in ("titles", "people", "title_people", "title_recommendations", "series_episodes", "title_search")
]

Tconst = Annotated[str, Path(pattern=TCONST, description="Title id, e.g. tt0111161.")]
Nconst = Annotated[str, Path(pattern=NCONST, description="Person id, e.g. nm0000151.")]
Limit = Annotated[int, Query(ge=1, le=100, description="At most this many items (1-100).")]
Year = Annotated[int | None, Query(ge=1800, le=2100)]
SEARCHES = {"titles": (queries.SEARCH_RATED_TITLES, queries.SEARCH_TITLES), "names": (None, queries.SEARCH_NAMES)}
Operator = Annotated[Caller, Depends(require("operate"))]
Admin = Annotated[Caller, Depends(require("manage_keys"))]


class RefreshRequest(BaseModel):
    files: list[str] = Field(default=[], description="IMDb file stems (e.g. title.ratings); empty: every file.")

    model_config = {"extra": "forbid"}


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["reader", "operator", "admin"]
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)

    model_config = {"extra": "forbid"}


def json_response(body: str | bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def items_response(items: list[str], next_cursor: str | None = None, paged: bool = False) -> Response:
    body = '{"items":[' + ",".join(items) + "]"
    if paged:
        body += ',"next_cursor":' + json.dumps(next_cursor)
    return json_response(body + "}")


def encode_cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[type, ...]) -> list | None:
    """The values a cursor carries, checked against ``shape``; a cursor that was not made by this API is a 400."""
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(values, list) and len(values) == len(shape) and all(map(isinstance, values, shape)):
            return values
    except ValueError:
        pass
    raise ApiError(400, "the cursor is not valid: pass next_cursor from the previous page unchanged")


async def reject_unknown_parameters(request: Request) -> None:
    """400 for a query parameter the route does not take: a typo must not silently widen a query. Async, as every
    dependency here: FastAPI runs a plain function in a worker thread, a costly hop on every request."""
    route = request.scope.get("route")
    if route is None or not request.scope.get("query_string") or not request.query_params:
        return
    cached = _KNOWN_PARAMETERS.get(id(route))
    if cached is None:
        cached = _KNOWN_PARAMETERS[id(route)] = (route, _query_parameters(route.dependant))
    known = cached[1]
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)[:200]}")


# The query parameters of each route, found on its first request with a query. Keyed by id (a route is not
# hashable); each entry holds its route, so that no other object can take that id while the entry exists.
_KNOWN_PARAMETERS: dict[int, tuple[Any, set[str]]] = {}


def _query_parameters(dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_parameters(sub)
    return names


class LimitRequestSize:
    """Answers 414 for an oversized query string and 413 for an oversized body before any route sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(scope.get("query_string", b"")) > MAX_QUERY_STRING or len(scope["path"]) > MAX_QUERY_STRING:
                await error_response(414, f"the URL is longer than {MAX_QUERY_STRING} characters")(scope, receive, send)
                return
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY:
                await error_response(413, f"the body is larger than {MAX_BODY} bytes")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: platform_settings.Settings | None = None) -> FastAPI:
    settings = settings or platform_settings.load()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = await run_in_threadpool(database.api_database_url, settings)
        pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=2,
            max_size=10,
            timeout=5,
            open=False,
            kwargs={"autocommit": True, "options": f"-c statement_timeout={settings.api_statement_timeout_ms}"},
        )
        await pool.open(wait=True)
        async with pool.connection() as conn:
            trigram = await (await conn.execute(queries.TRIGRAM_SCHEMA)).fetchone()
        app.state.similar = {
            "titles": trigram and queries.SIMILAR_TITLES.format(trgm=trigram[0]),
            "names": trigram and queries.SIMILAR_NAMES.format(trgm=trigram[0]),
        }
        app.state.pool = pool
        app.state.keys = KeyChecker(pool, settings.api_key_cache_seconds, settings.api_rate_limit)
        app.state.runs = Runs(settings.dagster_url)
        # What start-up allocated lives as long as the process: out of the collector's way, a full collection stays
        # short and the slowest requests fast.
        gc.freeze()
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="IMDb datasets API",
        version="1",
        description="IMDb's public datasets, typed and modeled. Every route but /healthz and /readyz needs an API "
        "key (`Authorization: Bearer ...`). IMDb licenses this data for personal and non-commercial use only.",
        lifespan=lifespan,
    )
    install(app)
    app.add_middleware(LimitRequestSize)
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": models.Error} for status in (400, 401, 403, 404, 422, 429, 503)
    }
    app.include_router(_routes(), dependencies=[Depends(reject_unknown_parameters)], responses=errors)
    return app


async def _rows(request: Request, statement: str, params) -> list[tuple]:
    async with request.app.state.pool.connection() as conn:
        return await (await conn.execute(statement, params)).fetchall()


async def _one(request: Request, statement: str, params) -> tuple | None:
    async with request.app.state.pool.connection() as conn:
        return await (await conn.execute(statement, params)).fetchone()


async def _found(request: Request, statement: str, key: str, what: str) -> Response:
    """The one JSON row ``statement`` answers for ``key``, or 404."""
    row = await _one(request, statement, (key,))
    if row is None:
        raise ApiError(404, f"no {what} {key}")
    return json_response(row[0])


async def _rows_of(request: Request, exists: str, key: str, what: str, statement: str, params) -> list[tuple]:
    """A title's or a person's list (credits, akas, filmography, ...), in one transaction with the check that the
    title or person exists (404)."""
    async with request.app.state.pool.connection() as conn, conn.transaction():
        if await (await conn.execute(exists, (key,))).fetchone() is None:
            raise ApiError(404, f"no {what} {key}")
        return await (await conn.execute(statement, params)).fetchall()


async def _title_items(request: Request, tconst: str, statement: str, params) -> Response:
    rows = await _rows_of(request, queries.TITLE_EXISTS, tconst, "title", statement, params)
    return items_response([row[0] for row in rows])


def _page(rows: list[tuple], limit: int, cursor_of) -> Response:
    """A page of ``limit`` items from ``limit + 1`` rows (JSON first, sort key after): the extra row says whether
    there is a next page, whose cursor ``cursor_of`` makes from this page's last row."""
    next_cursor = encode_cursor(*cursor_of(rows[limit - 1])) if len(rows) > limit else None
    return items_response([row[0] for row in rows[:limit]], next_cursor, paged=True)


def _search_query(q: str, any_word: bool) -> str:
    """A tsquery of the text's words (all of them, or any): the last one also matches as a prefix. Words are
    letters and digits only, so nothing in ``q`` can reach tsquery's syntax."""
    words = re.findall(r"[^\W_]+", q)[:10]
    if not words:
        raise ApiError(422, "q must contain a letter or a digit")
    words[-1] += ":*"
    return (" | " if any_word else " & ").join(words)


def _routes():
    from fastapi import APIRouter

    router = APIRouter()
    read = Depends(require("read"))

    @router.get("/healthz", tags=["health"], summary="The process is up (no key needed)")
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], summary="The database answers and the data is loaded (no key needed)")
    async def readyz(request: Request) -> Response:
        try:
            missing = one_row(await _one(request, queries.READY, (REQUIRED_RELATIONS,)))[0]
        except (psycopg.Error, psycopg_pool.PoolTimeout):
            return error_response(503, "the database is unavailable")
        if missing:
            return error_response(503, f"not loaded yet: {', '.join(missing)}")
        return json_response('{"status":"ready"}')

    @router.get(
        "/v1/titles/{tconst}", tags=["titles"], dependencies=[read], summary="A title", response_model=models.Title
    )
    async def title(request: Request, tconst: Tconst) -> Response:
        return await _found(request, queries.TITLE, tconst, "title")

    @router.get(
        "/v1/titles",
        tags=["titles"],
        dependencies=[read],
        summary="Titles by filter, paged by key",
        response_model=models.Page[models.TitleSummary],
    )
    async def titles(
        request: Request,
        type: Annotated[str | None, Query(pattern=WORD, description="movie, tvSeries, ...")] = None,
        genre: Annotated[str | None, Query(pattern=WORD)] = None,
        year_from: Year = None,
        year_to: Year = None,
        min_votes: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
        sort: Literal["votes", "rating", "year"] = "votes",
        limit: Limit = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        after = decode_cursor(cursor, (str, str, str))
        if after and after[0] != sort:
            raise ApiError(400, f"the cursor belongs to sort={after[0]}, not sort={sort}")
        params = {
            "type": type,
            "genre": genre,
            "year_from": year_from,
            "year_to": year_to,
            "min_votes": min_votes,
            "after_key": after[1] if after else None,
            "after_tconst": after[2] if after else None,
            "fetch": limit + 1,
        }
        rows = await _rows(request, queries.titles_page(sort, after=after is not None), params)
        return _page(rows, limit, lambda last: (sort, str(last[1]), last[2]))

    @router.get(
        "/v1/search/titles",
        tags=["search"],
        dependencies=[read],
        summary="Titles by words of any name",
        response_model=models.Items[models.TitleHit],
    )
    async def search_titles(
        request: Request, q: Annotated[str, Query(min_length=1, max_length=200)], limit: Limit = 20
    ) -> Response:
        return await _search(request, "titles", q, limit)

    @router.get(
        "/v1/search/names",
        tags=["search"],
        dependencies=[read],
        summary="People by words of their name",
        response_model=models.Items[models.NameHit],
    )
    async def search_names(
        request: Request, q: Annotated[str, Query(min_length=1, max_length=200)], limit: Limit = 20
    ) -> Response:
        return await _search(request, "names", q, limit)

    async def _search(request: Request, kind: str, q: str, limit: int) -> Response:
        """Every word, then any word; titles among the rated first (enough of them ends it); then, where pg_trgm is
        installed, names spelled alike (a typo)."""
        rated, every = SEARCHES[kind]
        for any_word in (False, True):
            params = {"query": _search_query(q, any_word), "limit": limit}
            if rated and len(rows := await _rows(request, rated, params)) >= limit:
                return items_response([row[0] for row in rows])
            if rows := await _rows(request, every, params):
                return items_response([row[0] for row in rows])
        similar = request.app.state.similar[kind]
        rows = await _rows(request, similar, {"text": q, "limit": limit}) if similar else []
        return items_response([row[0] for row in rows])

    @router.get(
        "/v1/titles/{tconst}/credits",
        tags=["titles"],
        dependencies=[read],
        summary="Who worked on it",
        response_model=models.Items[models.Credit],
    )
    async def credits(
        request: Request, tconst: Tconst, category: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None
    ) -> Response:
        return await _title_items(request, tconst, queries.CREDITS, (tconst, category, category))

    @router.get(
        "/v1/titles/{tconst}/akas",
        tags=["titles"],
        dependencies=[read],
        summary="Its other titles",
        response_model=models.Items[models.Aka],
    )
    async def akas(request: Request, tconst: Tconst) -> Response:
        return await _title_items(request, tconst, queries.AKAS, (tconst,))

    @router.get(
        "/v1/titles/{tconst}/similar",
        tags=["titles"],
        dependencies=[read],
        summary="Recommendations",
        response_model=models.Items[models.Similar],
    )
    async def similar(request: Request, tconst: Tconst) -> Response:
        return await _title_items(request, tconst, queries.SIMILAR, (tconst,))

    @router.get(
        "/v1/titles/{tconst}/episodes",
        tags=["titles"],
        dependencies=[read],
        summary="A series' episodes",
        response_model=models.Items[models.Episode],
    )
    async def episodes(
        request: Request, tconst: Tconst, season: Annotated[int | None, Query(ge=0, le=100_000)] = None
    ) -> Response:
        return await _title_items(request, tconst, queries.EPISODES, (tconst, season, season))

    @router.get(
        "/v1/names/{nconst}", tags=["names"], dependencies=[read], summary="A person", response_model=models.Person
    )
    async def person(request: Request, nconst: Nconst) -> Response:
        return await _found(request, queries.PERSON, nconst, "person")

    @router.get(
        "/v1/names/{nconst}/filmography",
        tags=["names"],
        dependencies=[read],
        summary="A person's credits",
        response_model=models.Page[models.FilmographyEntry],
    )
    async def filmography(
        request: Request,
        nconst: Nconst,
        limit: Limit = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        after = decode_cursor(cursor, (int, str, str))
        params = {
            "nconst": nconst,
            "after_year": after[0] if after else None,
            "after_tconst": after[1] if after else None,
            "after_category": after[2] if after else None,
            "fetch": limit + 1,
        }
        rows = await _rows_of(request, queries.PERSON_EXISTS, nconst, "person", queries.FILMOGRAPHY, params)
        return _page(rows, limit, lambda last: last[1:])

    @router.get(
        "/v1/charts/top",
        tags=["charts"],
        dependencies=[read],
        summary="Best rated titles",
        response_model=models.Items[models.TitleSummary],
    )
    async def top_chart(
        request: Request,
        genre: Annotated[str | None, Query(pattern=WORD)] = None,
        type: Annotated[str, Query(pattern=WORD)] = "movie",
        min_votes: Annotated[int, Query(ge=0, le=1_000_000_000)] = 25_000,
        limit: Limit = 20,
    ) -> Response:
        params = {"genre": genre, "type": type, "min_votes": min_votes, "limit": limit}
        return items_response([row[0] for row in await _rows(request, queries.TOP_CHART, params)])

    @router.get(
        "/v1/stats/genres",
        tags=["charts"],
        dependencies=[read],
        summary="Titles and ratings by genre",
        response_model=models.Items[models.GenreStats],
    )
    async def genre_stats(request: Request, year_from: Year = None, year_to: Year = None) -> Response:
        params = {"year_from": year_from, "year_to": year_to}
        return items_response([row[0] for row in await _rows(request, queries.GENRE_STATS, params)])

    @router.get(
        "/v1/datasets",
        tags=["datasets"],
        dependencies=[read],
        summary="Rows and freshness per table",
        response_model=models.Items[models.DatasetFreshness],
    )
    async def datasets(request: Request) -> dict:
        loads = {row[0]: row[1:] for row in await _rows(request, queries.DATASETS, ())}
        items = []
        for dataset in DATASETS:
            rows, last_modified, loaded_at = loads.get(dataset.table, (None, None, None))
            items.append(
                {
                    "file": dataset.file_name,
                    "table": f"imdb.{dataset.table}",
                    "rows": rows,
                    "source_last_modified": last_modified,
                    "loaded_at": loaded_at.isoformat() if loaded_at else None,
                }
            )
        return {"items": items}

    @router.post(
        "/v1/refresh",
        tags=["operations"],
        status_code=202,
        summary="Launch imdb_refresh (operator)",
        response_model=models.RunLaunched,
    )
    async def refresh(
        request: Request, caller: Operator, body: Annotated[RefreshRequest | None, Body()] = None
    ) -> dict:
        files = (body.files if body else []) or []
        unknown = [stem for stem in files if stem not in BY_STEM]
        if unknown:
            raise ApiError(422, f"unknown file(s): {', '.join(unknown)[:200]}; known: {', '.join(BY_STEM)}")
        detail = {"files": files}
        try:
            run_id = await run_in_threadpool(
                request.app.state.runs.launch, [BY_STEM[stem] for stem in files], caller.actor
            )
        except DagsterUnavailable as error:
            await audit(request, caller, "refresh", detail, "dagster unavailable")
            raise ApiError(503, str(error)) from error
        await audit(request, caller, "refresh", detail | {"run_id": run_id}, "launched")
        return {"run_id": run_id, "status_url": f"/v1/runs/{run_id}"}

    @router.get(
        "/v1/runs/{run_id}", tags=["operations"], summary="A run's status (operator)", response_model=models.RunStatus
    )
    async def run_status(
        request: Request,
        caller: Operator,
        run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")],
    ) -> dict:
        try:
            status = await run_in_threadpool(request.app.state.runs.status, run_id)
        except DagsterUnavailable as error:
            raise ApiError(503, str(error)) from error
        await audit(request, caller, "run_status", {"run_id": run_id}, status or "not found")
        if status is None:
            raise ApiError(404, f"no run {run_id}")
        return {"run_id": run_id, "status": status}

    @router.post(
        "/v1/keys",
        tags=["keys"],
        status_code=201,
        summary="Make a key, shown only here (admin)",
        response_model=models.NewKeyCreated,
    )
    async def create_key(request: Request, caller: Admin, body: NewKey) -> dict:
        secret = keys.new_secret()
        async with request.app.state.pool.connection() as conn:
            row = await (
                await conn.execute(
                    keys.INSERT_KEY,
                    (
                        body.name,
                        body.role,
                        keys.key_hash(secret),
                        secret[: len(keys.PREFIX) + 6],
                        caller.actor,
                        keys.expiry(body.expires_in_days),
                    ),
                )
            ).fetchone()
        info = keys.KeyInfo(*row)
        await audit(request, caller, "create_key", {"key_id": info.id, "name": info.name, "role": info.role}, "ok")
        return info.public() | {"key": secret}

    @router.get(
        "/v1/keys",
        tags=["keys"],
        summary="Every key, without the keys themselves (admin)",
        response_model=models.Items[models.KeyInfo],
    )
    async def list_keys(request: Request, caller: Admin) -> dict:
        rows = await _rows(request, keys.LIST_KEYS, ())
        await audit(request, caller, "list_keys", {}, "ok")
        return {"items": [keys.KeyInfo(*row).public() for row in rows]}

    @router.delete("/v1/keys/{key_id}", tags=["keys"], summary="Revoke a key (admin)", response_model=models.KeyInfo)
    async def revoke_key(request: Request, caller: Admin, key_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict:
        row = await _one(request, keys.REVOKE_KEY, (key_id,))
        await audit(request, caller, "revoke_key", {"key_id": key_id}, "ok" if row else "not found")
        if row is None:
            raise ApiError(404, f"no key {key_id}")
        request.app.state.keys.forget()
        return keys.KeyInfo(*row).public()

    return router
