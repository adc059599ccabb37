"""The environment contract: every variable the platform reads, with its default.

The README, `docker-compose.yml` and the tests all check against ``ENVIRONMENT``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BASE_URL = "https://datasets.imdbws.com/"

ENVIRONMENT: dict[str, str] = {
    "IMDB_BASE_URL": "Where the *.tsv.gz files live: http(s):// or file:// (a folder named like IMDb's).",
    "DATABASE_URL": "Any PostgreSQL URI; unset means the embedded server under IMDB_DATA_DIR/postgres.",
    "IMDB_DATA_DIR": "Raw files, parsed frames, rejects and the embedded database (default ./data).",
    "IMDB_MAX_REJECT_FRACTION": "Share of malformed rows a file may have before its refresh fails (default 0.001).",
}


def base_url() -> str:
    return os.environ.get("IMDB_BASE_URL") or DEFAULT_BASE_URL


def data_dir() -> Path:
    return Path(os.environ.get("IMDB_DATA_DIR") or "data").absolute()


def database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def max_reject_fraction() -> float:
    return float(os.environ.get("IMDB_MAX_REJECT_FRACTION") or 0.001)
