"""The code location: assets, resources, the `imdb_refresh` job and the release sensor that runs it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job, multiprocess_executor
from dagster_dbt import DbtCliResource

from imdb_assets import settings
from imdb_assets.assets import imdb_file_assets
from imdb_assets.dbt import imdb_dbt_models, project
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
    description="Refresh every IMDb file that changed, then the dbt models that read the changed tables.",
)

# Steps run in parallel processes forked from a server that has already imported the code, so a step does not
# re-import Dagster, Polars and Arrow (startup drops from ~4 s to ~1-2 s a step).
executor = multiprocess_executor.configured(
    {"max_concurrent": settings.cpu_count(), "start_method": {"forkserver": {"preload_modules": ["imdb_assets"]}}}
)

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
        "warehouse": Warehouse(database_url=_from_env("DATABASE_URL", ""), data_dir=DATA_DIR),
    },
)
