"""The platform's settings: every environment variable it reads, what it means and its default, in one object.

Dagster's resources and storage, dbt's environment, the API and every command-line tool read `Settings`, so a
variable means the same everywhere and a bad value fails at start with an error naming it:

    uv run imdb settings    # each variable, its value here and what it means
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from imdb_assets.storage import Location

DEFAULT_BASE_URL = "https://datasets.imdbws.com/"
# The object stores IMDB_DATA_DIR may name (imdb_assets.storage).
DATA_DIR_SCHEMES = ("s3",)
ENV_PREFIX = "IMDB_"


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use; the message names it."""


class Settings(BaseSettings):
    """One field per variable: ``IMDB_`` and the field's name in capitals, unless the field names its variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # Where the data comes from and where it lives.
    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="Where the *.tsv.gz files live: http(s):// or file:// (a folder named like IMDb's).",
    )
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="Any PostgreSQL URI; unset means the embedded server under IMDB_DATA_DIR/postgres.",
    )
    data_dir: str = Field(
        "data",
        description="Raw files, parsed frames, rejects and the embedded database (default ./data); or "
        "s3://bucket/prefix for the files, with DATABASE_URL for the tables and the AWS_* variables for the bucket.",
    )
    # How files are refreshed.
    max_reject_fraction: float = Field(
        0.001, ge=0, le=1, description="Share of malformed rows a file may have before its refresh fails."
    )
    load_connections: int | None = Field(
        None, ge=1, description="Connections a table load may use at most (default: the CPUs this container may use)."
    )
    diff_max_share: float = Field(
        0.2,
        ge=0,
        description="A release changing more than this share of a table's rows (inserted, changed, deleted) is "
        "loaded whole rather than applied as a diff; 0 always loads whole.",
    )
    disk_safety_factor: float = Field(
        2.0,
        ge=0,
        description="What a refresh step's estimate of the disk it needs is multiplied by (PostgreSQL's temporary "
        "files, growth) before it is compared with the free space, and refused if more; 0 skips the check.",
    )
    temp_file_limit: str | None = Field(
        None,
        description="The embedded server's temp_file_limit: the temporary files one PostgreSQL process may write "
        "before its statement fails, e.g. 20GB, or -1 for no limit (default: a quarter of the data folder's free "
        "disk when a process first connects, in whole GB).",
    )
    sensor_interval_seconds: int = Field(
        3600, ge=1, description="Seconds between two checks of IMDB_BASE_URL by the release sensor."
    )
    sensor_default_status: Literal["running", "stopped"] = Field(
        "stopped", description="The release sensor's state on a new instance: stopped or running."
    )
    step_executor: Literal["in_process", "process", "k8s"] = Field(
        "in_process",
        description="Where a run's steps execute: in_process (one process, one step after another), process (each "
        "step a process of its own in an empty working and temporary directory, as a pod would be) or k8s (each "
        "step a Kubernetes Job of its own, under Dagster's Helm chart).",
    )
    # dbt's models, given to dbt as variables of the same names.
    recommendation_min_votes: int = Field(
        1000, ge=0, description="Votes a title needs to get, and to be, a recommendation (dbt)."
    )
    freshness_warn_after_days: int = Field(
        2, ge=1, description="Days since a table's last load before dbt source freshness warns."
    )
    freshness_error_after_days: int = Field(
        7, ge=1, description="Days since a table's last load before dbt source freshness errs."
    )
    # The REST API.
    api_database_url: str | None = Field(
        None,
        description="URI of an existing read-only role for the API; unset: the platform creates the role imdb_api "
        "on its own database (DATABASE_URL or the embedded server).",
    )
    api_database_password: str | None = Field(
        None,
        description="Password given to imdb_api when the platform creates it (default: a random one kept in "
        "IMDB_DATA_DIR/api/database_password).",
    )
    api_rate_limit: str = Field(
        "1200/minute", description="Requests each API key may make, in the `limits` notation (e.g. 100/second)."
    )
    api_statement_timeout_ms: int = Field(
        3000, ge=1, description="Longest a query of the API may run before it is cancelled, in milliseconds."
    )
    api_key_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a checked key is trusted before it is read again: a revocation takes effect within "
        "this time in other processes.",
    )
    api_cache_mb: float = Field(
        64,
        ge=0,
        description="Megabytes of answers each API process keeps for the release it serves, least recently used "
        "evicted first; 0 disables the cache.",
    )
    dagster_url: str = Field(
        "http://127.0.0.1:3000", description="The Dagster webserver that POST /v1/refresh launches runs through."
    )

    @field_validator("base_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https", "file"):
            raise ValueError("must be an http://, https:// or file:// URL")
        return value

    @field_validator("data_dir")
    @classmethod
    def _folder_or_bucket(cls, value: str, info: ValidationInfo) -> str:
        scheme = urlsplit(value).scheme.lower() if "://" in value else ""
        if scheme and scheme not in DATA_DIR_SCHEMES:
            raise ValueError(f"the scheme {scheme}:// is not supported; use a folder or s3://bucket/prefix")
        if scheme and not info.data.get("database_url"):
            raise ValueError("a bucket holds the files only: set DATABASE_URL to the PostgreSQL server of the tables")
        return value

    @field_validator("temp_file_limit")
    @classmethod
    def _postgres_size(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"-1|\d+(kB|MB|GB|TB)", value):
            raise ValueError("must be a size in PostgreSQL's notation (e.g. 512MB, 20GB) or -1")
        return value

    @field_validator("sensor_default_status", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("dagster_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("database_url", "api_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URI")
        # libpq takes both spellings, SQLAlchemy (Dagster's storage) only postgresql://.
        return "postgresql" + value[len(scheme) :]

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse_rate_limit(value)
        except ValueError as error:
            raise ValueError("must be in the `limits` notation, e.g. 1200/minute") from error
        return value

    @property
    def data_path(self) -> Location:
        """``data_dir`` as a location: an absolute folder (every process agrees on it whatever its working
        directory), or the bucket's prefix."""
        from imdb_assets import storage  # Polars and s3fs, which the API does not need

        return storage.location(self.data_dir)

    def data_folder(self, purpose: str) -> Path:
        """``data_dir`` as an absolute folder, for what only a folder can hold (``purpose``); a bucket is refused."""
        if "://" in self.data_dir:
            raise SettingsError(f"IMDB_DATA_DIR={self.data_dir} is a bucket, and {purpose} needs a folder")
        return Path(self.data_dir).absolute()

    @property
    def sensor_running_by_default(self) -> bool:
        return self.sensor_default_status == "running"

    def database(self) -> str:
        """The IMDb database's URI: ``DATABASE_URL``, or the embedded server's (started if need be)."""
        from imdb_assets import database  # pgserver, which only resolving the URL needs

        return database.resolve_url(self.database_url, Path(self.data_dir).absolute())

    def dbt_variables(self) -> dict[str, str]:
        """The model settings dbt reads with ``env_var()``, as text."""
        names = ("recommendation_min_votes", "freshness_warn_after_days", "freshness_error_after_days")
        return {variable_name(name): str(getattr(self, name)) for name in names}


def variable_name(field: str) -> str:
    """The environment variable behind a field of `Settings`."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


ENVIRONMENT: dict[str, str] = {
    variable_name(name): field.description or "" for name, field in Settings.model_fields.items()
}


def load() -> Settings:
    """The settings from the environment as it is now, or `SettingsError` naming each variable that is not valid."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            field = str(problem["loc"][0])
            name = variable_name(field) if field in Settings.model_fields else field
            value = os.environ.get(name, "")
            problems.append(f"{name}={value!r}: {problem['msg'].removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None


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
