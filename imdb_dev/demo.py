"""`make demo`: the whole platform offline on generated data.

Generates an IMDb-format mirror under the data folder (once), refreshes everything with the same
`dagster job execute -m imdb_assets.definitions -j imdb_refresh` a user runs, then says how to reach the data and
the UI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from imdb_assets import database, dbt, settings
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_dev.generator import MANIFEST, Manifest, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows over all seven generated files")
    args = parser.parse_args(argv)

    config = settings.load()
    data_dir = config.data_folder("the demo's generated mirror")
    mirror = data_dir / "mirror"
    existing = Manifest.read(mirror / MANIFEST) if (mirror / MANIFEST).exists() else None
    if existing is None or existing.rows != args.rows:
        print(f"Generating an IMDb-format mirror of {args.rows:,} rows in {mirror}", flush=True)
        generate(mirror, args.rows, seed=0, malformed_fraction=0.0005)

    env = os.environ | {"IMDB_BASE_URL": mirror.as_uri() + "/", "IMDB_DATA_DIR": str(data_dir)}
    started = time.monotonic()
    command = ["dagster", "job", "execute", "-m", "imdb_assets.definitions", "-j", "imdb_refresh"]
    print(f"Running: IMDB_BASE_URL={env['IMDB_BASE_URL']} {' '.join(command)}", flush=True)
    returncode = subprocess.call(command, env=env)
    seconds = time.monotonic() - started
    if returncode:
        print(f"imdb_refresh failed (exit {returncode}); see the run's logs above", file=sys.stderr)
        return returncode

    relations = [f"{SCHEMA}.{d.table}" for d in DATASETS] + dbt.marts()
    with database.connect(config.database()) as conn:
        counts = {
            name: database.one_row(conn.execute(f"SELECT count(*) FROM {name}").fetchone())[0] for name in relations
        }
    print(f"\nimdb_refresh finished in {seconds:.0f}s. Tables, and the dbt marts built from them:")
    for name, count in counts.items():
        print(f"  {name:<35} {count:>10,} rows")
    print("\nQuery it:   make psql   (or uv run imdb psql)")
    print(f"Open the UI: IMDB_BASE_URL={env['IMDB_BASE_URL']} make dev   (then http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
