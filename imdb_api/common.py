"""What the routers share: parameter types, the key dependencies, reads from the pool, JSON answers and cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response

from imdb_api.auth import Caller, require
from imdb_api.errors import ApiError

TCONST = r"^tt\d{7,10}$"
NCONST = r"^nm\d{7,10}$"
WORD = r"^[A-Za-z][A-Za-z-]{0,31}$"

Tconst = Annotated[str, Path(pattern=TCONST, description="Title id, e.g. tt0111161.")]
Nconst = Annotated[str, Path(pattern=NCONST, description="Person id, e.g. nm0000151.")]
Limit = Annotated[int, Query(ge=1, le=100, description="At most this many items (1-100).")]
Year = Annotated[int | None, Query(ge=1800, le=2100)]
Cursor = Annotated[str | None, Query(max_length=200)]

reader_key = Depends(require("read"))
Operator = Annotated[Caller, Depends(require("operate"))]
Admin = Annotated[Caller, Depends(require("manage_keys"))]


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
