"""Which PostgreSQL the platform talks to: `DATABASE_URL`, or an embedded server it starts itself.

The embedded server (the `pgserver` wheel ships the binaries) lives in ``IMDB_DATA_DIR/postgres``, is started on
first use and left running, so every later process (run workers, the webserver, the daemon, tests) reuses it.
It is configured for bulk loads: minimal WAL, so a table created and filled in one transaction skips the WAL;
generous memory for index builds; and a ``temp_file_limit``, so a runaway sort fails its statement (and its step)
instead of filling the disk. A setting that needs a restart waits until a process finds no other client
connected: a restart would cut off their work.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from imdb_assets import disk, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    import pgserver

log = logging.getLogger(__name__)

Row = TypeVar("Row")

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
# temp_file_limit is per process, and a statement may run in a leader and parallel workers, so the default lets one
# take a quarter of the free disk; superusers alone may set it, so on an external server it is the operator's.
TEMP_FILE_SHARE_OF_FREE_DISK = 0.25
NEEDS_RESTART = {"wal_level", "max_wal_senders", "shared_buffers", "max_connections"}

# Connections a load leaves free for everyone else (Dagster's storage, dbt, a person with psql).
SPARE_CONNECTIONS = 3


def normalize_url(url: str) -> str:
    """``url`` with the ``postgres://`` scheme spelled ``postgresql://``: libpq takes both, SQLAlchemy (Dagster's
    storage) only the latter."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.lower() == "postgres" else url


def with_database(url: str, database: str) -> str:
    """The same server URI pointing at another database (works for socket URIs like ``…@/postgres?host=DIR``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def one_row(row: Row | None) -> Row:
    """``fetchone()``'s row for a query that always returns one (an aggregate, a SELECT without FROM, INSERT ...
    RETURNING, a lookup by ``::regclass``, which fails instead)."""
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A connection to ``url`` in autocommit mode (statements that need a transaction open one with
    ``conn.transaction()``): the one way the platform connects, so every caller gets the same defaults."""
    return psycopg.connect(url, autocommit=True, **kwargs)


# How long a process starting beside its server (docker compose, where podman does not wait for the server's
# healthcheck) waits for it to accept connections before it fails.
SERVER_WAIT_SECONDS = 120.0


def wait_for_server(url: str, timeout: float = SERVER_WAIT_SECONDS) -> None:
    """Return once the server of ``url`` accepts a connection; retry while it refuses them (not yet listening, or
    starting up: PostgreSQL's own answer) for at most ``timeout`` seconds, then raise the last error. A wrong password
    or a missing database is an answer too, and fails at once."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5):
                return
        except psycopg.OperationalError as error:
            if not _server_not_ready(error) or time.monotonic() >= deadline:
                raise
            if not warned:
                log.warning("waiting for PostgreSQL at %s: %s", _host_of(url), str(error).strip().splitlines()[0])
                warned = True
            time.sleep(1)


def _server_not_ready(error: psycopg.OperationalError) -> bool:
    """A connection refused, or a server starting up or shutting down; not a refused login."""
    if error.sqlstate == "57P03":  # cannot_connect_now: starting up, shutting down, in recovery
        return True
    text = str(error)
    # libpq's words for a connection that reached no server (it gives them no SQLSTATE).
    return any(
        phrase in text
        for phrase in ("Connection refused", "the database system is", "timeout expired", "could not translate host")
    )


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}" if parts.hostname else "its socket"


def _pg_command(name: str) -> Callable[..., str]:
    """pgserver's function for one of its binaries (``pg_ctl``): made at import time, so unseen by a type checker."""
    return getattr(pgserver, name)


@cache
def embedded_server_url(data_dir: Path) -> str:
    """Start (or find running) the embedded server under ``data_dir`` and return its URI."""
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    # Parallel run workers may all ask at once; the first one starts and tunes the server, the others wait.
    with (data_dir / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tuning = EMBEDDED_SETTINGS | {"temp_file_limit": temp_file_limit(data_dir, settings.load().temp_file_limit)}
        return _start_tuned(pgdata, tuning)


def temp_file_limit(data_dir: Path, configured: str | None) -> str:
    """``configured`` (IMDB_TEMP_FILE_LIMIT), else `TEMP_FILE_SHARE_OF_FREE_DISK` of the free disk under
    ``data_dir`` now, in whole GB (at least 1GB, so that it reads back as written and rarely changes)."""
    if configured is not None:
        return configured
    return f"{max(1, int(disk.free_bytes(data_dir) * TEMP_FILE_SHARE_OF_FREE_DISK) >> 30)}GB"


def _start_tuned(pgdata: Path, tuning: dict[str, str]) -> str:
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    url = server.get_uri()
    with connect(url) as conn:
        # current_setting() reports values in the units written here ("512MB", "30min").
        stale = {
            name: value
            for name, value in tuning.items()
            if one_row(conn.execute("SELECT current_setting(%s)", (name,)).fetchone())[0] != value
        }
        for name, value in stale.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if stale.keys() - NEEDS_RESTART:
            conn.execute("SELECT pg_reload_conf()")
        pending = sorted(stale.keys() & NEEDS_RESTART)
        others = _other_clients(conn) if pending else 0
    if pending and others:
        # A restart would cut off another process's work (a load, a run, the webserver); a later start applies it.
        log.warning(
            "the embedded PostgreSQL keeps its current %s until no other client is connected (%d are now)",
            ", ".join(pending),
            others,
        )
    elif pending:
        log.info("restarting the embedded PostgreSQL to apply %s", ", ".join(pending))
        _pg_command("pg_ctl")(["-w", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        url = server.get_uri()
    return url


def _other_clients(conn: psycopg.Connection) -> int:
    """Client sessions on the server besides ``conn``'s own."""
    return one_row(
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    )[0]


def available_connections(conn: psycopg.Connection, wanted: int) -> int:
    """How many of ``wanted`` new connections the server behind ``conn`` can take now: its ``max_connections``
    less the slots reserved for superusers (and, on 16+, for ``pg_use_reserved_connections``), the client sessions
    already open and ``SPARE_CONNECTIONS`` for others; at least 1."""
    conn.execute("SELECT pg_stat_clear_snapshot()")  # in a transaction, pg_stat_activity keeps its first answer
    free = one_row(
        conn.execute(
            """SELECT current_setting('max_connections')::int
                    - current_setting('superuser_reserved_connections')::int
                    - coalesce(current_setting('reserved_connections', true)::int, 0)
                    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"""
        ).fetchone()
    )[0]
    return max(1, min(wanted, free - SPARE_CONNECTIONS))


def ensure_database(server_url: str, database: str) -> str:
    """Create ``database`` on the server if missing; return its URI."""
    server_url = normalize_url(server_url)
    with connect(server_url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            # Another process may create it between the check and here.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                try:
                    conn.execute(f'CREATE DATABASE "{database}"')
                except psycopg.errors.InsufficientPrivilege as error:
                    user = conn.info.user
                    raise PermissionError(
                        f"database {database!r} does not exist on {conn.info.host}:{conn.info.port} and role "
                        f"{user!r} may not create it: create it (CREATE DATABASE {database} OWNER {user}) "
                        f"or grant the role CREATEDB"
                    ) from error
    return with_database(server_url, database)


def resolve_url(database_url: str | None, data_dir: Path) -> str:
    """The IMDb database: ``database_url`` (normalized), or the embedded server's ``imdb`` database."""
    if database_url:
        return normalize_url(database_url)
    return ensure_database(embedded_server_url(data_dir), IMDB_DATABASE)


def stop_embedded_server(data_dir: Path) -> None:
    """Stop the embedded server under ``data_dir`` if it runs (`make db-stop`, test teardown)."""
    pgdata = data_dir / "postgres"
    if (pgdata / "postmaster.pid").exists():
        user = "pgserver" if os.geteuid() == 0 else None
        _pg_command("pg_ctl")(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user, timeout=60)
    embedded_server_url.cache_clear()


def psql_path() -> str:
    """The psql that ships with the embedded server, for users without a PostgreSQL client."""
    return str(Path(_pg_command("pg_config")(["--bindir"]).strip()) / "psql")
