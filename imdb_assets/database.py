"""Which PostgreSQL the platform talks to: `DATABASE_URL`, or an embedded server it starts itself.

The embedded server (the `pgserver` wheel ships the binaries) lives in ``IMDB_DATA_DIR/postgres``, is started on
first use and left running, so every later process (run workers, the webserver, the daemon, tests) reuses it.
It is configured for bulk loads: minimal WAL, so a table created and filled in one transaction skips the WAL;
generous memory for index builds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import warnings
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    import pgserver
    from pgserver import _commands

log = logging.getLogger(__name__)

IMDB_DATABASE = "imdb"

# Settings applied to the embedded server only; an external server is the operator's to tune.
EMBEDDED_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "shared_buffers": "512MB",
    "maintenance_work_mem": "1GB",
    "work_mem": "64MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_parallel_maintenance_workers": "2",
    "max_connections": "200",
}
NEEDS_RESTART = {"wal_level", "max_wal_senders", "shared_buffers", "max_connections"}


def with_database(url: str, database: str) -> str:
    """The same server URI pointing at another database (works for socket URIs like ``…@/postgres?host=DIR``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@cache
def embedded_server_url(data_dir: Path) -> str:
    """Start (or find running) the embedded server under ``data_dir`` and return its URI."""
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    # Parallel run workers may all ask at once; the first one starts and tunes the server, the others wait.
    with (data_dir / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_tuned(pgdata)


def _start_tuned(pgdata: Path) -> str:
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        # current_setting() reports values in the units written here ("512MB", "30min").
        stale = {
            name: value
            for name, value in EMBEDDED_SETTINGS.items()
            if conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] != value
        }
        for name, value in stale.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if stale.keys() - NEEDS_RESTART:
            conn.execute("SELECT pg_reload_conf()")
    if stale.keys() & NEEDS_RESTART:
        log.info("restarting the embedded PostgreSQL to apply %s", sorted(stale))
        _commands.pg_ctl(["-w", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        url = server.get_uri()
    return url


def ensure_database(server_url: str, database: str) -> str:
    """Create ``database`` on the server if missing; return its URI."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            # Another process may create it between the check and here.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE DATABASE "{database}"')
    return with_database(server_url, database)


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """The IMDb database: ``database_url`` as given, or the embedded server's ``imdb`` database."""
    if database_url:
        return database_url
    return ensure_database(embedded_server_url(data_dir), IMDB_DATABASE)


def stop_embedded_server(data_dir: Path) -> None:
    """Stop the embedded server under ``data_dir`` if it runs (`make db-stop`, test teardown)."""
    pgdata = data_dir / "postgres"
    if (pgdata / "postmaster.pid").exists():
        user = "pgserver" if os.geteuid() == 0 else None
        _commands.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user, timeout=60)
    embedded_server_url.cache_clear()


def psql_path() -> str:
    """The psql that ships with the embedded server, for users without a PostgreSQL client."""
    return str(_commands.POSTGRES_BIN_PATH / "psql")
