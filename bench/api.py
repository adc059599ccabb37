"""API benchmark: requests/s and latency per route, with N concurrent clients, on generated data with its marts,
beside pgbench running each route's own SQL at the same concurrency.

    uv run python -m bench.api --rows 20370000        # make bench-api (1/10 of IMDb)

The data folder of `bench.refresh` at the same size is reused when it holds the marts; otherwise `imdb_refresh`
builds one. The API runs as `make api` does (`python -m imdb_api`, WORKERS processes), once with its cache of answers
off and once on, and `wrk` (Debian's package, one thread, on the same machine) sends requests for random ids or
words sampled from the data, one route at a time. pgbench (one thread, as many clients, prepared statements) runs
the statements the route runs for a sample, in its transaction if it has one: one script per sample, with the
sample's values as pgbench variables and NULL written in the statement (pgbench cannot pass one), for up to
``PGBENCH_SCRIPTS`` of the route's samples, which pgbench picks at random per transaction. The share is the API's
requests/s over pgbench's transactions/s: what the API adds to its SQL.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from bench import refresh
from bench.run import ensure_data, machine, save_report
from imdb_api import keys, queries
from imdb_api.database import ensure_api_tables
from imdb_api.routers.search import SEARCHES, _search_query
from imdb_assets import database

RESULTS = Path("bench_results")
SAMPLES = 2000
# pgbench takes at most 128 scripts.
PGBENCH_SCRIPTS = 100
PGBENCH = (
    *glob.glob(str(Path(sys.prefix) / "lib/python3*/site-packages/pgserver/pginstall/bin/pgbench")),
    *sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True),
)
# A psycopg placeholder in the API's SQL: by name, by position, or a literal %.
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


@dataclass(frozen=True)
class Sample:
    """A request's path, and the statements with their parameters that the route runs for it."""

    path: str
    statements: list[tuple[str, dict | tuple]]
    transaction: bool = False


@dataclass(frozen=True)
class RouteResult:
    route: str
    clients: int
    cache: bool
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    pgbench_tps: float
    share: float


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


def samples(url: str) -> dict[str, list[Sample]]:
    """Requests for each route, from ids and words of the data itself, with the SQL the route runs for each."""
    with psycopg.connect(url, autocommit=True) as conn:

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
        trigram = conn.execute(queries.TRIGRAM_SCHEMA).fetchone()
        similar = queries.SIMILAR_TITLES.format(trgm=trigram[0]) if trigram else None
        prefixes = [f"{a} {b[:3]}" for a, b in itertools.pairwise(words)]
        searches = [search_sample(conn, q, similar) for q in words[: SAMPLES // 2] + prefixes[: SAMPLES // 2]]

    def title_list(path: str, statement: str, params: tuple, tconst: str) -> Sample:
        statements: list[tuple[str, dict | tuple]] = [(queries.TITLE_EXISTS, (tconst,)), (statement, params)]
        return Sample(path, statements, transaction=True)

    def keyset_page(genre: str, sort: str) -> Sample:
        params = dict.fromkeys(("type", "year_from", "year_to", "min_votes", "after_key", "after_tconst"))
        params |= {"genre": genre, "fetch": 21}
        return Sample(f"/v1/titles?genre={genre}&sort={sort}&limit=20", [(queries.titles_page(sort, False), params)])

    def filmography(nconst: str) -> Sample:
        params = {"nconst": nconst, "after_year": None, "after_tconst": None, "after_category": None, "fetch": 51}
        statements: list[tuple[str, dict | tuple]] = [(queries.PERSON_EXISTS, (nconst,)), (queries.FILMOGRAPHY, params)]
        return Sample(f"/v1/names/{nconst}/filmography", statements, transaction=True)

    return {
        "title by id": [Sample(f"/v1/titles/{t}", [(queries.TITLE, (t,))]) for t in titles],
        "search (titles)": searches,
        "credits": [title_list(f"/v1/titles/{t}/credits", queries.CREDITS, (t, None, None), t) for t in titles],
        "filmography": [filmography(n) for n in people],
        "similar": [title_list(f"/v1/titles/{t}/similar", queries.SIMILAR, (t,), t) for t in recommended],
        "keyset page": [keyset_page(g, s) for g in genres for s in ("votes", "rating", "year")],
    }


def search_sample(conn: psycopg.Connection, q: str, similar: str | None, limit: int = 20) -> Sample:
    """The statements /v1/search/titles runs for ``q``, found by running them as it does (routers/search.py): every
    word, then any word, the rated titles first, and names spelled alike last."""
    rated, every = SEARCHES["titles"]
    assert rated is not None
    statements: list[tuple[str, dict | tuple]] = []
    for any_word in (False, True):
        params = {"query": _search_query(q, any_word), "limit": limit}
        statements.append((rated, params))
        if len(conn.execute(rated, params).fetchall()) >= limit:
            return Sample(f"/v1/search/titles?q={q}", statements)
        statements.append((every, params))
        if conn.execute(every, params).fetchall():
            return Sample(f"/v1/search/titles?q={q}", statements)
    if similar:
        statements.append((similar, {"text": q, "limit": limit}))
    return Sample(f"/v1/search/titles?q={q}", statements)


def pgbench_scripts(route_samples: list[Sample], folder: Path) -> tuple[list[str], list[str]]:
    """pgbench's arguments for a route: a script per sample (``-f``) and the samples' values (``-D``)."""
    arguments: list[str] = []
    variables: list[str] = []
    for number, sample in enumerate(route_samples[:PGBENCH_SCRIPTS]):
        lines = ["BEGIN;"] if sample.transaction else []
        for statement, params in sample.statements:
            lines.append(pgbench_statement(statement, params, f"s{number}_", variables) + ";")
        lines += ["COMMIT;"] if sample.transaction else []
        script = folder / f"sample{number}.sql"
        script.write_text("\n".join(lines) + "\n")
        arguments += ["-f", str(script)]
    return arguments, variables


def pgbench_statement(statement: str, params: dict | tuple, prefix: str, variables: list[str]) -> str:
    """``statement`` with each psycopg placeholder a pgbench variable (added to ``variables`` as ``-D``), or NULL."""
    position = iter(range(len(params)))

    def variable(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        name = match.group(1) or str(next(position))
        value = params[name] if isinstance(params, dict) else params[int(name)]
        if value is None:
            return "NULL"
        variables.extend(["-D", f"{prefix}{name}={value}"])
        return f":{prefix}{name}"

    return PLACEHOLDER.sub(variable, statement)


def run_pgbench(url: str, arguments: list[str], variables: list[str], clients: int, seconds: int) -> float:
    """pgbench's transactions/s: one thread, ``clients`` connections, prepared statements, no vacuum first."""
    command = [PGBENCH[0], "-n", "-M", "prepared", f"-c{clients}", "-j1", f"-T{seconds}", *arguments, *variables, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(_search(r"tps = ([\d.]+)", output).group(1))


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
    if not PGBENCH:
        sys.exit("pgbench is missing: apt-get install postgresql-15")
    url = database.resolve_url(None, data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_api_tables(conn)
        _, key = keys.create_key(conn, f"bench {time.strftime('%H:%M:%S')}", "reader", "bench")
    routes = samples(url)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        tps = {}
        for route, route_samples in routes.items():
            scripts = Path(folder) / route.replace(" ", "_")
            scripts.mkdir()
            arguments, variables = pgbench_scripts(route_samples, scripts)
            run_pgbench(url, arguments, variables, clients, 3)  # warm the buffers, as wrk's first run does
            tps[route] = run_pgbench(url, arguments, variables, clients, seconds)
            print(f"{route}: pgbench {tps[route]:,.0f} tps", flush=True)
        for cache in (False, True):
            with api_server(data_dir, workers, cache) as base:
                for route, route_samples in routes.items():
                    script = wrk_script([sample.path for sample in route_samples], key, Path(folder))
                    run_wrk(base, script, clients, 3)  # warm the pool, the prepared statements and the cache
                    rate, p50, p99, errors = run_wrk(base, script, clients, seconds)
                    share = round(rate / tps[route], 2)
                    results.append(
                        RouteResult(route, clients, cache, round(rate), p50, p99, errors, round(tps[route]), share)
                    )
                    print(
                        f"{route}, cache {'on' if cache else 'off'}: {rate:,.0f} req/s ({share}x pgbench), "
                        f"p50 {p50} ms, p99 {p99} ms, {errors} errors",
                        flush=True,
                    )
    return results


@contextlib.contextmanager
def api_server(data_dir: Path, workers: int, cache: bool) -> Iterator[str]:
    """The API on port 8123, its rate limit lifted and its cache of answers on (the default size) or off."""
    port = 8123
    env = os.environ | {"IMDB_DATA_DIR": str(data_dir), "IMDB_API_RATE_LIMIT": "1000000000/minute"}
    env.pop("DATABASE_URL", None)
    env.pop("IMDB_API_CACHE_MB", None)
    if not cache:
        env["IMDB_API_CACHE_MB"] = "0"
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
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def markdown(results: list[RouteResult]) -> str:
    lines = [
        "| route | clients | cache | requests/s | pgbench tps | share | p50 (ms) | p99 (ms) | errors |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.route} | {r.clients} | {'on' if r.cache else 'off'} | {r.requests_per_second:,.0f} | "
        f"{r.pgbench_tps:,.0f} | {r.share:.2f}x | {r.p50_ms} | {r.p99_ms} | {r.errors} |"
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
        f"{args.workers} API workers, wrk and pgbench with one thread on the same machine\n\n{markdown(results)}\n"
    )
    save_report("api", report, results)
    print(report)


if __name__ == "__main__":
    main()
