"""API keys: made here, shown once, stored only as a SHA-256 hash, each with a name, a role and an optional expiry.

A key is 256 random bits, so a plain hash is as good as a slow one (nothing to brute-force) and lets a request be
checked with one index lookup. The CLI manages them as the platform's database role:

    uv run python -m imdb_api.keys create --role reader --name alice [--expires-in-days 90]
    uv run python -m imdb_api.keys list
    uv run python -m imdb_api.keys revoke 3
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import secrets
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row

from imdb_api import database
from imdb_assets import database as platform_database
from imdb_assets import settings
from imdb_assets.database import one_row

PREFIX = "imdbk_"
ROLES = ("reader", "operator", "admin")
# What each role may do; a role includes the rights of those before it.
RIGHTS = {"reader": {"read"}, "operator": {"read", "operate"}, "admin": {"read", "operate", "manage_keys"}}

INSERT_KEY = f"""INSERT INTO {database.API_SCHEMA}.keys (name, role, key_hash, key_prefix, created_by, expires_at)
VALUES (%s, %s, %s, %s, %s, %s)
RETURNING id, name, role, key_prefix, created_at, created_by, expires_at, revoked_at"""
LIST_KEYS = f"""SELECT id, name, role, key_prefix, created_at, created_by, expires_at, revoked_at
FROM {database.API_SCHEMA}.keys ORDER BY id"""
REVOKE_KEY = f"""UPDATE {database.API_SCHEMA}.keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s
RETURNING id, name, role, key_prefix, created_at, created_by, expires_at, revoked_at"""
FIND_KEY = f"""SELECT id, name, role, expires_at, revoked_at FROM {database.API_SCHEMA}.keys WHERE key_hash = %s"""
INSERT_AUDIT = f"""INSERT INTO {database.API_SCHEMA}.audit_log (actor, role, action, detail, outcome)
VALUES (%s, %s, %s, %s, %s)"""


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: everything but the key itself and its hash."""

    id: int
    name: str
    role: str
    key_prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def public(self) -> dict:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def looks_like_key(secret: str) -> bool:
    """Cheap shape check before any lookup: the prefix and 43 URL-safe characters."""
    return secret.startswith(PREFIX) and len(secret) == len(PREFIX) + 43


def expiry(days: float | None) -> datetime | None:
    return datetime.now().astimezone() + timedelta(days=days) if days is not None else None


def validate(name: str, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name.strip() or len(name) > 100:
        raise ValueError("name must be 1 to 100 characters")


def create_key(
    conn: psycopg.Connection, name: str, role: str, created_by: str, expires_at: datetime | None = None
) -> tuple[KeyInfo, str]:
    """Store a new key's hash; return its record and the key itself, which is never stored nor shown again."""
    validate(name, role)
    secret = new_secret()
    with conn.cursor(row_factory=class_row(KeyInfo)) as cursor:
        info = one_row(
            cursor.execute(
                INSERT_KEY, (name, role, key_hash(secret), secret[: len(PREFIX) + 6], created_by, expires_at)
            ).fetchone()
        )
    return info, secret


def audit(conn: psycopg.Connection, actor: str, role: str | None, action: str, detail: dict, outcome: str) -> None:
    conn.execute(INSERT_AUDIT, (actor, role, action, json.dumps(detail), outcome))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imdb_api.keys", description="Manage the API's keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it (it is shown only this once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    commands.add_parser("list", help="every key, without the keys themselves")
    revoke = commands.add_parser("revoke", help="stop a key from working")
    revoke.add_argument("id", type=int)
    args = parser.parse_args(argv)

    actor = f"cli:{getpass.getuser()}"
    with platform_database.connect(settings.load().database()) as conn:
        database.ensure_api_tables(conn)
        if args.command == "create":
            with conn.transaction():
                info, secret = create_key(conn, args.name, args.role, actor, expiry(args.expires_in_days))
                audit(conn, actor, None, "create_key", {"key_id": info.id, "name": info.name, "role": info.role}, "ok")
            print(json.dumps(info.public() | {"key": secret}, indent=2))
            print("Keep the key now: it is stored only as a hash and cannot be shown again.", file=sys.stderr)
        elif args.command == "list":
            with conn.cursor(row_factory=class_row(KeyInfo)) as cursor:
                print(json.dumps([k.public() for k in cursor.execute(LIST_KEYS)], indent=2))
        else:
            with conn.transaction(), conn.cursor(row_factory=class_row(KeyInfo)) as cursor:
                revoked = cursor.execute(REVOKE_KEY, (args.id,)).fetchone()
                if revoked is None:
                    print(f"no key with id {args.id}", file=sys.stderr)
                    return 1
                audit(conn, actor, None, "revoke_key", {"key_id": revoked.id, "name": revoked.name}, "ok")
            print(json.dumps(revoked.public(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
