"""`dagster job execute -m imdb_assets.definitions -j imdb_refresh` as users run it: a real subprocess, exit codes
checked."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from imdb_assets import database
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.definitions import defs
from tests import reference
from tests.conftest import RATINGS
from tests.dagster_dev import DAGSTER, REPO, clean_env, free_port


def run_refresh(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DAGSTER, "job", "execute", "-m", "imdb_assets.definitions", "-j", "imdb_refresh"],
        env=clean_env() | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_job_execute_refreshes_everything_on_a_throwaway_instance(mirror, db_url, tmp_path):
    env = {
        "IMDB_BASE_URL": mirror.base_url,
        "DATABASE_URL": db_url,
        "IMDB_DATA_DIR": str(tmp_path / "data"),
        "IMDB_MAX_REJECT_FRACTION": "0.05",
    }
    result = run_refresh(env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stderr
    with psycopg.connect(db_url) as conn:
        for dataset in DATASETS:
            expected = reference.read(dataset, mirror.root / dataset.file_name)
            count = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{dataset.table}").fetchone()[0]
            assert count == len(expected.rows), dataset.table


def test_failed_run_exits_non_zero_and_is_recorded_in_dagster_home(mirror, mirror_dir, db_url, pg_server, tmp_path):
    """With DAGSTER_HOME set, the repo's dagster.yaml keeps the run in PostgreSQL; a corrupt file fails the run."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    data = (mirror_dir / RATINGS.file_name).read_bytes()
    (mirror_dir / RATINGS.file_name).write_bytes(data[:100])
    env = {
        "IMDB_BASE_URL": mirror.base_url,
        "DATABASE_URL": db_url,
        "IMDB_DATA_DIR": str(tmp_path / "data"),
        "IMDB_MAX_REJECT_FRACTION": "0.05",
        "DAGSTER_HOME": str(home),
    }
    result = run_refresh(env, tmp_path)
    assert result.returncode != 0
    assert "truncated gzip" in result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('imdb.title_ratings')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] > 0
    with psycopg.connect(database.with_database(pg_server, "dagster")) as conn:
        statuses = conn.execute("SELECT status FROM runs WHERE pipeline_name = 'imdb_refresh'").fetchall()
    assert ("FAILURE",) in statuses


def test_demo_runs_offline_on_the_embedded_database(tmp_path):
    """`make demo`'s module with no DATABASE_URL: it starts its own PostgreSQL under the data folder and keeps it."""
    data_dir = tmp_path / "data"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "imdb_dev.demo", "--rows", "3000"],
            env=clean_env() | {"IMDB_DATA_DIR": str(data_dir)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        url = database.with_database(database.embedded_server_url(data_dir), database.IMDB_DATABASE)
        relations = [f"{SCHEMA}.{d.table}" for d in DATASETS] + ["imdb_marts.titles", "imdb_marts.title_people"]
        with psycopg.connect(url) as conn:
            counts = {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in relations}
        for name, count in counts.items():
            assert f"{name:<35} {count:>10,} rows" in result.stdout
        assert min(counts.values()) > 0
        assert "Query it:   make psql" in result.stdout
    finally:
        database.stop_embedded_server(data_dir)


def test_make_dev_serves_the_ui_on_the_embedded_server_on_a_fresh_data_folder(tmp_path):
    """`make dev` as on a fresh clone (no DATABASE_URL, no DAGSTER_HOME): it prints the URL, the URL answers with
    every asset of the code location, Dagster keeps its storage in the embedded PostgreSQL it started, and nothing
    warns of a configuration not used or a command superseded."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = clean_env() | {"IMDB_DATA_DIR": str(data_dir), "DEV_PORT": str(port)}
    log = tmp_path / "make-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "dev"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, assets = time.monotonic() + 300, None
        while assets is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                body = httpx.post(f"{url}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=10).json()
                assets = body["data"]["assetNodes"]
            time.sleep(1)
        output = log.read_text()
        assert f"Dagster UI: {url}" in output
        assert "will not be used" not in output and "superseded" not in output.lower(), output[-3000:]
        assert assets is not None and len(assets) == len(defs.resolve_asset_graph().get_all_asset_keys())
        storage = database.ensure_database(database.embedded_server_url(data_dir), "dagster")
        with psycopg.connect(storage) as conn:
            assert conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone() == (True,)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        database.stop_embedded_server(data_dir)
