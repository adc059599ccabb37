"""Which release an answer comes from: an ``ETag`` and a ``Last-Modified`` on every read route's answer, and a 304
for a client that already holds it.

The release is what ``imdb_meta.loads`` records (each table's file, by its sha256, and when it was swapped in), the
relations of ``imdb_marts`` (dbt rebuilds a mart as a new table, so its oid changes) and the watermarks of the marts
dbt updates in place (``imdb_meta.model_watermarks``, moved in each build's transaction): between two releases none
changes, and neither does any answer. A read route's answer is a function of the release and its URL, so
its ETag is the release's tag and a digest of the URL: weak, since equal answers are promised, not equal bytes.
The tag is read at most once per ``CHECK_SECONDS`` by each process, so it costs no query per request; an answer's
tag may lag a release by that long. The key is checked before any of this: no key, no 304.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime

from fastapi import Depends, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imdb_api import queries
from imdb_assets.database import one_row
from imdb_assets.release import release_date

CHECK_SECONDS = 1.0
# Where the release dependency leaves an answer's headers for ReleaseHeaders, in the request's ASGI scope.
SCOPE_KEY = "imdb.release_headers"
# The browsers' heuristic freshness (a share of the age Last-Modified gives) would let them reuse an answer past
# the next release unasked: each reuse is revalidated instead, which costs a 304.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class Release:
    tag: str
    last_modified: str | None
    """The newest file's Last-Modified (or, for a file without one, its swap), as an HTTP date."""


class ReleaseWatch:
    """The release the database serves, read again once ``ttl`` seconds have passed since the last read."""

    def __init__(self, pool: AsyncConnectionPool, ttl: float = CHECK_SECONDS) -> None:
        self.pool = pool
        self.ttl = ttl
        self.read_at = -float("inf")
        self.release: Release | None = None
        self.lock = asyncio.Lock()

    async def current(self) -> Release:
        if self.release is None or time.monotonic() - self.read_at >= self.ttl:
            # One reader at a time: the others wait for its answer rather than all asking at once.
            async with self.lock:
                if self.release is None or time.monotonic() - self.read_at >= self.ttl:
                    self.release = await self._read()
                    self.read_at = time.monotonic()
        return self.release

    async def _read(self) -> Release:
        async with self.pool.connection() as conn:
            loads = await (await conn.execute(queries.RELEASE_LOADS)).fetchall()
            marts = one_row(await (await conn.execute(queries.MART_RELATIONS)).fetchone())[0]
            watermarks = None
            if one_row(await (await conn.execute(queries.WATERMARKS_READABLE)).fetchone())[0]:
                watermarks = one_row(await (await conn.execute(queries.MART_WATERMARKS)).fetchone())[0]
        digest = hashlib.blake2b(repr((loads, marts, watermarks)).encode(), digest_size=8).hexdigest()
        dates = [release_date(last_modified) or loaded_at for _, _, loaded_at, last_modified in loads]
        return Release(digest, format_datetime(max(dates).astimezone(UTC), usegmt=True) if dates else None)


class NotModified(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("not modified")
        self.headers = headers


async def not_modified_response(request: Request, error: Exception) -> Response:
    assert isinstance(error, NotModified)
    return Response(status_code=304, headers=error.headers)


def answer_etag(release: Release, request: Request) -> str:
    url = request.url.path + "?" + request.url.query
    return f'W/"{release.tag}.{hashlib.blake2b(url.encode(), digest_size=6).hexdigest()}"'


def matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match's weak comparison: any of its tags, W/ or not, names ``etag``'s."""
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


async def tag_answer(request: Request) -> None:
    """The dependency, after the key's, of every read route: a 304 if the client holds this release's answer to
    this URL; else the headers ReleaseHeaders puts on the answer if it is a 200."""
    release = await request.app.state.release.current()
    headers = {"ETag": answer_etag(release, request), "Cache-Control": CACHE_CONTROL}
    if release.last_modified:
        headers["Last-Modified"] = release.last_modified
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and if_none_match.strip() != "*" and matches(if_none_match, headers["ETag"]):
        raise NotModified(headers)
    request.scope[SCOPE_KEY] = headers


release_tag = Depends(tag_answer)


class ReleaseHeaders:
    """Puts the release's headers on a read route's 200; for ``If-None-Match: *`` (any answer the client holds)
    the 200 becomes a 304 without its body, since only the route knows whether there is an answer at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        not_modified = False

        async def send_tagged(message: Message) -> None:
            nonlocal not_modified
            headers = scope.get(SCOPE_KEY)
            if message["type"] == "http.response.start" and headers and message["status"] == 200:
                encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
                if dict(scope["headers"]).get(b"if-none-match", b"").strip() == b"*":
                    not_modified = True
                    message = {"type": "http.response.start", "status": 304, "headers": encoded}
                else:
                    message = {**message, "headers": [*message["headers"], *encoded]}
            elif message["type"] == "http.response.body" and not_modified:
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(scope, receive, send_tagged)
