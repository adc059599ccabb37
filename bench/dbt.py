"""dbt benchmark: `dbt build` of the whole project, repeated, against a loaded database; seconds per model and test.

    uv run python -m bench.dbt --data data                   # the platform's data folder, already loaded
    uv run python -m bench.dbt --rows 5000000                # generate and load 5M rows first, timing that too
    DATABASE_URL=postgresql://... uv run python -m bench.dbt # any loaded server (a stock PostgreSQL, say)

Each run is one `dbt build` process (models, then their tests, the project's threads), its per-node seconds and
rows from dbt's run_results.json. Results go to ``bench_results/`` as markdown and JSON: every node's median over
the runs, all runs in a column, and the build's wall time per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.run import RESULTS, ensure_data, machine, save_report, whole_refresh
from imdb_assets import database, settings
from imdb_assets.dbt import PROJECT_DIR, environment

SETTINGS = ("server_version", "shared_buffers", "work_mem", "max_parallel_workers_per_gather")


@dataclass
class Node:
    name: str
    kind: str  # model or test
    rows: int | None
    seconds: list[float] = field(default_factory=list)
    status: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class Report:
    label: str
    when: str
    machine: str
    server: dict[str, str]
    runs: int
    build_seconds: list[float]
    load_seconds: float | None
    nodes: list[Node]

    def totals(self, kind: str) -> float:
        return sum(n.median for n in self.nodes if n.kind == kind)


def dbt_build(
    url: str, project: Path, target: Path, select: list[str], extra: list[str] | None = None
) -> tuple[float, dict]:
    """One `dbt build` (with ``extra`` arguments); its wall time and run_results.json."""
    command = [sys.executable, "-m", "dbt.cli.main", "build", "--target-path", str(target), *(extra or [])]
    command += ["--project-dir", str(project), "--profiles-dir", str(project)]
    command += ["--select", *select] if select else []
    started = time.monotonic()
    completed = subprocess.run(
        command, env=os.environ | environment(settings.load(), url), capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    if completed.returncode:
        raise RuntimeError(f"dbt build failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    return seconds, json.loads((target / "run_results.json").read_text())


def collect(results: list[dict]) -> list[Node]:
    """Nodes in the first run's order, each with its seconds from every run."""
    nodes: dict[str, Node] = {}
    for run in results:
        for result in run["results"]:
            unique_id = result["unique_id"]
            kind, name = unique_id.split(".")[0], unique_id.split(".")[2]
            rows = result.get("adapter_response", {}).get("rows_affected")
            node = nodes.setdefault(unique_id, Node(name, kind, rows if kind == "model" and rows != -1 else None))
            node.seconds.append(round(result["execution_time"], 3))
            node.status = result["status"]
    return list(nodes.values())


def server_settings(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {name: database.one_row(conn.execute(f"SHOW {name}").fetchone())[0] for name in SETTINGS}


def markdown(report: Report) -> str:
    builds = ", ".join(f"{s:.1f}" for s in report.build_seconds)
    lines = [
        f"# dbt build: {report.label}",
        "",
        f"- {report.when}, {report.machine}",
        f"- PostgreSQL {report.server['server_version']}: "
        + ", ".join(f"{k}={v}" for k, v in report.server.items() if k != "server_version"),
        f"- {report.runs} run(s) of `dbt build`; every node's median run, all runs in the last column.",
        f"- dbt build wall time: median {statistics.median(report.build_seconds):.1f} s (runs: {builds} s); "
        f"models {report.totals('model'):.1f} s and tests {report.totals('test'):.1f} s summed over nodes "
        "(threads run some side by side).",
    ]
    if report.load_seconds is not None:
        lines.append(f"- The file layers for the same files (copy, parse, load): {report.load_seconds:.1f} s.")
    lines += ["", "| node | kind | rows | seconds (median) | runs (s) | status |"]
    lines.append("| --- | --- | ---: | ---: | --- | --- |")
    for node in sorted(report.nodes, key=lambda n: (n.kind != "model", -n.median)):
        rows = f"{node.rows:,}" if node.rows is not None else ""
        runs = ", ".join(f"{s:.2f}" for s in node.seconds)
        lines.append(f"| {node.name} | {node.kind} | {rows} | {node.median:.2f} | {runs} | {node.status} |")
    return "\n".join(lines) + "\n"


def load(rows: int, work: Path) -> float:
    """Generate ``rows`` rows of IMDb-format files and refresh them into the embedded server under ``work``, as
    `bench.run` does; the seconds of the file layers (copy from the mirror, then parse and load)."""
    data = ensure_data(RESULTS / "data" / str(rows), rows)
    whole, copy_seconds = whole_refresh(data, work, database.resolve_url(None, work))
    return whole.seconds + copy_seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=RESULTS / "dbt_work", help="the platform's data folder")
    parser.add_argument("--rows", type=int, help="generate and load this many rows into --data's server first")
    parser.add_argument("--repeat", type=int, default=3, help="runs of dbt build")
    parser.add_argument("--select", nargs="*", default=[], help="dbt node selection (default: everything)")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="another dbt project, to compare")
    parser.add_argument("--label", help="name of the report (default: rows_<rows>, or the data folder's name)")
    parser.add_argument("--full-refresh", action="store_true", help="build the incremental models whole")
    args = parser.parse_args(argv)
    work = args.data.absolute()
    external = os.environ.get("DATABASE_URL")
    if args.rows and external:
        parser.error("--rows loads into the embedded server under --data: unset DATABASE_URL")
    try:
        load_seconds = load(args.rows, work) if args.rows else None
        url = database.resolve_url(external, work)
        results, build_seconds = [], []
        with tempfile.TemporaryDirectory() as target:
            for run in range(args.repeat):
                extra = ["--full-refresh"] if args.full_refresh else []
                seconds, run_results = dbt_build(url, args.project_dir.absolute(), Path(target), args.select, extra)
                print(f"dbt build {run + 1}/{args.repeat}: {seconds:.1f} s", flush=True)
                build_seconds.append(round(seconds, 2))
                results.append(run_results)
        label = args.label or (f"rows_{args.rows}" if args.rows else work.name)
        report = Report(
            label, time.strftime("%Y-%m-%d %H:%M"), machine(), server_settings(url), args.repeat, build_seconds,
            load_seconds, collect(results),
        )  # fmt: skip
    finally:
        if not external:
            database.stop_embedded_server(work)  # its shared buffers are not the next program's business
    text = markdown(report)
    save_report(f"dbt_{report.label}", text, report)
    print(f"\n{text}\nwritten: {RESULTS / f'dbt_{report.label}'}.md, .json", flush=True)


if __name__ == "__main__":
    main()
