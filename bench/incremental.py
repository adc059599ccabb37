"""Incremental dbt builds: `dbt build` of the whole project from empty, then after a day's churn (the models built from
the change log), then with --full-refresh; seconds per node, and the incremental marts compared with the full build.

    uv run python -m bench.incremental --files /tmp/incr-gen/releases/2024-03-01 --data /tmp/incr-bench
    uv run python -m bench.incremental --data /tmp/incr-bench --no-load      # the tables already loaded there

The day's churn is written by SQL the way a diff load writes it (`imdb_dev.marts_check.churn`): of each table, the
generator's default daily shares inserted, changed and deleted, with their change-log rows. `--days` builds that many
days in a row, incrementally, before the build with --full-refresh. Results go to ``bench_results/incremental.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.dbt import Node, collect, dbt_build
from bench.run import machine, save_report, whole_refresh
from imdb_assets import database, dbt
from imdb_assets.dbt import PROJECT_DIR
from imdb_dev import marts_check


@dataclass
class Build:
    label: str
    seconds: float
    nodes: list[Node]

    def model_seconds(self) -> float:
        return sum(n.median for n in self.nodes if n.kind == "model")

    def test_seconds(self) -> float:
        return sum(n.median for n in self.nodes if n.kind != "model")


@dataclass
class Report:
    when: str
    machine: str
    rows: dict[str, int]
    load_seconds: float | None
    churn: list[dict]
    builds: list[Build]
    differences: dict[str, tuple[int, int]]


def markdown(report: Report) -> str:
    lines = [
        "# dbt build: whole, and from the change log",
        "",
        f"- {report.when}, {report.machine}",
        f"- rows: {sum(report.rows.values()):,} ({', '.join(f'{t} {n:,}' for t, n in report.rows.items())})",
        *([f"- the seven files loaded in {report.load_seconds:.1f} s"] if report.load_seconds else []),
        f"- differences of the incremental marts from the full build: {report.differences or 'none'}",
        "",
        "| build | wall s | models s (summed) | tests s (summed) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for b in report.builds:
        lines.append(f"| {b.label} | {b.seconds:.1f} | {b.model_seconds():.1f} | {b.test_seconds():.1f} |")
    for day, counts in enumerate(report.churn, 1):
        lines += ["", f"Day {day}'s churn: " + ", ".join(f"{t} {c['logged']:,}" for t, c in counts.items())]
    lines += ["", "| model | " + " | ".join(b.label for b in report.builds) + " |"]
    lines.append("| --- |" + " ---: |" * len(report.builds))
    names = [n.name for n in report.builds[0].nodes if n.kind == "model"]
    for name in names:
        seconds = [
            next((f"{n.median:.2f}" for n in b.nodes if n.name == name and n.kind == "model"), "")
            for b in report.builds
        ]
        lines.append(f"| {name} | " + " | ".join(seconds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the data folder of the embedded server")
    parser.add_argument("--files", type=Path, help="generated IMDb-format files to load first")
    parser.add_argument("--days", type=int, default=2, help="days of churn, each built incrementally")
    args = parser.parse_args(argv)
    work = args.data.absolute()
    url = database.resolve_url(None, work)
    load_seconds = None
    try:
        if args.files:
            whole, copy_seconds = whole_refresh(args.files, work, url)
            load_seconds = whole.seconds + copy_seconds
        models = marts_check.incremental_models(dbt.read_manifest())
        builds, churn = [], []
        with psycopg.connect(url, autocommit=True) as conn, tempfile.TemporaryDirectory() as target:
            rows = {
                table: conn.execute(f"SELECT count(*) FROM imdb.{table}").fetchone()[0]  # type: ignore[index]
                for table in marts_check.DEFAULT_DAY
            }
            for schema in ("imdb_marts", "imdb_intermediate", "imdb_staging", marts_check.CHECK_SCHEMA):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute("DROP TABLE IF EXISTS imdb_meta.model_watermarks, imdb_meta.model_changes")

            def build(label: str, *extra: str) -> None:
                seconds, results = dbt_build(url, PROJECT_DIR, Path(target), [], list(extra))
                builds.append(Build(label, round(seconds, 2), collect([results])))
                print(f"{label}: {seconds:.1f} s", flush=True)

            build("whole, from empty")
            for day in range(1, args.days + 1):
                churn.append(marts_check.churn(conn))
                build(f"day {day}, from the change log")
            marts_check.copy_models(conn, models)
            build("whole (--full-refresh)", "--full-refresh")
            found = marts_check.differences(conn, models)
    finally:
        database.stop_embedded_server(work)
    report = Report(time.strftime("%Y-%m-%d %H:%M"), machine(), rows, load_seconds, churn, builds, found)
    text = markdown(report)
    save_report("incremental", text, report)
    print(f"\n{text}", flush=True)
    print(json.dumps({b.label: b.seconds for b in builds}), statistics.median(b.seconds for b in builds[1:-1]))


if __name__ == "__main__":
    main()
