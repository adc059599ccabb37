"""A stock PostgreSQL from Debian's `postgresql` package, shaped like a small managed plan: default settings but a
low ``max_connections``, reached over TCP with a password, as a role that is not a superuser and owns its databases.

The suite starts it with the package's own `initdb` and `pg_ctl`, as the `postgres` OS user (initdb refuses root)
in a folder that user owns, on a free port of 127.0.0.1; the package's own cluster service is not used.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.dagster_dev import free_port

CONNECTIONS = 20  # max_connections
ROLE = "imdb_app"
PASSWORD = "imdb-app-pw"
# The role owns these: the data's database, and Dagster's (a role without CREATEDB cannot make it on first use).
DATABASES = ("imdb", "dagster")


def bin_dir() -> Path | None:
    """The newest installed Debian PostgreSQL's binaries, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@dataclass
class StockServer:
    bin: Path
    folder: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "imdb") -> str:
        """The role's URL, with the ``postgres://`` scheme that Heroku-style plans hand out."""
        return f"postgres://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        """A superuser session over the Unix socket in the server's folder, for setup and inspection only."""
        return psycopg.connect(host=str(self.folder), port=self.port, user="postgres", dbname=database, autocommit=True)

    @classmethod
    def start(cls, bin: Path) -> StockServer:
        folder = Path(tempfile.mkdtemp(prefix="imdb-stock-pg-"))
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
        server = cls(bin, folder, free_port())
        server._as_postgres(
            "initdb", "-D", str(server.pgdata), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={folder}"
        options += f" -c max_connections={CONNECTIONS}"
        server._as_postgres(
            "pg_ctl", "-D", str(server.pgdata), "-l", str(folder / "log"), "-o", options, "-w", "-t", "60", "start"
        )
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
            for database in DATABASES:
                conn.execute(f"CREATE DATABASE {database} OWNER {ROLE}")
        return server

    def reset(self) -> None:
        """Empty databases again, as after `start`: a test sees nothing that an earlier one left on the server."""
        with self.admin() as conn:
            for database in DATABASES:
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {database} OWNER {ROLE}")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _as_postgres(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        done = subprocess.run(command, user="postgres", cwd=self.folder, capture_output=True, text=True, timeout=90)
        if done.returncode:
            log = self.folder / "log"
            server_log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}{done.stdout}\n{server_log}")
