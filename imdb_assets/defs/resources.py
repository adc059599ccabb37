"""The resources the assets and the sensor get, which is how the runtime reads its configuration.

Each value comes from the environment contract (`imdb_assets.settings`): an `EnvVar` when the variable is set
(resolved, and hidden in the UI, at run time), else the contract's default. A set value is checked by the contract's
reader when the code loads, so a bad one fails at start.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from dagster import Definitions, EnvVar
from dagster_dbt import DbtCliResource

from imdb_assets import settings
from imdb_assets.dbt_project import project
from imdb_assets.resources import ImdbSource, LocalStore, Warehouse


def from_env(name: str, default, reader: Callable[[], object] | None = None):
    """``name``'s value for a resource: an `EnvVar` when the variable is set, else ``default``. ``reader``, the
    contract's, validates a set value now; a fraction is passed as read, since an `EnvVar` carries only text, whole
    numbers and booleans."""
    if not os.environ.get(name):
        return default
    value = reader() if reader else None
    if isinstance(value, float):
        return value
    return EnvVar.int(name) if isinstance(value, int) else EnvVar(name)


def _dbt_executable() -> str:
    """dbt from this environment, so that `.venv/bin/dagster dev` works without the venv on PATH."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else shutil.which("dbt") or "dbt"


DATA_DIR = from_env("IMDB_DATA_DIR", str(Path(settings.DEFAULT_DATA_DIR).absolute()))

defs = Definitions(
    resources={
        "dbt": DbtCliResource(project_dir=project, dbt_executable=_dbt_executable()),
        "source": ImdbSource(base_url=from_env("IMDB_BASE_URL", settings.DEFAULT_BASE_URL)),
        "store": LocalStore(
            data_dir=DATA_DIR,
            max_reject_fraction=from_env(
                "IMDB_MAX_REJECT_FRACTION", settings.DEFAULT_MAX_REJECT_FRACTION, settings.max_reject_fraction
            ),
        ),
        "warehouse": Warehouse(
            database_url=from_env("DATABASE_URL", ""),
            data_dir=DATA_DIR,
            # Unset: None, and each load uses one connection per CPU (settings.cpu_count()).
            load_connections=from_env("IMDB_LOAD_CONNECTIONS", None, settings.load_connections),
        ),
    },
)
