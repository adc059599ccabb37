"""The API's environment contract: every variable it reads, with its default, read once into ``ApiSettings``.

Where the data lives comes from the platform's own contract (``DATABASE_URL``, ``IMDB_DATA_DIR``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from limits import parse

API_ENVIRONMENT: dict[str, str] = {
    "IMDB_API_DATABASE_URL": "URI of an existing read-only role for the API; unset: the platform creates the role "
    "imdb_api on its own database (DATABASE_URL or the embedded server).",
    "IMDB_API_DATABASE_PASSWORD": "Password given to imdb_api when the platform creates it (default: a random one kept "
    "in IMDB_DATA_DIR/api/database_password).",
    "IMDB_API_RATE_LIMIT": "Requests each API key may make, in the `limits` notation (default 1200/minute).",
    "IMDB_API_STATEMENT_TIMEOUT_MS": "Longest a query of the API may run before it is cancelled (default 3000).",
    "IMDB_API_KEY_CACHE_SECONDS": "How long a checked key is trusted before it is read again: a revocation takes "
    "effect within this time in other processes (default 5).",
    "IMDB_DAGSTER_URL": "The Dagster webserver that POST /v1/refresh launches runs through (default "
    "http://127.0.0.1:3000).",
}

API_ROLE = "imdb_api"


@dataclass(frozen=True)
class ApiSettings:
    database_url: str | None = None
    database_password: str | None = None
    rate_limit: str = "1200/minute"
    statement_timeout_ms: int = 3000
    key_cache_seconds: float = 5.0
    dagster_url: str = "http://127.0.0.1:3000"

    def __post_init__(self) -> None:
        parse(self.rate_limit)  # a typo fails at start, not at the first request
        if self.statement_timeout_ms < 1:
            raise ValueError(f"IMDB_API_STATEMENT_TIMEOUT_MS must be at least 1, not {self.statement_timeout_ms}")

    @classmethod
    def from_env(cls) -> ApiSettings:
        env = {name: os.environ.get(name) or None for name in API_ENVIRONMENT}
        defaults = cls()
        return cls(
            database_url=env["IMDB_API_DATABASE_URL"],
            database_password=env["IMDB_API_DATABASE_PASSWORD"],
            rate_limit=env["IMDB_API_RATE_LIMIT"] or defaults.rate_limit,
            statement_timeout_ms=int(env["IMDB_API_STATEMENT_TIMEOUT_MS"] or defaults.statement_timeout_ms),
            key_cache_seconds=float(env["IMDB_API_KEY_CACHE_SECONDS"] or defaults.key_cache_seconds),
            dagster_url=env["IMDB_DAGSTER_URL"] or defaults.dagster_url,
        )
