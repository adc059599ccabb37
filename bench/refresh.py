"""Refresh benchmark: `imdb_refresh` end to end as a user runs it, then again with nothing changed.

    uv run python -m bench.refresh --rows 1000000,5000000          # make bench-refresh
    DATABASE_URL=postgres://... uv run python -m bench.refresh --rows 1000000   # on a server of yours
    uv run python -m bench.refresh --rows 1000000 --storage folder,s3           # files on disk, then in a bucket

For each size: generated IMDb-format files (shared with `bench.run`), a fresh data folder and Dagster instance (the
repo's dagster.yaml: Dagster's storage in the same PostgreSQL), then `dagster job execute -m imdb_assets.definitions
-j imdb_refresh` twice. Reported: the first run's wall time from the command's start to its end, to the end of the
last file step (download, parse, load of all seven files), the dbt step's own time and the sum of all steps' own
time (what the run would cost without process start and orchestration), then the second run's wall time (nothing
changed, nothing to rebuild). With DATABASE_URL the named database is emptied of the platform's schemas first.
With `--storage s3` the files live in a bucket of moto's S3 server on 127.0.0.1 (`imdb_dev.s3_server`) and the
tables on the embedded server, named by DATABASE_URL as a bucket requires.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.run import ensure_data, machine, save_report
from imdb_assets import database
from imdb_dev.s3_server import S3Server

RESULTS = Path("bench_results")
PLATFORM_SCHEMAS = ("imdb", "imdb_partitions", "imdb_meta", "imdb_staging", "imdb_marts")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RefreshTimes:
    rows: int
    server: str
    storage: str
    wall_seconds: float
    files_done_seconds: float
    dbt_step_seconds: float
    steps_seconds: float
    models_rebuilt: int
    no_change_wall_seconds: float
    no_change_models_rebuilt: int


def _environment(data: Path, work: Path) -> dict[str, str]:
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return os.environ | {
        "IMDB_BASE_URL": data.absolute().as_uri() + "/",
        "IMDB_DATA_DIR": str(work / "data"),
        "DAGSTER_HOME": str(home),
    }


def _empty_named_database(url: str) -> None:
    with psycopg.connect(database.normalize_url(url), autocommit=True) as conn:
        for schema in PLATFORM_SCHEMAS:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _refresh(env: dict[str, str]) -> tuple[float, float]:
    """The command's wall time, and the moment it started (seconds since the epoch, as Dagster's step stats)."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "job", "execute", "-m", "imdb_assets.definitions", "-j", "imdb_refresh"]
    started = time.time()
    completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.time() - started
    if completed.returncode:
        raise RuntimeError(f"imdb_refresh failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    return seconds, started


def _last_run_stats(env: dict[str, str]) -> tuple[dict[str, tuple[float, float]], int]:
    """Each step's start and end time, and how many dbt models the run materialized, from the run's instance."""
    script = """
import json
from dagster import DagsterEventType, DagsterInstance
instance = DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
steps = {s.step_key: (s.start_time, s.end_time) for s in instance.get_run_step_stats(run.run_id)}
models = sum(
    1 for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    if r.event_log_entry.dagster_event.asset_key.path[0] in ("imdb_staging", "imdb_marts")
)
print(json.dumps({"steps": steps, "models": models}))
"""
    output = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    found = json.loads(output.strip().splitlines()[-1])
    return {key: tuple(span) for key, span in found["steps"].items()}, found["models"]


def measure(rows: int, work: Path, storage: str = "folder") -> RefreshTimes:
    data = ensure_data(RESULTS / "data" / str(rows), rows)
    folder = work / f"{rows}-{storage}"
    if folder.exists():
        database.stop_embedded_server(folder / "data")
        database.stop_embedded_server(folder / "server")
        shutil.rmtree(folder)
    env = _environment(data, folder)
    named = os.environ.get("DATABASE_URL")
    if named:
        _empty_named_database(named)
    with contextlib.ExitStack() as stack:
        if storage == "s3":
            env |= _bucket(folder, stack) | {"DATABASE_URL": named or _server(folder, stack)}
        return _measure(rows, env, storage, named)


def _bucket(folder: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """A bucket on a moto S3 server of this benchmark's, stopped when ``stack`` closes: the variables naming it."""
    server = S3Server(folder / "moto.log")
    stack.callback(server.stop)
    server.client().create_bucket(Bucket="bench")
    return server.environment() | {"IMDB_DATA_DIR": "s3://bench/imdb"}


def _server(folder: Path, stack: contextlib.ExitStack) -> str:
    """The embedded server in a folder of its own (the files are in the bucket), stopped when ``stack`` closes."""
    url = database.ensure_database(database.embedded_server_url(folder / "server"), database.IMDB_DATABASE)
    stack.callback(database.stop_embedded_server, folder / "server")
    return url


def _measure(rows: int, env: dict[str, str], storage: str, named: str | None) -> RefreshTimes:
    folder = Path(env["DAGSTER_HOME"]).parent
    try:
        wall, started = _refresh(env)
        steps, models = _last_run_stats(env)
        file_steps = [span for key, span in steps.items() if key.startswith("refresh_")]
        dbt_step = steps.get("imdb_dbt_models", (0.0, 0.0))
        no_change_wall, _ = _refresh(env)
        _, no_change_models = _last_run_stats(env)
    finally:
        if not named:
            database.stop_embedded_server(folder / "data")
    return RefreshTimes(
        rows=rows,
        server="named by DATABASE_URL" if named else "embedded",
        storage=storage,
        wall_seconds=round(wall, 1),
        files_done_seconds=round(max(end for _, end in file_steps) - started, 1),
        dbt_step_seconds=round(dbt_step[1] - dbt_step[0], 1),
        steps_seconds=round(sum(end - start for start, end in steps.values()), 1),
        models_rebuilt=models,
        no_change_wall_seconds=round(no_change_wall, 1),
        no_change_models_rebuilt=no_change_models,
    )


def markdown(results: list[RefreshTimes]) -> str:
    header = (
        "| rows | server | files in | imdb_refresh wall (s) | files done at (s) | dbt step (s) | sum of steps (s) "
        "| models built | no change: wall (s) | no change: models built |\n"
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [
        f"| {r.rows:,} | {r.server} | {r.storage} | {r.wall_seconds} | {r.files_done_seconds} | {r.dbt_step_seconds} "
        f"| {r.steps_seconds} | {r.models_rebuilt} | {r.no_change_wall_seconds} | {r.no_change_models_rebuilt} |"
        for r in results
    ]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,5000000", help="comma separated sizes (rows over all files)")
    parser.add_argument("--work", type=Path, default=RESULTS / "refresh", help="data folders and instances")
    parser.add_argument("--storage", default="folder", help="comma separated: folder, s3 (a local moto server)")
    args = parser.parse_args(argv)
    results = [
        measure(int(rows), args.work.absolute(), storage)
        for rows in args.rows.split(",")
        for storage in args.storage.split(",")
    ]
    report = f"# imdb_refresh end to end\n\n{machine()}, {time.strftime('%Y-%m-%d %H:%M')}\n\n{markdown(results)}\n"
    save_report("refresh", report, results)
    print(report)


if __name__ == "__main__":
    main()
