"""The FastAPI application: routes under /v1, keys and roles, errors as JSON, OpenAPI at /docs.

Serve it with `make api` (or `uv run python -m imdb_api`); `create_app()` is the factory uvicorn calls. The routes
live in `imdb_api/routers/`, one module per concern; what they share is in `imdb_api/common.py`.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg_pool
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imdb_api import database, queries
from imdb_api.auth import KeyChecker
from imdb_api.cache import AnswerCache, CachedAnswer, StoreAnswers, cached_answer_response
from imdb_api.common import errors
from imdb_api.errors import ApiError, error_response, install
from imdb_api.release import NotModified, ReleaseHeaders, ReleaseWatch, not_modified_response
from imdb_api.routers import admin, charts, datasets, health, names, search, titles
from imdb_api.runs import Runs
from imdb_assets import settings as platform_settings

MAX_QUERY_STRING = 2048
MAX_BODY = 16 * 1024
ROUTERS = (health.router, titles.router, search.router, names.router, charts.router, datasets.router, admin.router)


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
    """Answers 414 for an oversized query string and 413 for an oversized body before any route sees them; a
    chunked body, whose size no header gives, is counted as the route reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(scope.get("query_string", b"")) > MAX_QUERY_STRING or len(scope["path"]) > MAX_QUERY_STRING:
                await error_response(414, f"the URL is longer than {MAX_QUERY_STRING} characters")(scope, receive, send)
                return
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY:
                await error_response(413, f"the body is larger than {MAX_BODY} bytes")(scope, receive, send)
                return
            if b"transfer-encoding" in headers:
                receive = _at_most(MAX_BODY, receive)
        await self.app(scope, receive, send)


def _at_most(limit: int, receive: Receive) -> Receive:
    """``receive`` that raises a 413 once the body passes ``limit`` bytes: an HTTPException, which FastAPI lets
    through its reading of the body to the handlers that answer it as JSON."""
    received = 0

    async def receive_at_most() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
        return message

    return receive_at_most


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
        app.state.release = ReleaseWatch(pool)
        app.state.answers = AnswerCache(int(settings.api_cache_mb * 2**20)) if settings.api_cache_mb else None
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
    app.add_exception_handler(NotModified, not_modified_response)
    app.add_exception_handler(CachedAnswer, cached_answer_response)
    app.add_middleware(StoreAnswers)
    app.add_middleware(ReleaseHeaders)
    app.add_middleware(LimitRequestSize)
    # What any route may answer: an unknown query parameter, the middleware's limits, an unexpected error.
    any_route = errors(
        400,
        (413, f"The body is larger than {MAX_BODY} bytes."),
        (414, f"The URL is longer than {MAX_QUERY_STRING} characters."),
        500,
    )
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(reject_unknown_parameters)], responses=any_route)
    return app
