"""The code location: assets, resources, the `imdb_refresh` job and the release sensor that runs it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job, in_process_executor
from dagster_dbt import DbtCliResource

from imdb_assets import settings
from imdb_assets.assets import imdb_file_assets
from imdb_assets.dbt import imdb_dbt_models
from imdb_assets.dbt_project import project
from imdb_assets.resources import ImdbSource, LocalStore, Warehouse
from imdb_assets.sensors import imdb_release_sensor


def _from_env(name: str, default):
    """An `EnvVar` (resolved, and hidden in the UI, at run time) when the variable is set, else the default."""
    return EnvVar(name) if os.environ.get(name) else default


def _dbt_executable() -> str:
    """dbt from this environment, so that `.venv/bin/dagster dev` works without the venv on PATH."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else shutil.which("dbt") or "dbt"


DATA_DIR = _from_env("IMDB_DATA_DIR", str(settings.data_dir()))

imdb_refresh = define_asset_job(
    "imdb_refresh",
    selection=AssetSelection.all(),
    description="Refresh every IMDb file that changed, then the dbt models that are stale or missing.",
)

# One process runs the steps one after another: a file's step already keeps both cores busy (Polars parses on every
# core, the load runs one connection per core), and a refresh with little to do pays no process start per step.
executor = in_process_executor

defs = Definitions(
    executor=executor,
    assets=[*imdb_file_assets, imdb_dbt_models],
    jobs=[imdb_refresh],
    sensors=[imdb_release_sensor],
    resources={
        "dbt": DbtCliResource(project_dir=project, dbt_executable=_dbt_executable()),
        "source": ImdbSource(base_url=_from_env("IMDB_BASE_URL", settings.DEFAULT_BASE_URL)),
        "store": LocalStore(
            data_dir=DATA_DIR,
            max_reject_fraction=settings.max_reject_fraction(),
        ),
        "warehouse": Warehouse(
            database_url=_from_env("DATABASE_URL", ""),
            data_dir=DATA_DIR,
            load_connections=settings.load_connections(),
        ),
    },
)
