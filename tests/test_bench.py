"""`make bench`'s program on a small file: every method runs, on the same rows, and the report says what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_compares_the_four_methods_on_the_same_rows(tmp_path):
    command = [sys.executable, "-m", "bench.run", "--rows", "400000", "--files", "title.principals", "--slice", "2000"]
    command += ["--work", str(tmp_path / "work")]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=600)

    results = tmp_path / "bench_results"
    measurements = {m["method"]: m for m in json.loads((results / "rows_400000_title_principals.json").read_text())}
    assert set(measurements) == {"platform_refresh", "platform_load", "copy_text", "batch_insert"}
    assert len({m["rows"] for m in measurements.values()}) == 1  # every method loaded the same rows
    for method, m in measurements.items():
        assert m["rows"] > 0 and m["seconds"] > 0 and m["peak_rss_mb"] > 0, method
    for method in ("platform_refresh", "platform_load", "copy_text"):  # batch insert's slice is too small to see
        assert measurements[method]["client_cpu_seconds"] > 0 < measurements[method]["server_cpu_seconds"], method
    assert measurements["batch_insert"]["note"].startswith("extrapolated linearly from 2,000 rows")
    for method in ("platform_load", "copy_text"):  # three runs in turn, the median kept
        note = measurements[method]["note"]
        assert note.startswith("median of 3: "), note
        runs = sorted(float(s) for s in note.removeprefix("median of 3: ").removesuffix(" s").split(", "))
        assert len(runs) == 3 and runs[1] == float(f"{measurements[method]['seconds']:.1f}"), note
    report = (results / "rows_400000_title_principals.md").read_text()
    assert "| time vs COPY text |" in report and "| CPU bound vs COPY text |" in report
    assert "| title.principals | copy_text |" in report and "1.00x" in report
    assert (results / "rows_400000_title_principals.png").stat().st_size > 10_000
