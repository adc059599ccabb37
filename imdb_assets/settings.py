"""The environment contract: every variable the platform reads, with its default.

The README, `docker-compose.yml` and the tests all check against ``ENVIRONMENT``.

The runtime reads its configuration one way, through its resources (`imdb_assets/defs/resources.py`): an `EnvVar`
where the variable is set, the default below otherwise. The functions below read and validate one variable each;
they run when the code loads only where Dagster needs the value at definition time (the release sensor's interval
and default status) or an `EnvVar` cannot carry it (a fraction), and otherwise in Dagster's storage
(`imdb_assets/instance.py`, which `dagster.yaml` builds without resources) and the command-line tools. dbt reads
`IMDB_RECOMMENDATION_MIN_VOTES` and `IMDB_FRESHNESS_*` itself (`dbt_project/`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

DEFAULT_BASE_URL = "https://datasets.imdbws.com/"
DEFAULT_DATA_DIR = "data"
DEFAULT_MAX_REJECT_FRACTION = 0.001
DEFAULT_SENSOR_INTERVAL_SECONDS = 3600

ENVIRONMENT: dict[str, str] = {
    "IMDB_BASE_URL": "Where the *.tsv.gz files live: http(s):// or file:// (a folder named like IMDb's).",
    "DATABASE_URL": "Any PostgreSQL URI; unset means the embedded server under IMDB_DATA_DIR/postgres.",
    "IMDB_DATA_DIR": "Raw files, parsed frames, rejects and the embedded database (default ./data).",
    "IMDB_MAX_REJECT_FRACTION": "Share of malformed rows a file may have before its refresh fails (default 0.001).",
    "IMDB_SENSOR_INTERVAL_SECONDS": "Seconds between two checks of IMDB_BASE_URL by the release sensor (default 3600).",
    "IMDB_SENSOR_DEFAULT_STATUS": "The release sensor's state on a new instance: stopped (default) or running.",
    "IMDB_LOAD_CONNECTIONS": "Connections a table load may use at most (default: the CPUs this container may use).",
    "IMDB_RECOMMENDATION_MIN_VOTES": "Votes a title needs to get, and to be, a recommendation (dbt; default 1000).",
    "IMDB_FRESHNESS_WARN_AFTER_DAYS": "Days since a table's last load before dbt source freshness warns (default 2).",
    "IMDB_FRESHNESS_ERROR_AFTER_DAYS": "Days since a table's last load before dbt source freshness errs (default 7).",
}


def data_dir() -> Path:
    return Path(os.environ.get("IMDB_DATA_DIR") or DEFAULT_DATA_DIR).absolute()


def database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None


def max_reject_fraction() -> float:
    return float(os.environ.get("IMDB_MAX_REJECT_FRACTION") or DEFAULT_MAX_REJECT_FRACTION)


def sensor_interval_seconds() -> int:
    return int(os.environ.get("IMDB_SENSOR_INTERVAL_SECONDS") or DEFAULT_SENSOR_INTERVAL_SECONDS)


def sensor_running_by_default() -> bool:
    status = (os.environ.get("IMDB_SENSOR_DEFAULT_STATUS") or "stopped").lower()
    if status not in ("running", "stopped"):
        raise ValueError(f"IMDB_SENSOR_DEFAULT_STATUS must be running or stopped, not {status!r}")
    return status == "running"


def load_connections() -> int:
    """`IMDB_LOAD_CONNECTIONS`, else the CPU count: a load never opens more, nor more than the server has free."""
    value = os.environ.get("IMDB_LOAD_CONNECTIONS") or ""
    if not value:
        return cpu_count()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"IMDB_LOAD_CONNECTIONS must be a whole number of at least 1, not {value!r}")
    return int(value)


def cpu_count(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its affinity mask, bounded by a container's CPU quota (cgroup v2 ``cpu.max``,
    or v1 ``cpu.cfs_quota_us``), where ``os.cpu_count()`` reports every core of the host."""
    cpus = len(os.sched_getaffinity(0))
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = (cgroup / quota_file).read_text().split()
            if period_file:
                fields.append((cgroup / period_file).read_text().strip())
        except OSError:
            continue
        quota, period = fields[0], fields[1]
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
        break
    return cpus
