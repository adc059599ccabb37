"""What the routers share: parameter types, the key dependencies, reads from the pool, JSON answers, cursors, and
the error statuses a route documents in OpenAPI."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response

from imdb_api import models
from imdb_api.auth import Caller, require
from imdb_api.cache import cached
from imdb_api.errors import ApiError
from imdb_api.release import release_tag

TCONST = r"^tt\d{7,10}$"
NCONST = r"^nm\d{7,10}$"
WORD = r"^[A-Za-z][A-Za-z-]{0,31}$"
CATEGORY = r"^[a-z_]{1,32}$"
# PostgreSQL's text cannot hold NUL: a string that reaches a query must not contain it.
NO_NUL = r"^[^\x00]*$"
CURSOR_NOT_VALID = "the cursor is not valid: pass next_cursor from the previous page unchanged"

Tconst = Annotated[str, Path(pattern=TCONST, description="Title id, e.g. tt0111161.")]
Nconst = Annotated[str, Path(pattern=NCONST, description="Person id, e.g. nm0000151.")]
Limit = Annotated[int, Query(ge=1, le=100, description="At most this many items (1-100).")]
Year = Annotated[int | None, Query(ge=1800, le=2100)]
Cursor = Annotated[str | None, Query(max_length=200)]

reader_key = Depends(require("read"))
# A read route's dependencies: the key first, then the release its answer comes from (a 304 only for a valid key),
# then the cache of that release's answers.
READ_ROUTE = [reader_key, release_tag, cached]
Operator = Annotated[Caller, Depends(require("operate"))]
Admin = Annotated[Caller, Depends(require("manage_keys"))]

# What each error status means, as /docs shows it; every error has the body of models.Error.
ERROR_MEANINGS = {
    400: "A query parameter the route does not take.",
    401: "No API key, or an unknown, expired or revoked one.",
    403: "The key's role may not do this.",
    404: "Nothing has this id.",
    422: "A parameter is not valid.",
    429: "The key is over its rate limit.",
    500: "An unexpected error, logged by the API.",
    503: "The database is busy, slow or unavailable, or the data is not loaded yet.",
}
# The headers those answers always carry.
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Always `Bearer`.", "required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds until the key may ask again.",
            "required": True,
            "schema": {"type": "integer"},
        }
    },
}
# What every route that needs a key may answer: the key is checked against the database, and rate-limited.
KEYED_ROUTE_ERRORS = (401, 429, 503)
# The headers and the 304 of a read route's answer, whose ETag and Last-Modified are the release's (release.py).
_RELEASE_HEADERS = {
    "ETag": {
        "description": "The release the answer comes from, and its URL: send it back as If-None-Match.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Last-Modified": {"description": "When IMDb published the release's newest file.", "schema": {"type": "string"}},
}
RELEASE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The answer.", "headers": _RELEASE_HEADERS},
    304: {"description": "If-None-Match names this answer's ETag: unchanged, no body.", "headers": _RELEASE_HEADERS},
}


def read_route_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's ``responses`` of a read route: a keyed route's errors, these, and the release's 200 and 304."""
    return errors(*KEYED_ROUTE_ERRORS, *statuses) | RELEASE_RESPONSES


BAD_CURSOR = (400, "A query parameter the route does not take, or a cursor not made by this route.")


def errors(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's ``responses`` for these error statuses: a status, or a status and what it means on this route
    where the general meaning is too vague."""
    documented: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, meaning = entry if isinstance(entry, tuple) else (entry, ERROR_MEANINGS[entry])
        documented[status] = {"model": models.Error, "description": meaning} | (
            {"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {}
        )
    return documented


def json_response(body: str | bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def items_response(items: list[str], next_cursor: str | None = None, paged: bool = False) -> Response:
    body = '{"items":[' + ",".join(items) + "]"
    if paged:
        body += ',"next_cursor":' + json.dumps(next_cursor)
    return json_response(body + "}")


def page_response(rows: list[tuple], limit: int, cursor_of: Callable[[tuple], tuple]) -> Response:
    """A page of ``limit`` items from ``limit + 1`` rows (JSON first, sort key after): the extra row says whether
    there is a next page, whose cursor ``cursor_of`` makes from this page's last row."""
    next_cursor = encode_cursor(*cursor_of(rows[limit - 1])) if len(rows) > limit else None
    return items_response([row[0] for row in rows[:limit]], next_cursor, paged=True)


def encode_cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[Callable[[object], bool], ...]) -> list | None:
    """The values a cursor carries, each accepted by its check in ``shape``: a cursor this API did not make is a
    400, before its values reach a query that could not take them (a 500)."""
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        # zip(strict=True) raises ValueError, a 400, for a cursor of another length.
        if isinstance(values, list) and all(ok(value) for ok, value in zip(shape, values, strict=True)):
            return values
    except ValueError:
        pass
    raise ApiError(400, CURSOR_NOT_VALID)


def matching(pattern: str) -> Callable[[object], bool]:
    """A cursor value's check: a string that ``pattern`` matches whole."""
    return lambda value: isinstance(value, str) and re.fullmatch(pattern, value) is not None


def is_int4(value: object) -> bool:
    """A cursor value's check: an integer that PostgreSQL's integer holds."""
    return type(value) is int and -(2**31) <= value < 2**31


def is_date(value: object) -> bool:
    """A cursor value's check: an ISO date (YYYY-MM-DD) that is a real day."""
    if not isinstance(value, str) or re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


async def fetch_all(request: Request, statement: str, params) -> list[tuple]:
    async with request.app.state.pool.connection() as conn:
        return await (await conn.execute(statement, params)).fetchall()


async def fetch_one(request: Request, statement: str, params) -> tuple | None:
    async with request.app.state.pool.connection() as conn:
        return await (await conn.execute(statement, params)).fetchone()


async def found_or_404(request: Request, statement: str, key: str, what: str) -> Response:
    """The one JSON row ``statement`` answers for ``key``, or 404."""
    row = await fetch_one(request, statement, (key,))
    if row is None:
        raise ApiError(404, f"no {what} {key}")
    return json_response(row[0])


async def rows_if_found(request: Request, exists: str, key: str, what: str, statement: str, params) -> list[tuple]:
    """A title's or a person's list (credits, akas, filmography, ...), in one transaction with the check that the
    title or person exists (404)."""
    async with request.app.state.pool.connection() as conn, conn.transaction():
        if await (await conn.execute(exists, (key,))).fetchone() is None:
            raise ApiError(404, f"no {what} {key}")
        return await (await conn.execute(statement, params)).fetchall()
