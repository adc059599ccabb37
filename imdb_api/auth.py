"""Who is calling and what they may do: bearer keys checked against their hashes, roles, a rate limit per key."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPBearer
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from psycopg_pool import AsyncConnectionPool

from imdb_api import keys
from imdb_api.errors import ApiError


class BearerKey(HTTPBearer):
    """The bearer scheme as OpenAPI documents it, whose dependency answers the key itself (or None): FastAPI's
    ``HTTPBearer`` builds a pydantic model of it on every request."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
        credentials = credentials.strip()
        return credentials if scheme.lower() == "bearer" and credentials else None


bearer = BearerKey(
    auto_error=False, scheme_name="HTTPBearer", description="An API key: `Authorization: Bearer imdbk_...`"
)


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str
    role: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        return f"key {self.key_id} ({self.name})"

    def valid(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > datetime.now(UTC))


class KeyChecker:
    """Looks keys up by hash, trusting an answer for ``ttl`` seconds so that a busy client costs no query per
    request; a revocation made through this process takes effect at once, one made elsewhere within ``ttl``."""

    def __init__(self, pool: AsyncConnectionPool, ttl: float, rate_limit: str) -> None:
        self.pool = pool
        self.ttl = ttl
        self.cache: dict[bytes, tuple[float, Caller | None]] = {}
        self.limit = parse(rate_limit)
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def caller(self, secret: str) -> Caller | None:
        if not keys.looks_like_key(secret):
            return None
        digest = keys.key_hash(secret)
        cached = self.cache.get(digest)
        if cached and time.monotonic() - cached[0] < self.ttl:
            found = cached[1]
        else:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(keys.FIND_KEY, (digest,))).fetchone()
            found = Caller(*row) if row else None
            if len(self.cache) > 10_000:
                self.cache.clear()
            self.cache[digest] = (time.monotonic(), found)
        return found if found and found.valid() else None

    def forget(self) -> None:
        self.cache.clear()

    def retry_after(self, caller: Caller) -> int | None:
        """None if the request may go ahead; else seconds until the key may ask again."""
        if self.limiter.hit(self.limit, str(caller.key_id)):
            return None
        reset_at, _ = self.limiter.get_window_stats(self.limit, str(caller.key_id))
        return max(1, math.ceil(reset_at - time.time()))


async def authenticate(request: Request, secret: str | None) -> Caller:
    """The caller of a valid key within its rate limit (401 or 429 otherwise)."""
    checker: KeyChecker = request.app.state.keys
    if secret is None:
        raise ApiError(401, "an API key is required: send it as `Authorization: Bearer <key>`", bearer=True)
    caller = await checker.caller(secret)
    if caller is None:
        raise ApiError(401, "the API key is not valid: unknown, expired or revoked", bearer=True)
    if (seconds := checker.retry_after(caller)) is not None:
        raise ApiError(429, f"rate limit of {checker.limit} exceeded; retry in {seconds} s", retry_after=seconds)
    return caller


def require(right: str) -> Callable:
    """A dependency that lets through callers whose role has ``right``, and answers 403 to the others. One
    dependency over the bearer scheme, not a chain: each level costs FastAPI work on every request."""

    async def check(request: Request, secret: Annotated[str | None, Security(bearer)]) -> Caller:
        caller = await authenticate(request, secret)
        if right not in keys.RIGHTS[caller.role]:
            raise ApiError(403, f"the {caller.role} role may not do this ({right} is needed)")
        return caller

    return check


async def audit(request: Request, caller: Caller, action: str, detail: dict, outcome: str) -> None:
    """One line of the audit log: who (the key), what, with what result; when is the row's timestamp."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        await conn.execute(keys.INSERT_AUDIT, (caller.actor, caller.role, action, json.dumps(detail), outcome))
