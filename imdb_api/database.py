"""The API's place in the database: its own schema (keys, audit log) and the read-only role it connects as.

The platform's own role (``DATABASE_URL``, or the embedded server's superuser) creates both when the API starts;
from then on the API talks to PostgreSQL only as ``imdb_api``, which may read the ``imdb`` tables, the marts and
the load log, and write nothing but its keys and audit log. Grants on future tables come from the schemas' default
privileges, so a refresh (which creates partitions and rebuilds marts) never loses them.
"""

from __future__ import annotations

import fcntl
import secrets
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from imdb_assets import database
from imdb_assets.catalog import SCHEMA
from imdb_assets.settings import Settings

API_ROLE = "imdb_api"
MARTS_SCHEMA = "imdb_marts"
API_SCHEMA = "imdb_api"
DATA_SCHEMAS = (SCHEMA, MARTS_SCHEMA)
LOCK_KEY = 0x1DB_A91  # serializes concurrent setups (several workers starting at once)

API_TABLES = f"""
CREATE SCHEMA IF NOT EXISTS {API_SCHEMA};
CREATE TABLE IF NOT EXISTS {API_SCHEMA}.keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
    key_hash bytea NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE TABLE IF NOT EXISTS {API_SCHEMA}.audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    role text,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{{}}',
    outcome text NOT NULL
);
"""


def ensure_api_tables(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(API_TABLES)


def api_database_url(settings: Settings) -> str:
    """The URI the API connects with: ``IMDB_API_DATABASE_URL`` as given, else the role ``imdb_api``, created (or
    brought up to date) on the platform's database. Either way the role is checked to be read-only."""
    if settings.api_database_url:
        url = settings.api_database_url
        database.wait_for_server(url)  # compose starts the API beside its server, which may still be starting
    else:
        if settings.database_url:
            database.wait_for_server(database.normalize_url(settings.database_url))
        admin = settings.database()
        password = settings.api_database_password or _stored_password(
            settings.data_folder("the API's generated database password (else set IMDB_API_DATABASE_PASSWORD)")
        )
        ensure_api_role(admin, password, settings.api_statement_timeout_ms)
        url = make_conninfo(admin, user=API_ROLE, password=password)
    check_read_only(url)
    return url


def ensure_api_role(admin_url: str, password: str, statement_timeout_ms: int) -> None:
    """Create ``imdb_api`` (or reset its password), its tables, and its grants, as the platform's role."""
    from imdb_assets import load  # pyarrow and ADBC, which only this setup needs

    role = sql.Identifier(API_ROLE)
    try:
        with database.connect(admin_url) as conn:
            load.ensure_schemas(conn)  # the load log the API reports from
            ensure_api_tables(conn)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (API_ROLE,)).fetchone()
                attributes = sql.SQL(
                    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD {}"
                ).format(sql.Literal(password))
                verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
                conn.execute(sql.SQL("{} {} {}").format(verb, role, attributes))
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(role, sql.Literal(statement_timeout_ms))
                )
                for schema in DATA_SCHEMAS:
                    name = sql.Identifier(schema)
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(name, role))
                    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(name, role))
                    conn.execute(
                        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(name, role)
                    )
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(load.META_SCHEMA), role))
                meta = sql.Identifier(load.META_SCHEMA)
                conn.execute(sql.SQL("GRANT SELECT ON {}.loads TO {}").format(meta, role))
                # The marts' watermarks, part of the release's tag, whenever dbt creates them.
                if conn.execute("SELECT to_regclass('imdb_meta.model_watermarks')").fetchone() != (None,):
                    conn.execute(sql.SQL("GRANT SELECT ON {}.model_watermarks TO {}").format(meta, role))
                conn.execute(
                    sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(meta, role)
                )
                api = sql.Identifier(API_SCHEMA)
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(api, role))
                conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE (revoked_at) ON {}.keys TO {}").format(api, role))
                conn.execute(sql.SQL("GRANT INSERT ON {}.audit_log TO {}").format(api, role))
    except psycopg.errors.InsufficientPrivilege as error:
        raise PermissionError(
            f"the platform's database role may not create the API's role {API_ROLE!r} ({error.diag.message_primary}): "
            f"grant it CREATEROLE, or create a read-only role yourself and set IMDB_API_DATABASE_URL"
        ) from error


def check_read_only(url: str) -> None:
    """Refuse to serve as a role that could change the data: a superuser, or one with a write privilege on a table
    of ``imdb`` or ``imdb_marts``, or CREATE on one of those schemas."""
    with database.connect(url) as conn:
        user, superuser = database.one_row(
            conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        )
        writable = [
            name
            for (name,) in conn.execute(
                """SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm')
                     AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
                          OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'))
                   UNION ALL
                   SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) AND has_schema_privilege(oid, 'CREATE')
                   ORDER BY 1 LIMIT 5""",
                (list(DATA_SCHEMAS), list(DATA_SCHEMAS)),
            )
        ]
    if superuser or writable:
        what = "is a superuser" if superuser else f"may write to {', '.join(writable)}"
        raise PermissionError(f"the API must connect as a read-only role, but {user!r} {what}")


def _stored_password(data_dir: Path) -> str:
    """The role's password, made once and kept beside the data (readable by its owner only), so that every worker
    process and every restart agrees on it."""
    folder = data_dir / "api"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "database_password"
    with (folder / "database_password.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()
