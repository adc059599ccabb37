"""Daily release benchmark: a first load, then three daily releases applied as diffs, each beside a full reload of
the same release in the same run.

    uv run python -m bench.release --rows 1000000,5000000,20370000      # make bench-release

For each size: generated releases at the default churn (`imdb_dev.releases`), served from a file:// mirror, and two
sites, each with its own data folder, embedded server and Dagster instance, both running `dagster job execute -j
imdb_refresh` as a user does. The diff site takes each release as it comes (diffs, incremental models); the whole
site takes the same releases with `IMDB_DIFF_MAX_SHARE=0`, so every table is loaded whole and every model reading it
rebuilt whole. Per release and site: the command's wall time, the files' and the dbt step's share of it, and the
WAL the server wrote (`pg_current_wal_lsn` before and after); per release, the rows each file changed (the
generator's own record, `churn.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.refresh import REPO, RESULTS, _environment, _last_run_stats, _refresh
from bench.run import machine, save_report
from imdb_assets import database
from imdb_assets.catalog import DATASETS
from imdb_dev.releases import CHURN_RECORD, ReleaseRecord, generate_releases

DAILY_RELEASES = 3
SITES = ("diff", "whole")


@dataclass(frozen=True)
class ReleaseRun:
    rows: int
    release: str
    site: str
    wall_seconds: float
    files_seconds: float
    dbt_step_seconds: float
    wal_bytes: int
    parse_seconds: float  # the seven frames' parse, as their materializations report it
    load_seconds: float  # the seven tables' loads (diff or whole)
    rows_changed: int  # over the seven files, the generator's record (0 for the first release)


def _releases(rows: int) -> list[Path]:
    folder = RESULTS / "releases" / str(rows)
    found = sorted(p for p in (folder / "releases").glob("*") if p.is_dir()) if folder.exists() else []
    if len(found) == DAILY_RELEASES + 1 and all((p / CHURN_RECORD).exists() for p in found[1:]):
        return found
    shutil.rmtree(folder, ignore_errors=True)
    print(f"generating {rows:,} rows and {DAILY_RELEASES} daily releases in {folder}", flush=True)
    return generate_releases(folder, rows, DAILY_RELEASES)


# The seconds each file layer's materializations of the last run report, summed by layer.
_LAYER_SECONDS = """
import json
from dagster import DagsterEventType, DagsterInstance
instance = DagsterInstance.get()
run = instance.get_runs(limit=1)[0]
seconds = {"parsed": 0.0, "imdb": 0.0}
for record in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
    event = record.event_log_entry.dagster_event
    layer = event.asset_key.path[0]
    metadata = event.step_materialization_data.materialization.metadata
    if layer in seconds and "seconds" in metadata:
        seconds[layer] += metadata["seconds"].value
print(json.dumps(seconds))
"""


def _layer_seconds(env: dict[str, str]) -> tuple[float, float]:
    output = subprocess.run(
        [sys.executable, "-c", _LAYER_SECONDS], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    seconds = json.loads(output.strip().splitlines()[-1])
    return round(seconds["parsed"], 1), round(seconds["imdb"], 1)


def _wal_lsn(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return database.one_row(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone())[0]


def _wal_since(url: str, lsn: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(
            database.one_row(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone())[0]
        )


class Site:
    def __init__(self, name: str, rows: int, work: Path) -> None:
        self.name, self.rows = name, rows
        self.folder = work / str(rows) / name
        if self.folder.exists():
            database.stop_embedded_server(self.folder / "data")
            shutil.rmtree(self.folder)
        self.mirror = self.folder / "mirror"
        self.mirror.mkdir(parents=True)
        self.env = _environment(self.mirror, self.folder)
        if name == "whole":
            self.env["IMDB_DIFF_MAX_SHARE"] = "0"
        self.url = database.embedded_server_url(self.folder / "data")

    def refresh(self, release: Path) -> ReleaseRun:
        for dataset in DATASETS:
            shutil.copy2(release / dataset.file_name, self.mirror)  # with its mtime: the release's Last-Modified
        lsn = _wal_lsn(self.url)
        wall, started = _refresh(self.env)
        wal = _wal_since(self.url, lsn)
        steps, _ = _last_run_stats(self.env)
        parse_seconds, load_seconds = _layer_seconds(self.env)
        files_end = max(end for key, (_, end) in steps.items() if key.startswith("refresh_"))
        dbt = steps.get("imdb_dbt_models", (0.0, 0.0))
        record = release / CHURN_RECORD
        changed = (
            sum(f.inserted + f.changed + f.deleted for f in ReleaseRecord.read(record).files.values())
            if record.exists()
            else 0
        )
        return ReleaseRun(
            self.rows,
            release.name,
            self.name,
            round(wall, 1),
            round(files_end - started, 1),
            round(dbt[1] - dbt[0], 1),
            wal,
            parse_seconds,
            load_seconds,
            changed,
        )

    def stop(self) -> None:
        database.stop_embedded_server(self.folder / "data")


def measure(rows: int, work: Path) -> list[ReleaseRun]:
    releases = _releases(rows)
    sites = [Site(name, rows, work) for name in SITES]
    runs = []
    try:
        for release in releases:  # the sites in turn, so that both see the same noise
            for site in sites:
                runs.append(site.refresh(release))
                print(runs[-1], flush=True)
    finally:
        for site in sites:
            site.stop()
    return runs


def markdown(runs: list[ReleaseRun]) -> str:
    header = (
        "| rows | release | rows changed | diff: wall (s) | files (s) | parse (s) | load (s) | dbt (s) | WAL (MB) "
        "| whole: wall (s) | files (s) | parse (s) | load (s) | dbt (s) | WAL (MB) | wall ratio | WAL ratio |\n"
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |"
    )
    lines = []
    by_key = {(r.rows, r.release, r.site): r for r in runs}
    for rows, release in dict.fromkeys((r.rows, r.release) for r in runs):
        diff, whole = by_key[(rows, release, "diff")], by_key[(rows, release, "whole")]
        cells = [f"{rows:,}", release, f"{diff.rows_changed:,}"]
        for run in (diff, whole):
            cells += [
                str(run.wall_seconds),
                str(run.files_seconds),
                str(run.parse_seconds),
                str(run.load_seconds),
                str(run.dbt_step_seconds),
                f"{run.wal_bytes / 1e6:.1f}",
            ]
        cells += [f"{diff.wall_seconds / whole.wall_seconds:.2f}", f"{diff.wal_bytes / max(whole.wal_bytes, 1):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,5000000", help="comma separated sizes (rows over all files)")
    parser.add_argument("--work", type=Path, default=RESULTS / "release", help="data folders and instances")
    args = parser.parse_args(argv)
    os.environ.pop("DATABASE_URL", None)  # each site runs its own embedded server
    runs = [run for rows in args.rows.split(",") for run in measure(int(rows), args.work.absolute())]
    report = (
        f"# Daily releases: diff against whole\n\n{machine()}, {time.strftime('%Y-%m-%d %H:%M')}\n\n{markdown(runs)}\n"
    )
    save_report("release", report, runs)
    print(report)


if __name__ == "__main__":
    main()
