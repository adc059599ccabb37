"""Load benchmark: this platform side by side with the loaders it replaces, on the same generated IMDb files.

    uv run python -m bench.run --rows 20370000                      # every file at 1/10 of IMDb, and a whole refresh
    uv run python -m bench.run --principals 1000000,5000000,20000000  # peak RSS by size of title.principals

Methods, each in a child process of its own (its peak RSS sampled from /proc, its own), against the same
PostgreSQL with the same settings (the embedded one, or the server of ``DATABASE_URL``: its ``imdb`` schema is
replaced), into a table of the same DDL with the same primary key and indexes, then ANALYZE:

- ``platform_refresh``: a whole file's refresh, ``.tsv.gz`` on disk -> Parquet frame -> swapped table;
- ``platform_load``: the table asset's load alone, Parquet frame -> indexed, analyzed, swapped table;
- ``copy_text``: the old way, the file inflated into ``COPY ... FROM STDIN (FORMAT text)``, lists kept as raw text;
- ``copy_text_arrays``: the same COPY into the platform's very table: its lists then decoded into ``text[]`` in SQL
  (files with lists only; for the others ``copy_text`` already makes the platform's table);
- ``batch_insert``: the older way, psycopg2 ``execute_batch`` in pages of 10,000 rows, on a slice of the file,
  extrapolated linearly to the whole file.

Then the whole refresh of all seven files as a user runs it (``dagster asset materialize``, the code location's
in-process executor). Results go to ``bench_results/`` as markdown, JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from imdb_assets import database, load, parse, settings
from imdb_assets.catalog import BY_STEM, DATASETS, LIST_SEPARATORS, SCHEMA, Column, Dataset, Kind
from imdb_dev.generator import MANIFEST, Counts, Manifest, generate

RESULTS = Path("bench_results")
IMDB_ROWS = round(sum(d.share_of_rows for d in DATASETS) * 1_000_000)  # the whole release, ~204M rows
BATCH_PAGE = 10_000
COPY_BLOCK = 1 << 20
METHODS = ("platform_refresh", "platform_load", "copy_text", "copy_text_arrays", "batch_insert")
REPEATED = ("platform_load", "copy_text", "copy_text_arrays")
BASELINE_SCHEMA = {"copy_text": "bench_copy", "copy_text_arrays": "bench_copy_arrays", "batch_insert": "bench_batch"}


@dataclass
class Measurement:
    file: str
    method: str
    rows: int
    seconds: float
    peak_rss_mb: float
    server_cpu_seconds: float
    note: str = ""
    client_cpu_seconds: float = 0.0
    """CPU of the method's own process (all its threads) while it was timed."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def cpu_bound_seconds(self) -> float:
        """The least wall time this much work can take on this machine: all of it, client and server, spread
        perfectly over every core."""
        return (self.client_cpu_seconds + self.server_cpu_seconds) / settings.cpu_count()


# --- the methods, run in a child process -------------------------------------------------------------------------


def platform_refresh(dataset: Dataset, raw: Path, work: Path, url: str, slice_rows: int) -> dict:
    started = time.monotonic()
    parsed = parse.parse_file(
        dataset,
        raw,
        _frame(work, dataset),
        work / "frames" / f"{dataset.table}.rejects.tsv",
        source_sha256=f"bench {raw}",
        max_reject_fraction=0.001,
    )
    loaded = load.load_table(dataset, str(_frame(work, dataset)), url, source_sha256=parsed.source_sha256)
    note = f"parse {parsed.seconds:.1f} s + load {loaded.seconds:.1f} s"
    return {"rows": loaded.rows, "seconds": time.monotonic() - started, "note": note}


def platform_load(dataset: Dataset, raw: Path, work: Path, url: str, slice_rows: int) -> dict:
    started = time.monotonic()
    loaded = load.load_table(dataset, str(_frame(work, dataset)), url, source_sha256=f"bench {raw}")
    return {"rows": loaded.rows, "seconds": time.monotonic() - started, "note": "frame from platform_refresh"}


def _frame(work: Path, dataset: Dataset) -> Path:
    return work / "frames" / f"{dataset.table}.parquet"


def baseline_ddl(dataset: Dataset, schema: str) -> str:
    """The platform's DDL (same types, collations, NOT NULL keys), except that lists stay the file's raw text: the
    old loaders did not decode them, and COPY text could not read them as arrays."""
    columns = ", ".join(load.column_sql(dataset, c, "text" if c.is_list else None) for c in dataset.columns)
    return f'CREATE TABLE "{schema}"."{dataset.table}" ({columns})'


def copy_text(dataset: Dataset, raw: Path, work: Path, url: str, slice_rows: int) -> dict:
    """The old loaders' way and table: lists stay the file's raw text, and backslashes are read as escapes."""
    return _copy_text(dataset, raw, url, BASELINE_SCHEMA["copy_text"], platform_table=False)


def copy_text_arrays(dataset: Dataset, raw: Path, work: Path, url: str, slice_rows: int) -> dict:
    """The platform's very table by way of COPY text: every backslash escaped so the text arrives exact, and the
    lists, copied as text, then decoded into ``text[]`` in SQL."""
    return _copy_text(dataset, raw, url, BASELINE_SCHEMA["copy_text_arrays"], platform_table=True)


def _copy_text(dataset: Dataset, raw: Path, url: str, schema: str, platform_table: bool) -> dict:
    started = time.monotonic()
    rows = copy_text_table(dataset, raw, url, schema, platform_table)
    seconds = time.monotonic() - started
    with psycopg.connect(url) as conn:
        conn.execute(f'DROP TABLE "{schema}"."{dataset.table}"')
    if platform_table:
        return {"rows": rows, "seconds": seconds, "note": "every backslash escaped; lists decoded in SQL"}
    return {"rows": rows, "seconds": seconds, "note": "escapes only a backslash before a tab; other text mangled"}


def copy_text_table(dataset: Dataset, raw: Path, url: str, schema: str, platform_table: bool) -> int:
    """Table, COPY, list decoding, primary key and indexes in one transaction (so, like the platform's load, it
    skips the WAL), then ANALYZE. Returns the rows copied."""
    # Escaping every backslash makes IMDb's null marker \N arrive as \\N: COPY compares the raw field with NULL.
    options = r"FORMAT text, NULL '\\N'" if platform_table else "FORMAT text"
    with psycopg.connect(url) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{dataset.table}"')
        conn.execute(baseline_ddl(dataset, schema))
        cursor = conn.cursor()
        with (
            gzip.open(raw, "rb") as source,
            cursor.copy(f'COPY "{schema}"."{dataset.table}" FROM STDIN ({options})') as copy,
        ):
            source.readline()  # the header
            while block := source.read(COPY_BLOCK):
                if platform_table:
                    copy.write(block.replace(b"\\", b"\\\\"))
                    continue
                while block.endswith(b"\\") and (more := source.read(1)):
                    block += more
                # COPY text reads a backslash before a tab as an escaped tab, and the row then misses a field
                # ("Trailing backslash\" ends a title in the data): escape exactly those, or it cannot load at all.
                copy.write(block.replace(b"\\\t", b"\\\\\t"))
        rows = cursor.rowcount
        lists = [c for c in dataset.columns if c.is_list]
        if platform_table and lists:
            conn.execute(JSON_STRINGS_FUNCTION)
            decoded = ", ".join(f'ALTER COLUMN "{c.name}" TYPE text[] USING {_decoded_list_sql(c)}' for c in lists)
            conn.execute(f'ALTER TABLE "{schema}"."{dataset.table}" {decoded}')  # one rewrite for every list
        for statement in [*load.index_sql(dataset, schema), load.primary_key_sql(dataset, schema)]:
            conn.execute(statement)
        conn.commit()
        conn.execute(f'ANALYZE "{schema}"."{dataset.table}"')
        conn.commit()
    return rows


JSON_STRINGS_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.json_strings(list text) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT array(SELECT jsonb_array_elements_text(list::jsonb)) $$
"""


def _decoded_list_sql(column: Column) -> str:
    """The SQL a COPY-text loader would write to turn a list's raw text into the platform's ``text[]``."""
    if column.kind is Kind.JSON_LIST:
        return f'pg_temp.json_strings("{column.name}")'
    return f'string_to_array("{column.name}", chr({ord(LIST_SEPARATORS[column.kind])}))'


def batch_insert(dataset: Dataset, raw: Path, work: Path, url: str, slice_rows: int) -> dict:
    """psycopg2 ``execute_batch``, 10,000 rows a page, one transaction with the CREATE TABLE (no WAL either)."""
    import psycopg2  # the old loaders' driver; installed with dagster-postgres
    import psycopg2.extras

    schema = BASELINE_SCHEMA["batch_insert"]
    total = _file_rows(raw.parent, dataset)
    started = time.monotonic()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cursor.execute(f'DROP TABLE IF EXISTS "{schema}"."{dataset.table}"')
            cursor.execute(baseline_ddl(dataset, schema))
            insert = f'INSERT INTO "{schema}"."{dataset.table}" VALUES ({", ".join(["%s"] * len(dataset.columns))})'
            with gzip.open(raw, "rt", encoding="utf-8", newline="\n") as source:
                next(source)
                rows = [
                    [None if value == r"\N" else value for value in line.rstrip("\n").split("\t")]
                    for line in itertools.islice(source, slice_rows)
                ]
            inserted = len(rows)
            psycopg2.extras.execute_batch(cursor, insert, rows, page_size=BATCH_PAGE)
            for statement in [*load.index_sql(dataset, schema), load.primary_key_sql(dataset, schema)]:
                cursor.execute(statement)
            conn.commit()
            cursor.execute(f'ANALYZE "{schema}"."{dataset.table}"')
            conn.commit()
            seconds = time.monotonic() - started
            cursor.execute(f'DROP TABLE "{schema}"."{dataset.table}"')
            conn.commit()
    finally:
        conn.close()
    if inserted < total:
        note = f"extrapolated linearly from {inserted:,} rows in {seconds:.1f} s"
        return {"rows": total, "seconds": seconds * total / inserted, "note": note}
    return {"rows": inserted, "seconds": seconds, "note": ""}


def _file_rows(data: Path, dataset: Dataset) -> int:
    return Manifest.read(data / MANIFEST).files[dataset.file_stem].data_rows


# --- the parent: data, children, measurements, report ------------------------------------------------------------


def rows_of(data: Path | None) -> int:
    """The rows of a ``--data`` folder's files, so that it is used as it is rather than generated anew at another
    size; else 1/10 of IMDb's."""
    manifest = data / MANIFEST if data else None
    return Manifest.read(manifest).rows if manifest and manifest.exists() else IMDB_ROWS // 10


def ensure_data(folder: Path, rows: int, only: list[str] | None = None) -> Path:
    """Generated files without malformed lines, so every method loads exactly the same rows."""
    manifest = folder / MANIFEST
    if not (manifest.exists() and Manifest.read(manifest).rows == rows):
        print(f"generating {rows:,} rows of IMDb-format data in {folder}", flush=True)
        generate(folder, rows, seed=0, malformed_fraction=0.0, only=only)
    return folder


def bench_url(work: Path) -> str:
    """The server under test: ``DATABASE_URL``'s, else the embedded one under ``work``."""
    return database.resolve_url(settings.load().database_url, work)


@cache
def postmaster_pid(work: Path) -> int | None:
    """The server's postmaster: the embedded one's from its pid file; for ``DATABASE_URL``, the parent of a
    session's backend if that runs on this machine, else None (its CPU is then not measured)."""
    if not settings.load().database_url:
        return int((work / "postgres" / "postmaster.pid").read_text().split()[0])
    with psycopg.connect(bench_url(work)) as conn:  # the backend exists only while its session is open
        backend = database.one_row(conn.execute("SELECT pg_backend_pid()").fetchone())[0]
        try:
            if Path(f"/proc/{backend}/comm").read_text().strip() != "postgres":
                return None
            return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None


def server_cpu_seconds(work: Path) -> float:
    """CPU used so far by the server: the postmaster, its exited children (backends, parallel workers, the
    checkpointer...) and its live ones; 0 for a server on another machine."""
    postmaster = postmaster_pid(work)
    if postmaster is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == postmaster:
            total += sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class PeakMemory(threading.Thread):
    """Samples a process tree every 0.1 s: the peak of its summed PSS (shared pages split between the processes
    sharing them, as Dagster's forked step processes do), or of one process's own high-water mark if higher.
    (wait4's ru_maxrss would not do: a child inherits the high-water mark of the parent it was forked from.)"""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            tree, total = self.tree(), 0
            for pid in tree:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                total += _kb(rollup, "Pss:")
                self.peak_kb = max(self.peak_kb, _kb(status, "VmHWM:"))
            self.peak_kb = max(self.peak_kb, total)

    def tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        tree, pending = [], [self.pid]
        while pending:
            pid = pending.pop()
            tree.append(pid)
            pending += children.get(pid, [])
        return tree


def _kb(text: str, field: str) -> int:
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(field)), 0)


def measured(command: list[str], work: Path, env: dict | None = None) -> tuple[str, float, float]:
    """Run ``command``; return its output, its peak memory (MB, with its descendants), and the server's CPU."""
    before = server_cpu_seconds(work)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    memory = PeakMemory(process.pid)
    memory.start()
    output, _ = process.communicate()  # stdout to its end, then the exit
    memory.done.set()
    memory.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return output, memory.peak_kb / 1024, server_cpu_seconds(work) - before


def run_method(method: str, dataset: Dataset, data: Path, work: Path, slice_rows: int) -> Measurement:
    command = [sys.executable, "-m", "bench.run", "--child", method, "--file", dataset.file_stem]
    command += ["--data", str(data), "--work", str(work), "--slice", str(slice_rows)]
    output, rss, _ = measured(command, work)
    result = json.loads(output.strip().splitlines()[-1])
    server = result["server_cpu"]
    measurement = Measurement(
        dataset.file_stem, method, result["rows"], result["seconds"], rss, server, result["note"], result["client_cpu"]
    )
    print(
        f"  {method:<17} {measurement.rows:>12,} rows {measurement.seconds:8.1f} s "
        f"{measurement.rows_per_second:>12,.0f} rows/s  peak RSS {rss:6.0f} MB  "
        f"CPU client {measurement.client_cpu_seconds:6.1f} s, server {server:6.1f} s",
        flush=True,
    )
    return measurement


def compare_file(dataset: Dataset, data: Path, work: Path, args: argparse.Namespace) -> list[Measurement]:
    """Every method on one file. The load and the COPY texts, the closest, run ``--repeat`` times in turn and each
    keeps its median run: this machine's speed drifts by tens of percent within minutes."""
    refresh = run_method("platform_refresh", dataset, data, work, args.slice)
    repeated = [m for m in REPEATED if m != "copy_text_arrays" or any(c.is_list for c in dataset.columns)]
    rounds = [[run_method(m, dataset, data, work, args.slice) for m in repeated] for _ in range(args.repeat)]
    medians = []
    for runs in zip(*rounds, strict=True):
        median = sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]
        if len(runs) > 1:
            median.note = f"median of {len(runs)}: " + ", ".join(f"{m.seconds:.1f}" for m in runs) + " s"
        medians.append(median)
    batch = [] if args.no_batch else [run_method("batch_insert", dataset, data, work, args.slice)]
    return [refresh, *medians, *batch]


def whole_refresh(data: Path, work: Path, url: str) -> tuple[Measurement, float]:
    """All seven files as a user refreshes them, raw copies on disk -> tables, in one Dagster run with the code
    location's executor. The copy from the mirror (and its gzip check) runs first and is timed apart."""
    env = os.environ | {"IMDB_BASE_URL": data.absolute().as_uri() + "/", "IMDB_DATA_DIR": str(work)}
    env.pop("DAGSTER_HOME", None)  # a throwaway Dagster instance; DATABASE_URL, if set, is the server under test
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        conn.execute(f'DROP SCHEMA IF EXISTS "{load.META_SCHEMA}" CASCADE')
    shutil.rmtree(work / "parsed", ignore_errors=True)

    def materialize(prefixes: tuple[str, ...]) -> tuple[float, float, float]:
        keys = ",".join(f"{prefix}/{d.table}" for prefix in prefixes for d in DATASETS)
        dagster = str(Path(sys.executable).with_name("dagster"))
        command = [dagster, "asset", "materialize", "-m", "imdb_assets.definitions", "--select", keys]
        started = time.monotonic()
        _, rss, server = measured(command, work, env)
        return time.monotonic() - started, rss, server

    copy_seconds, _, _ = materialize(("raw",))
    seconds, rss, server = materialize(("parsed", SCHEMA))
    rows = sum(_file_rows(data, d) for d in DATASETS)
    note = "dagster asset materialize parsed/* imdb/*, the code location's executor"
    return Measurement("all seven", "platform_refresh", rows, seconds, rss, server, note), copy_seconds


def file_totals(measurements: list[Measurement]) -> list[Measurement]:
    """The baselines summed over the files, one after another. COPY text into the platform's tables counts
    ``copy_text`` for the files whose table it already makes (no lists to decode)."""
    by_file: dict[str, dict[str, Measurement]] = {}
    for m in measurements:
        by_file.setdefault(m.file, {})[m.method] = m
    totals = []
    for method, fallback in (("copy_text", None), ("copy_text_arrays", "copy_text"), ("batch_insert", None)):
        runs = [
            found
            for methods in by_file.values()
            if (found := methods.get(method) or (methods.get(fallback) if fallback else None))
        ]
        if any(m.method == method for m in runs):
            rows, seconds = sum(m.rows for m in runs), sum(m.seconds for m in runs)
            note = "sum over the files, one after another"
            totals.append(Measurement("all seven", method, rows, seconds, 0.0, 0.0, note))
    return totals


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{settings.cpu_count()} cores ({cpu}), {memory:.0f} GB RAM, {platform.system()} {platform.release()}"


def server_description(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = database.one_row(conn.execute("SHOW server_version").fetchone())[0]
        shown = {
            name: database.one_row(conn.execute(f"SHOW {name}").fetchone())[0] for name in database.EMBEDDED_SETTINGS
        }
        where = (
            f"DATABASE_URL, {conn.info.host}:{conn.info.port}" if settings.load().database_url else "embedded, pgserver"
        )
    return f"PostgreSQL {version} ({where}): " + ", ".join(f"{k}={v}" for k, v in shown.items())


def ratio_columns(m: Measurement, by_method: dict[str, Measurement]) -> tuple[str, str, str, str]:
    """Time against COPY text (into the old loaders' table, and into the platform's), speed-up over batch insert,
    and the CPU bound against COPY text: above 1.00x, no schedule of this method's work on this machine can match
    COPY text's time."""
    copy, batch = by_method.get("copy_text"), by_method.get("batch_insert")
    same_table = by_method.get("copy_text_arrays", copy)
    versus_copy = f"{m.seconds / copy.seconds:.2f}x" if copy else ""
    versus_same_table = f"{m.seconds / same_table.seconds:.2f}x" if same_table else ""
    faster_than_batch = f"{batch.seconds / m.seconds:,.1f}x" if batch else ""
    measured_whole = m.client_cpu_seconds and m.method != "batch_insert"  # batch insert: a slice, extrapolated
    bound = f"{m.cpu_bound_seconds / copy.seconds:.2f}x" if copy and measured_whole else ""
    return versus_copy, versus_same_table, faster_than_batch, bound


def markdown(measurements: list[Measurement], header: list[str]) -> str:
    lines = [*header, ""]
    lines.append(
        "| file | method | rows | seconds | rows/s | time vs COPY text | time vs COPY text, same table "
        "| faster than batch insert "
        "| peak RSS (MB) | client CPU (s) | server CPU (s) | CPU bound vs COPY text | note |"
    )
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    groups = itertools.groupby(measurements, key=lambda m: m.file)
    for _, in_file in groups:
        group = list(in_file)
        by_method = {m.method: m for m in group}
        for m in group:
            versus_copy, same_table, faster, bound = ratio_columns(m, by_method)
            rss = f"{m.peak_rss_mb:,.0f}" if m.peak_rss_mb else ""
            client = f"{m.client_cpu_seconds:,.1f}" if m.client_cpu_seconds else ""
            server = f"{m.server_cpu_seconds:,.1f}" if m.server_cpu_seconds else ""
            lines.append(
                f"| {m.file} | {m.method} | {m.rows:,} | {m.seconds:,.1f} | {m.rows_per_second:,.0f} | {versus_copy} "
                f"| {same_table} "
                f"| {faster} | {rss} | {client} | {server} | {bound} | {m.note} |"
            )
    return "\n".join(lines) + "\n"


def plot(measurements: list[Measurement], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = list(dict.fromkeys(m.file for m in measurements))
    methods = [m for m in METHODS if any(x.method == m for x in measurements)]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(15, 5.5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        found = {m.file: m for m in measurements if m.method == method}
        xs = [f + i * width for f in range(len(files)) if files[f] in found]
        times.bar(xs, [found[f].seconds for f in files if f in found], width, label=method)
        memory.bar(xs, [found[f].peak_rss_mb for f in files if f in found], width, label=method)
    for axis, label in ((times, "seconds (log)"), (memory, "peak RSS of the client, MB")):
        axis.set_xticks([f + 0.4 - width / 2 for f in range(len(files))], files, rotation=30, ha="right")
        axis.set_ylabel(label)
        axis.legend()
    times.set_yscale("log")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def compare(args: argparse.Namespace) -> None:
    data = ensure_data(args.data or RESULTS / "data" / str(args.rows), args.rows)
    work = args.work
    url = bench_url(work)
    files = [BY_STEM[s] for s in args.files] if args.files else list(DATASETS)
    measurements: list[Measurement] = []
    for dataset in [] if args.refresh_only else files:
        print(f"{dataset.file_stem}:", flush=True)
        measurements += compare_file(dataset, data, work, args)
    refresh_copy = None
    if not args.files:
        print("whole refresh, all seven files:", flush=True)
        whole, refresh_copy = whole_refresh(data, work, url)
        measurements += [whole, *file_totals(measurements)]
        print(f"  {whole.seconds:.1f} s, {whole.rows_per_second:,.0f} rows/s, peak RSS {whole.peak_rss_mb:,.0f} MB")
    label = f"rows_{args.rows}" + (f"_{'_'.join(d.table for d in files)}" if args.files else "")
    label += "_refresh" if args.refresh_only else ""
    label += "_database_url" if settings.load().database_url else ""  # beside the embedded server's report, not over it
    header = [
        f"# Load benchmark: {args.rows:,} rows ({args.rows / IMDB_ROWS:.3g} of IMDb's ~{IMDB_ROWS / 1e6:.0f}M)",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M')}, {machine()}",
        f"- {server_description(url)}",
        '- Every method: same server and settings, same DDL (ids `COLLATE "C"`, keys NOT NULL), same primary key and '
        "indexes, then ANALYZE. Each baseline creates its table in the same transaction as its COPY / INSERTs, so "
        "with wal_level=minimal it skips the WAL just as the platform's load does.",
        "- `copy_text` and `batch_insert` keep list columns as the file's raw text (no array decoding, less work "
        "than the platform's `text[]`): the old loaders' table. `copy_text_arrays` makes the platform's very table "
        "by COPY text: the same COPY, then one `ALTER TABLE` decoding every list into `text[]` in SQL "
        "(`string_to_array`, `jsonb_array_elements_text`); files without lists need no decoding, and their "
        "`copy_text` is already the platform's table. COPY text reads backslashes as escapes, and cannot load a "
        "value ending in a backslash at all (it escapes the tab after it): `copy_text` escapes exactly that case "
        "and mangles the rest, `copy_text_arrays` escapes every backslash, so its text arrives exact.",
        f"- `batch_insert` runs on the first {args.slice:,} rows of a file and is extrapolated linearly (noted).",
        f"- `platform_load` and the COPY texts ran {args.repeat} time(s) each, in turn; each row is the median run "
        "(all runs in its note).",
        "- Peak RSS is the client's: the method's process and its children (summed PSS, or one process's high-water "
        "mark if higher, sampled every 0.1 s); server CPU is the server's, all its processes (none measured for a "
        "server on another machine).",
        "- Client CPU is the method's process, every thread, over the timed work (for batch insert, the slice's). "
        "The CPU bound is (client + server CPU) / cores against COPY text's time: the best any schedule of that "
        "work could do on this machine, so above 1.00x a method cannot reach COPY text's time here.",
    ]
    if refresh_copy is not None:
        header.append(
            f"- The whole refresh starts from the raw copies on disk; copying them from the file:// mirror and "
            f"verifying their gzip took a further {refresh_copy:.1f} s, not counted."
        )
    write_results(label, measurements, header, f"IMDb load, {args.rows:,} rows - {machine()}")


def save_report(label: str, text: str, data: Any) -> None:
    """A benchmark's report: ``bench_results/<label>.md`` to read, and ``.json`` (``data``: dataclasses) to compare."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{label}.md").write_text(text)
    rows = [asdict(item) for item in data] if isinstance(data, list) else asdict(data)
    (RESULTS / f"{label}.json").write_text(json.dumps(rows, indent=1) + "\n")


def write_results(label: str, measurements: list[Measurement], header: list[str], title: str) -> None:
    text = markdown(measurements, header)
    save_report(label, text, measurements)
    plot(measurements, RESULTS / f"{label}.png", title)
    print(f"\n{text}\nwritten: {RESULTS / label}.md, .json, .png", flush=True)


def memory_by_size(args: argparse.Namespace) -> None:
    """title.principals alone at several sizes: the platform's peak RSS should not grow with the file."""
    dataset = BY_STEM["title.principals"]
    url = bench_url(args.work)
    measurements = []
    for rows in args.principals:
        total = round(rows * IMDB_ROWS / (dataset.share_of_rows * 1_000_000))
        assert Counts.plan(total).rows[dataset.file_stem] in range(rows - 2, rows + 3)
        data = ensure_data(RESULTS / "data" / f"principals_{rows}", total, only=[dataset.file_stem])
        print(f"title.principals, {rows:,} rows:", flush=True)
        for method in ("platform_refresh", "platform_load", "copy_text"):
            m = run_method(method, dataset, data, args.work, args.slice)
            m.file = f"principals {rows / 1e6:g}M"
            measurements.append(m)
    header = [
        "# Peak RSS by size of title.principals",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M')}, {machine()}",
        f"- {server_description(url)}",
        "- Peak RSS of the client process (sampled); the platform streams in blocks, so it should stay flat.",
    ]
    write_results("rss_principals", measurements, header, f"title.principals by size - {machine()}")


CHILD_METHODS = {
    "platform_refresh": platform_refresh,
    "platform_load": platform_load,
    "copy_text": copy_text,
    "copy_text_arrays": copy_text_arrays,
    "batch_insert": batch_insert,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows over all seven files (default: --data's, else 1/10 of IMDb's)")
    parser.add_argument("--data", type=Path, help="generated files to use (default: bench_results/data/<rows>)")
    parser.add_argument("--work", type=Path, default=RESULTS / "work", help="embedded PostgreSQL and frames")
    parser.add_argument("--files", type=lambda s: s.split(","), help="only these files (comma separated stems)")
    parser.add_argument("--slice", type=int, default=200_000, help="rows batch_insert loads before extrapolating")
    parser.add_argument("--no-batch", action="store_true", help="skip batch_insert")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the load and COPY text; each keeps its median")
    parser.add_argument("--refresh-only", action="store_true", help="only the whole refresh of all seven files")
    parser.add_argument(
        "--principals", type=lambda s: [int(x) for x in s.split(",")], help="peak RSS mode: principals sizes"
    )
    parser.add_argument("--child", choices=CHILD_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args.work.absolute()
    args.rows = args.rows or rows_of(args.data)
    if args.child:
        dataset = BY_STEM[args.file]
        url = bench_url(args.work)
        raw = args.data / dataset.file_name
        # CPU over the method's work alone, on both sides, so that it compares with the time the method reports.
        client, server = time.process_time(), server_cpu_seconds(args.work)
        result = CHILD_METHODS[args.child](dataset, raw, args.work, url, args.slice)
        client, server = time.process_time() - client, server_cpu_seconds(args.work) - server
        print(json.dumps(result | {"client_cpu": client, "server_cpu": server}))
        return
    try:
        memory_by_size(args) if args.principals else compare(args)
    finally:
        database.stop_embedded_server(args.work)  # its shared buffers are not the next program's business


if __name__ == "__main__":
    main()
