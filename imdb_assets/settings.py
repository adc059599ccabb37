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
    "IMDB_SENSOR_INTERVAL_SECONDS": "Seconds between two checks of IMDB_BASE_URL by the release sensor (default 3600).",
    "IMDB_SENSOR_DEFAULT_STATUS": "The release sensor's state on a new instance: stopped (default) or running.",
}


def base_url() -> str:
    return os.environ.get("IMDB_BASE_URL") or DEFAULT_BASE_URL


def data_dir() -> Path:
    return Path(os.environ.get("IMDB_DATA_DIR") or "data").absolute()


def database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def max_reject_fraction() -> float:
    return float(os.environ.get("IMDB_MAX_REJECT_FRACTION") or 0.001)


def sensor_interval_seconds() -> int:
    return int(os.environ.get("IMDB_SENSOR_INTERVAL_SECONDS") or 3600)


def sensor_running_by_default() -> bool:
    status = (os.environ.get("IMDB_SENSOR_DEFAULT_STATUS") or "stopped").lower()
    if status not in ("running", "stopped"):
        raise ValueError(f"IMDB_SENSOR_DEFAULT_STATUS must be running or stopped, not {status!r}")
    return status == "running"
