"""The three things assets need from outside: where files come from, where they are kept, which database."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from imdb_assets import database, download, settings
from imdb_assets.catalog import Dataset


class ImdbSource(ConfigurableResource):
    """IMDb's dataset mirror: `IMDB_BASE_URL` (http(s):// or file://)."""

    base_url: str
    timeout_seconds: float = 60.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0

    def url(self, dataset: Dataset) -> str:
        return download.file_url(self.base_url, dataset.file_name)


class LocalStore(ConfigurableResource):
    """`IMDB_DATA_DIR`: raw files, parsed frames and rejects, and the reject threshold applied to them."""

    data_dir: str
    max_reject_fraction: float = settings.DEFAULT_MAX_REJECT_FRACTION

    @property
    def root(self) -> Path:
        return Path(self.data_dir).absolute()

    def raw_path(self, dataset: Dataset) -> Path:
        return self.root / "raw" / dataset.file_name

    def parquet_path(self, dataset: Dataset) -> Path:
        return self.root / "parsed" / f"{dataset.table}.parquet"

    def rejects_path(self, dataset: Dataset) -> Path:
        return self.root / "rejects" / f"{dataset.table}.tsv"


class Warehouse(ConfigurableResource):
    """The PostgreSQL holding the `imdb` schema: `DATABASE_URL`, or the embedded server under the data folder."""

    database_url: str = ""
    data_dir: str
    load_connections: int | None = None
    """Connections one table load uses at most (default: one per CPU); never more than the server has free."""

    def url(self) -> str:
        return database.resolve_url(self.database_url or None, Path(self.data_dir).absolute())
