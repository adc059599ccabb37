"""Shared fixtures: the embedded PostgreSQL (one server, a fresh database per test), a local IMDb mirror served
over real HTTP from generated files, and the resources that point the assets at them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from dagster_dbt import DbtCliResource, DbtProject

from imdb_assets import database
from imdb_assets.catalog import BY_STEM, DATASETS, SCHEMA, Dataset
from imdb_assets.defs.dbt.assets import build_dbt_assets, imdb_dbt_models
from imdb_assets.defs.dbt.project import project
from imdb_assets.defs.files.assets import imdb_file_assets
from imdb_assets.defs.files.keys import HISTORY_KEY, parsed_key, raw_key, table_key
from imdb_assets.defs.resources import DataStore, ImdbSource, Warehouse
from imdb_assets.settings import Settings
from imdb_dev.generator import generate
from tests.imdb_files import write_files
from tests.mirror_server import MirrorServer
from tests.stock_server import StockServer
from tests.stock_server import bin_dir as stock_bin_dir
from tests.world import WORLD

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "imdb-sample"
TEST_ROWS = 20_000
DISK_SAFETY_FACTOR = Settings.model_fields["disk_safety_factor"].default  # the platform's


# The modules that take longest, longest first: `make test` hands whole modules to its workers in collection order
# (`--dist loadscope --no-loadscope-reorder`), so these start first and the short ones fill in at the end. Left to
# alphabetical order, or to xdist's (by number of tests), a module of one long end-to-end test started last and kept
# one worker busy for minutes after the others had finished. Re-measure (`--durations`) when a module grows.
SLOWEST_MODULES = [
    "test_containers.py",
    "test_sensor.py",
    "test_object_storage.py",
    "test_dbt_changes.py",
    "test_refresh.py",
    "test_cli.py",
    "test_api_refresh.py",
    "test_ui.py",
    "test_dbt.py",
    "test_bench.py",
    "test_disk.py",
    "test_api.py",
    "test_diff_release.py",
    "test_database.py",
    "test_api_cache.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of SLOWEST_MODULES first, in its order; the others after them, as collected."""
    rank = {name: i for i, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[str]:
    """The embedded server, started by the platform's own code path, stopped at the end of the session."""
    data_dir = tmp_path_factory.mktemp("pg")
    yield database.embedded_server_url(data_dir)
    database.stop_embedded_server(data_dir)


@pytest.fixture(scope="session")
def stock_postgres() -> Iterator[StockServer]:
    """Debian's stock PostgreSQL with a low max_connections and a non-superuser role (tests/stock_server.py). CI
    installs the package (`.ci/run`), so there its absence fails; elsewhere the tests that need it are skipped."""
    binaries = stock_bin_dir()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's postgresql package is not installed (.ci/run installs it)")
        pytest.skip("Debian's postgresql package is not installed (apt-get install postgresql)")
    server = StockServer.start(binaries)
    yield server
    server.stop()


@pytest.fixture
def stock_server(stock_postgres: StockServer) -> StockServer:
    """The session's stock server with its databases empty: which tests ran on it before must not matter (a release
    of the world another test loaded there is newer than the generated files, and would be refused as older)."""
    stock_postgres.reset()
    return stock_postgres


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(server_url: str, name: str) -> str:
    """An empty database ``name`` on the server (dropped first if a previous session left it); its URL."""
    drop_database(server_url, name)
    return database.ensure_database(server_url, name)


@pytest.fixture
def db_url(pg_server: str, request) -> Iterator[str]:
    name = "test_" + request.node.name.lower().replace("[", "_").replace("]", "").replace("-", "_")[:40]
    yield fresh_database(pg_server, name)
    drop_database(pg_server, name)


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """IMDb-format files with quirks and malformed lines; tests copy them, never change them."""
    out = tmp_path_factory.mktemp("generated")
    generate(out, TEST_ROWS, seed=7, malformed_fraction=0.01)
    return out


@pytest.fixture
def mirror_dir(tmp_path: Path, generated: Path) -> Path:
    folder = tmp_path / "mirror"
    shutil.copytree(generated, folder)
    return folder


@pytest.fixture
def mirror(mirror_dir: Path) -> Iterator[MirrorServer]:
    server = MirrorServer(mirror_dir)
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


class Platform:
    """The assets wired to a test's mirror, data folder and database; runs them in process with `materialize`."""

    def __init__(self, base_url: str, data_dir: Path, db_url: str, max_reject_fraction: float = 0.05) -> None:
        self.db_url = db_url
        self.instance = DagsterInstance.ephemeral()
        self.store = DataStore(
            data_dir=str(data_dir), max_reject_fraction=max_reject_fraction, disk_safety_factor=DISK_SAFETY_FACTOR
        )
        self.resources = {
            "source": ImdbSource(base_url=base_url, backoff_seconds=0.01, timeout_seconds=10),
            "store": self.store,
            "warehouse": Warehouse(database_url=db_url, data_dir=str(data_dir)),
            "dbt": DbtCliResource(project_dir=project),
        }

    def refresh(
        self,
        *datasets: Dataset,
        layers=(raw_key, parsed_key, table_key),
        models: bool = False,
        raise_on_error: bool = True,
        dbt_project: DbtProject | None = None,
    ):
        """Materialize these files' layers; with `models`, also the dbt models downstream of them (of
        ``dbt_project``, a prepared copy of the platform's project that a test edited, else the platform's)."""
        keys = [layer(d) for d in (datasets or DATASETS) for layer in layers]
        if table_key(RATINGS) in keys:  # the ratings history is appended by the same load
            keys.append(HISTORY_KEY)
        selection = AssetSelection.assets(*keys)
        if models:
            selection = selection | selection.downstream()
        dbt_models, resources = imdb_dbt_models, self.resources
        if dbt_project is not None:
            dbt_models = build_dbt_assets(dbt_project)
            resources = resources | {"dbt": DbtCliResource(project_dir=dbt_project)}
        return materialize(
            [*imdb_file_assets, dbt_models],
            selection=selection,
            resources=resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def build_models(self):
        """Materialize the dbt models alone, from the tables as they are now."""
        models = AssetSelection.assets(*imdb_dbt_models.keys)
        return materialize([imdb_dbt_models], selection=models, resources=self.resources, instance=self.instance)

    def query(self, statement: str, *params) -> list[tuple]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def table(self, dataset: Dataset) -> list[tuple]:
        order = ", ".join(dataset.primary_key)
        return self.query(f"SELECT * FROM {SCHEMA}.{dataset.table} ORDER BY {order}")


@pytest.fixture
def platform(mirror: MirrorServer, data_dir: Path, db_url: str) -> Platform:
    return Platform(mirror.base_url, data_dir, db_url)


@pytest.fixture
def world(tmp_path: Path, data_dir: Path, db_url: str) -> Iterator[Platform]:
    """The platform on the constructed IMDb of tests/world.py, every row of every file known, served over HTTP."""
    folder = write_files(tmp_path / "world", WORLD)
    server = MirrorServer(folder)
    yield Platform(server.base_url, data_dir, db_url)
    server.stop()


def materialized_keys(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


# Metadata each file layer reports when it had nothing to do: the copy was current, the Parquet reused, the table kept.
UNCHANGED = {"downloaded": False, "reused": True, "reloaded": False}


def changed_keys(result) -> set[str]:
    """The assets a run did work for: downloaded, parsed, reloaded, or (dbt) rebuilt."""
    changed = set()
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if not any(key in metadata and metadata[key].value is value for key, value in UNCHANGED.items()):
            changed.add(event.asset_key.to_user_string())
    return changed


RATINGS = BY_STEM["title.ratings"]
BASICS = BY_STEM["title.basics"]
PRINCIPALS = BY_STEM["title.principals"]

# Tables of imdb_partitions that are no table's partition: what a failed load must not leave behind.
UNATTACHED = """
SELECT count(*) FROM pg_class c
WHERE c.relnamespace = 'imdb_partitions'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
"""
