"""`python -m imdb_api`: serve the API with uvicorn; `--new-reader-key NAME` first makes a reader key and prints a
curl line with it (what `make api` does)."""

from __future__ import annotations

import argparse
import json

import uvicorn

from imdb_api import database, keys
from imdb_assets import database as platform_database
from imdb_assets import settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m imdb_api", description="Serve the IMDb datasets API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--new-reader-key", metavar="NAME", help="make a reader key first and print a curl line")
    args = parser.parse_args()
    if args.new_reader_key:
        with platform_database.connect(settings.load().database()) as conn:
            database.ensure_api_tables(conn)
            info, secret = keys.create_key(conn, args.new_reader_key, "reader", "cli:make api")
            keys.audit(conn, "cli:make api", None, "create_key", {"key_id": info.id, "name": info.name}, "ok")
        print(f"A reader key {json.dumps(info.name)} (shown only now): {secret}")
        print(f"  curl -H 'Authorization: Bearer {secret}' 'http://{args.host}:{args.port}/v1/search/titles?q=love'")
        print(f"OpenAPI docs: http://{args.host}:{args.port}/docs")
    uvicorn.run(
        "imdb_api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
