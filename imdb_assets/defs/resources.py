"""The resources the assets and the sensor use, configured from the platform's settings (`imdb_assets.settings`).

The settings are read and checked when the code loads, so a bad value fails at start, naming its variable. The
database URI may carry a password: it reaches the warehouse as an `EnvVar`, which the UI shows by name only.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from dagster import ConfigurableResource, Definitions, EnvVar
from dagster_dbt import DbtCliResource

from imdb_assets import database, download, storage
from imdb_assets import settings as platform_settings
from imdb_assets.catalog import Dataset
from imdb_assets.defs.dbt.project import project


class ImdbSource(ConfigurableResource):
    """IMDb's dataset mirror: `IMDB_BASE_URL` (http(s):// or file://)."""

    base_url: str
    timeout_seconds: float = 60.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0

    def url(self, dataset: Dataset) -> str:
        return download.file_url(self.base_url, dataset.file_name)


class DataStore(ConfigurableResource):
    """`IMDB_DATA_DIR`, a folder or a bucket (`imdb_assets.storage`): raw files, parsed frames and rejects, the
    reject threshold applied to them, and the safety factor a step's estimate of the disk it needs is multiplied by
    (`imdb_assets.disk`)."""

    data_dir: str
    max_reject_fraction: float
    disk_safety_factor: float

    @property
    def root(self) -> storage.Location:
        return storage.location(self.data_dir)

    @property
    def local(self) -> bool:
        """Whether the files are on this machine's disk, whose free space the steps check."""
        return storage.is_local(self.root)

    @property
    def folder(self) -> Path:
        """The data folder, for what only a folder has (its disk's free space); a bucket has none."""
        root = self.root
        if not isinstance(root, Path):
            raise ValueError(f"IMDB_DATA_DIR={root} is a bucket, not a folder")
        return root

    def raw_path(self, dataset: Dataset) -> storage.Location:
        return self.root / "raw" / dataset.file_name

    def parquet_path(self, dataset: Dataset) -> storage.Location:
        return self.root / "parsed" / f"{dataset.table}.parquet"

    def rejects_path(self, dataset: Dataset) -> storage.Location:
        return self.root / "rejects" / f"{dataset.table}.tsv"

    @property
    def kept_dir(self) -> storage.Location:
        """The frames the tables hold, kept by the loads to compare the next release with."""
        return self.root / "loaded"


class Warehouse(ConfigurableResource):
    """The PostgreSQL holding the `imdb` schema (`DATABASE_URL`, or the embedded server under the data folder), and
    the connections the assets use to it."""

    database_url: str = ""
    data_dir: str
    load_connections: int | None = None
    """Connections one table load uses at most (default: one per CPU); never more than the server has free."""
    diff_max_share: float = 0.2
    """A release changing more than this share of a table's rows is loaded whole rather than as a diff."""

    @property
    def embedded(self) -> bool:
        """Whether the database is the embedded server's, on the data folder's disk."""
        return not self.database_url

    def url(self) -> str:
        return database.resolve_url(self.database_url or None, Path(self.data_dir).absolute())

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection in autocommit mode, closed on leaving the block."""
        with database.connect(self.url()) as conn:
            yield conn


def _dbt_executable() -> str:
    """dbt from this environment, so that `.venv/bin/dagster dev` works without the venv on PATH."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else shutil.which("dbt") or "dbt"


def platform_resources(config: platform_settings.Settings) -> dict[str, ConfigurableResource]:
    """The four resources, configured from ``config``."""
    data_dir = str(config.data_path)
    return {
        "dbt": DbtCliResource(project_dir=project, dbt_executable=_dbt_executable()),
        "source": ImdbSource(base_url=config.base_url),
        "store": DataStore(
            data_dir=data_dir,
            max_reject_fraction=config.max_reject_fraction,
            disk_safety_factor=config.disk_safety_factor,
        ),
        "warehouse": Warehouse(
            database_url=EnvVar("DATABASE_URL") if os.environ.get("DATABASE_URL") else "",
            data_dir=data_dir,
            load_connections=config.load_connections,
            diff_max_share=config.diff_max_share,
        ),
    }


defs = Definitions(resources=platform_resources(platform_settings.load()))
