"""API benchmark: requests/s and latency per route, with N concurrent clients, on generated data with its marts.

    uv run python -m bench.api --rows 20370000        # make bench-api (1/10 of IMDb)

The data folder of `bench.refresh` at the same size is reused when it holds the marts; otherwise `imdb_refresh`
builds one. The API runs as `make api` does (`python -m imdb_api`, WORKERS processes) and `wrk` (Debian's package,
one thread, on the same machine) sends requests for random ids or words sampled from the data, one route at a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from bench import refresh
from bench.run import ensure_data, machine, save_report
from imdb_api import keys
from imdb_api.database import ensure_api_tables
from imdb_assets import database

RESULTS = Path("bench_results")
SAMPLES = 2000


@dataclass(frozen=True)
class RouteResult:
    route: str
    clients: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def prepare(rows: int, work: Path) -> Path:
    """A data folder whose database holds every table and mart at ``rows``: `imdb_refresh` builds what is missing
    (a folder loaded before keeps its tables, and only stale or missing models are built)."""
    folder = work / str(rows)
    if (folder / "data" / "postgres").exists():
        with psycopg.connect(database.resolve_url(None, folder / "data")) as conn:
            built = conn.execute("SELECT to_regclass('imdb_marts.title_search') IS NOT NULL").fetchone()
            if database.one_row(built)[0]:
                return folder / "data"
    data = ensure_data(RESULTS / "data" / str(rows), rows)
    refresh._refresh(refresh._environment(data, folder))
    return folder / "data"


def samples(url: str) -> dict[str, list[str]]:
    """Paths for each route, from ids and words of the data itself."""
    with psycopg.connect(url) as conn:

        def column(statement: str) -> list:
            return [row[0] for row in conn.execute(statement, (SAMPLES,))]

        titles = column("SELECT tconst FROM imdb_marts.titles TABLESAMPLE SYSTEM (5) WHERE num_votes > 0 LIMIT %s")
        people = column("SELECT nconst FROM imdb_marts.people WHERE total_credits > 0 LIMIT %s")
        recommended = column("SELECT DISTINCT tconst FROM imdb_marts.title_recommendations LIMIT %s")
        words = column(
            "SELECT split_part(primary_title, ' ', 1) FROM imdb_marts.titles TABLESAMPLE SYSTEM (5) "
            "WHERE primary_title ~ '^[[:alpha:]]{3,}' LIMIT %s"
        )
        genres = column("SELECT DISTINCT genre FROM imdb_marts.title_genres LIMIT %s")
    prefixes = [f"{a} {b[:3]}" for a, b in itertools.pairwise(words)]
    return {
        "title by id": [f"/v1/titles/{t}" for t in titles],
        "search (titles)": [f"/v1/search/titles?q={q}" for q in words[: SAMPLES // 2] + prefixes[: SAMPLES // 2]],
        "credits": [f"/v1/titles/{t}/credits" for t in titles],
        "filmography": [f"/v1/names/{n}/filmography" for n in people],
        "similar": [f"/v1/titles/{t}/similar" for t in recommended],
        "keyset page": [f"/v1/titles?genre={g}&sort={s}&limit=20" for g in genres for s in ("votes", "rating", "year")],
    }


def wrk_script(paths: list[str], key: str, folder: Path) -> Path:
    script = folder / "requests.lua"
    listed = ",\n".join(json.dumps(p.replace(" ", "%20")) for p in paths)
    script.write_text(
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        f"local paths = {{\n{listed}\n}}\n"
        "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n"
    )
    return script


def _search(pattern: str, text: str, fullmatch: bool = False) -> re.Match[str]:
    """``pattern``'s match in wrk's output, which must have it."""
    found = (re.fullmatch if fullmatch else re.search)(pattern, text)
    if found is None:
        raise ValueError(f"unexpected wrk output, no {pattern!r} in: {text[:500]}")
    return found


def _ms(text: str) -> float:
    value, unit = _search(r"([\d.]+)(us|ms|s)", text, fullmatch=True).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def run_wrk(base_url: str, script: Path, clients: int, seconds: int) -> tuple[float, float, float, int]:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(script), base_url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(_search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    # The latency distribution's own lines: a percentage column elsewhere may end in "50%" or "99%" too.
    p50 = _ms(_search(r"(?m)^\s*50%\s+(\S+)", output).group(1))
    p99 = _ms(_search(r"(?m)^\s*99%\s+(\S+)", output).group(1))
    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\s*:?\s*(\d+)", output)
    )
    return rate, p50, p99, errors


def measure(data_dir: Path, clients: int, seconds: int, workers: int) -> list[RouteResult]:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    url = database.resolve_url(None, data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_api_tables(conn)
        _, key = keys.create_key(conn, f"bench {time.strftime('%H:%M:%S')}", "reader", "bench")
    port = 8123
    env = os.environ | {"IMDB_DATA_DIR": str(data_dir), "IMDB_API_RATE_LIMIT": "1000000000/minute"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "imdb_api", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        results = []
        with tempfile.TemporaryDirectory() as folder:
            for route, paths in samples(url).items():
                script = wrk_script(paths, key, Path(folder))
                run_wrk(base, script, clients, 3)  # warm the pool, the prepared statements and the cache
                rate, p50, p99, errors = run_wrk(base, script, clients, seconds)
                results.append(RouteResult(route, clients, round(rate), p50, p99, errors))
                print(f"{route}: {rate:,.0f} req/s, p50 {p50} ms, p99 {p99} ms, {errors} errors", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def markdown(results: list[RouteResult]) -> str:
    lines = [
        "| route | clients | requests/s | p50 (ms) | p99 (ms) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.route} | {r.clients} | {r.requests_per_second:,.0f} | {r.p50_ms} | {r.p99_ms} | {r.errors} |"
        for r in results
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_370_000, help="generated rows over all files (1/10 of IMDb)")
    parser.add_argument("--work", type=Path, default=RESULTS / "api", help="data folders, one per size")
    parser.add_argument("--data-dir", type=Path, help="an IMDB_DATA_DIR already loaded and modeled, instead")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections of wrk")
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds per route")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.absolute() if args.data_dir else prepare(args.rows, args.work.absolute())
    results = measure(data_dir, args.clients, args.seconds, args.workers)
    report = (
        f"# API\n\n{machine()}, {time.strftime('%Y-%m-%d %H:%M')}; {args.rows:,} generated rows, "
        f"{args.workers} API workers, wrk with one thread on the same machine\n\n{markdown(results)}\n"
    )
    save_report("api", report, results)
    print(report)


if __name__ == "__main__":
    main()
