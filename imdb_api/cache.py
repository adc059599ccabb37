"""A bounded in-process cache of read routes' answers for the release being served.

A read route's answer is a function of the release and its URL (release.py), so an answer once built can be sent
again, unchanged, until the release changes. The cache holds the bodies of one release only: a request looks it up
under the release its ``release_tag`` dependency found, and a release other than the cache's empties it; a body
built under another release than the cache's is not stored. So an answer from the cache is the one a 304 would
confirm at that moment, and lags a release by no more than the ETag does (``CHECK_SECONDS``).

The lookup is a dependency after the key's and the release's: a request without a valid key, or over its rate
limit, is refused before the cache is read, and every hit counts against the key's limit. Only a 200 is stored, so
an error (a 404, a 422, a 503) is built again on every request.
"""

from __future__ import annotations

from collections import OrderedDict

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Where the lookup leaves a missed answer's key and release for StoreAnswers, in the request's ASGI scope.
SCOPE_KEY = "imdb.answer_cache_key"
# Routes whose answer is not a function of the release alone: the datasets' sizes change with vacuum and bloat.
UNCACHED_ROUTES = frozenset({"/v1/datasets"})


class AnswerCache:
    """The bodies of one release's answers, least recently used evicted first once they pass ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.release: str | None = None
        self.bodies: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self.size = 0

    def get(self, release: str, key: tuple[str, ...]) -> bytes | None:
        if release != self.release:
            self.bodies.clear()
            self.size = 0
            self.release = release
            return None
        body = self.bodies.get(key)
        if body is not None:
            self.bodies.move_to_end(key)
        return body

    def put(self, release: str, key: tuple[str, ...], body: bytes) -> None:
        """Store ``body`` if it was built under the cache's release and fits; evict the oldest until all fit."""
        if release != self.release or len(body) > self.max_bytes or key in self.bodies:
            return
        self.bodies[key] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            _, evicted = self.bodies.popitem(last=False)
            self.size -= len(evicted)


class CachedAnswer(Exception):
    """Raised by the lookup on a hit: the route is skipped and its stored body answered."""

    def __init__(self, body: bytes) -> None:
        super().__init__("cached answer")
        self.body = body


async def cached_answer_response(request: Request, error: Exception) -> Response:
    assert isinstance(error, CachedAnswer)
    return Response(content=error.body, media_type="application/json")


def answer_key(request: Request) -> tuple[str, ...]:
    """The URL as the route reads it: the path, and the decoded query parameters ordered by name. A name's values
    keep their order, since the route takes the last of them."""
    params = sorted(request.query_params.multi_items(), key=lambda item: item[0])
    return (request.url.path, *(part for item in params for part in item))


async def look_up(request: Request) -> None:
    """The dependency after ``release_tag``: a hit answers at once; a miss leaves the key for StoreAnswers."""
    cache: AnswerCache | None = request.app.state.answers
    route = request.scope.get("route")
    if cache is None or request.method != "GET" or route is None or route.path in UNCACHED_ROUTES:
        return
    release = (await request.app.state.release.current()).tag
    key = answer_key(request)
    body = cache.get(release, key)
    if body is not None:
        raise CachedAnswer(body)
    request.scope[SCOPE_KEY] = (release, key)


cached = Depends(look_up)


class StoreAnswers:
    """Stores the body of a 200 that the lookup missed, once the route has sent all of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        chunks: list[bytes] = []

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200 and SCOPE_KEY in scope:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    release, key = scope[SCOPE_KEY]
                    scope["app"].state.answers.put(release, key, b"".join(chunks))
            await send(message)

        await self.app(scope, receive, send_and_keep)
