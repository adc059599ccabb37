"""`make bench`'s program on a small file: every method runs, on the same rows, and the report says what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench.run import BASELINE_SCHEMA, IMDB_ROWS, copy_text_table, rows_of
from imdb_assets import database, load, parse
from imdb_assets import dbt as imdb_dbt
from imdb_assets.catalog import DATASETS, SCHEMA, Kind
from imdb_dev.generator import MANIFEST, Manifest, generate

REPO = Path(__file__).resolve().parents[1]


def test_bench_compares_the_five_methods_on_the_same_rows(tmp_path):
    command = [sys.executable, "-m", "bench.run", "--rows", "400000", "--files", "title.principals", "--slice", "2000"]
    command += ["--repeat", "3"]
    command += ["--work", str(tmp_path / "work")]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=600)

    results = tmp_path / "bench_results"
    measurements = {m["method"]: m for m in json.loads((results / "rows_400000_title_principals.json").read_text())}
    assert set(measurements) == {"platform_refresh", "platform_load", "copy_text", "copy_text_arrays", "batch_insert"}
    assert len({m["rows"] for m in measurements.values()}) == 1  # every method loaded the same rows
    for method, m in measurements.items():
        assert m["rows"] > 0 and m["seconds"] > 0 and m["peak_rss_mb"] > 0, method
    for method in ("platform_refresh", "platform_load", "copy_text", "copy_text_arrays"):  # not batch's tiny slice
        assert measurements[method]["client_cpu_seconds"] > 0 < measurements[method]["server_cpu_seconds"], method
    assert measurements["batch_insert"]["note"].startswith("extrapolated linearly from 2,000 rows")
    for method in ("platform_load", "copy_text", "copy_text_arrays"):  # three runs in turn, the median kept
        note = measurements[method]["note"]
        assert note.startswith("median of 3: "), note
        runs = sorted(float(s) for s in note.removeprefix("median of 3: ").removesuffix(" s").split(", "))
        assert len(runs) == 3 and runs[1] == float(f"{measurements[method]['seconds']:.1f}"), note
    report = (results / "rows_400000_title_principals.md").read_text()
    assert "| time vs COPY text | time vs COPY text, same table |" in report and "| CPU bound vs COPY text |" in report
    copy, arrays = (measurements[m]["seconds"] for m in ("copy_text", "copy_text_arrays"))
    own_ratios = [line.split(" | ")[5:7] for line in report.splitlines() if "| title.principals | copy_text" in line]
    assert own_ratios == [["1.00x", f"{copy / arrays:.2f}x"], [f"{arrays / copy:.2f}x", "1.00x"]]
    assert (results / "rows_400000_title_principals.png").stat().st_size > 10_000


def test_bench_runs_against_the_server_of_database_url(stock_server, tmp_path):
    """`make bench` with DATABASE_URL: every method on that server (a stock one here), its CPU measured, no embedded
    server started, the report beside the embedded server's."""
    command = [sys.executable, "-m", "bench.run", "--rows", "200000", "--files", "title.principals", "--repeat", "1"]
    command += ["--no-batch", "--work", str(tmp_path / "work")]
    env = os.environ | {"DATABASE_URL": stock_server.url(), "PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=600)

    results = tmp_path / "bench_results"
    measured = json.loads((results / "rows_200000_title_principals_database_url.json").read_text())
    assert [m["method"] for m in measured] == ["platform_refresh", "platform_load", "copy_text", "copy_text_arrays"]
    assert len({m["rows"] for m in measured}) == 1
    for m in measured:  # the stock server runs on this machine: its processes are seen
        assert m["server_cpu_seconds"] > 0 < m["client_cpu_seconds"], m
    report = (results / "rows_200000_title_principals_database_url.md").read_text()
    assert "- PostgreSQL 15." in report
    assert f"(DATABASE_URL, 127.0.0.1:{stock_server.port}): wal_level=replica," in report
    assert not (tmp_path / "work" / "postgres").exists()


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory) -> Path:
    """IMDb-format files without malformed lines (COPY text stops at the first), quirks included: backslashes,
    JSON escapes, unbalanced quotes."""
    folder = tmp_path_factory.mktemp("clean")
    generate(folder, 20_000, seed=11, malformed_fraction=0.0)
    return folder


def test_a_data_folder_is_benchmarked_at_its_own_rows_unless_told_otherwise(clean_files, tmp_path):
    assert rows_of(clean_files) == 20_000
    assert rows_of(tmp_path) == rows_of(None) == IMDB_ROWS // 10  # nothing generated there yet


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.file_stem)
def test_copy_text_into_the_same_table_makes_exactly_the_platforms_table(dataset, clean_files, tmp_path, db_url):
    """The same-table baseline is a fair one: the rows, types and values the platform loads, nothing less."""
    raw, frame = clean_files / dataset.file_name, tmp_path / "frame.parquet"
    parse.parse_file(dataset, raw, frame, tmp_path / "rejects.tsv", source_sha256="test", max_reject_fraction=0)
    loaded = load.load_table(dataset, str(frame), db_url, source_sha256="test")
    same_table, old_table = BASELINE_SCHEMA["copy_text_arrays"], BASELINE_SCHEMA["copy_text"]
    assert copy_text_table(dataset, raw, db_url, same_table, platform_table=True) == loaded.rows > 0
    copy_text_table(dataset, raw, db_url, old_table, platform_table=False)

    def types(schema: str) -> list[tuple]:
        return conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (f'"{schema}"."{dataset.table}"',),
        ).fetchall()

    def differing(schema: str, columns: list[str]) -> int:
        """Rows in one table and not the other, on ``columns``."""
        platform, other = (f'SELECT {", ".join(columns)} FROM "{s}"."{dataset.table}"' for s in (SCHEMA, schema))
        return conn.execute(
            f"SELECT count(*) FROM (({platform} EXCEPT ALL {other}) UNION ALL ({other} EXCEPT ALL {platform})) AS d"
        ).fetchone()[0]

    every_column = [f'"{c.name}"' for c in dataset.columns]
    scalars = [f'"{c.name}"' for c in dataset.columns if not c.is_list]  # the old table keeps lists as raw text
    with_backslash = " OR ".join(f'strpos("{c.name}", chr(92)) > 0' for c in dataset.columns if c.kind is Kind.TEXT)

    with psycopg.connect(db_url) as conn:
        assert types(same_table) == types(SCHEMA)
        assert differing(same_table, every_column) == 0
        backslashed = conn.execute(f'SELECT count(*) FROM "{SCHEMA}"."{dataset.table}" WHERE {with_backslash}')
        # The old loaders' COPY, by contrast, reads the data's backslashes as escapes (and only they differ).
        assert (backslashed.fetchone()[0] > 0) == (differing(old_table, scalars) > 0)


def test_dbt_bench_times_every_model_and_test_of_a_build_on_freshly_loaded_rows(tmp_path):
    work = tmp_path / "work"
    command = [sys.executable, "-m", "bench.dbt", "--rows", "20000", "--repeat", "1", "--data", str(work)]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=600)

    results = tmp_path / "bench_results"
    report = json.loads((results / "dbt_rows_20000.json").read_text())
    assert report["runs"] == 1 and len(report["build_seconds"]) == 1 and report["load_seconds"] > 0
    nodes = {n["name"]: n for n in report["nodes"]}
    for name, node in nodes.items():
        assert len(node["seconds"]) == 1 and min(node["seconds"]) > 0 and node["status"] in ("success", "pass"), name
    assert sum(n["kind"] == "test" for n in nodes.values()) > 60
    models = {name for name, n in nodes.items() if n["kind"] == "model"}
    intermediate = {"int_recommendation_titles", "int_title_aka_texts"}  # materialized; the others are inlined
    staging = {f"stg_imdb__{d.table}" for d in DATASETS} | {"stg_imdb__title_ratings_history"}
    assert models == staging | intermediate | set(dbt_marts())
    assert all(nodes[m]["rows"] is None for m in models if m.startswith("stg_"))  # a view writes no rows
    manifest = Manifest.read(results / "data" / "20000" / MANIFEST)
    assert nodes["titles"]["rows"] == manifest.files["title.basics"].valid_rows > 0
    assert nodes["people"]["rows"] == manifest.files["name.basics"].valid_rows > 0
    url = database.resolve_url(None, work)  # the rows each model wrote are the rows its table holds
    try:
        with psycopg.connect(url) as conn:
            for mart in dbt_marts():
                count = conn.execute(f"SELECT count(*) FROM imdb_marts.{mart}").fetchone()[0]
                assert nodes[mart]["rows"] == count, mart
    finally:
        database.stop_embedded_server(work)
    report_md = (results / "dbt_rows_20000.md").read_text()
    assert f"| titles | model | {nodes['titles']['rows']:,} |" in report_md
    assert "- The file layers for the same files (copy, parse, load): " in report_md


def dbt_marts() -> list[str]:
    return [m.split(".")[1] for m in imdb_dbt.marts()]
