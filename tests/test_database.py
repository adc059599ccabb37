"""Any PostgreSQL: URLs spelled postgres://, a stock server as a non-superuser with few connections, container-aware
CPU counts, and an embedded server that is never restarted under another process's feet."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from imdb_assets import database, dbt, load, parse, settings
from imdb_assets.catalog import DATASETS
from imdb_assets.defs.resources import Warehouse
from tests.conftest import Platform
from tests.dagster_dev import fresh_home
from tests.stock_server import CONNECTIONS, ROLE, StockServer
from tests.test_dbt import HISTORY_MARTS, MARTS, assert_all_checks_pass
from tests.test_pipeline import assert_table_matches_file

# max_connections less superuser_reserved_connections' default of 3: what the role may open.
ROLE_SLOTS = CONNECTIONS - 3


def test_postgres_scheme_is_spelled_postgresql_for_every_consumer(tmp_path):
    assert database.normalize_url("postgres://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert database.normalize_url("POSTGRES://u@h/db") == "postgresql://u@h/db"
    assert database.normalize_url("postgresql://u@h/db?sslmode=require") == "postgresql://u@h/db?sslmode=require"
    assert database.normalize_url("host=h dbname=postgres") == "host=h dbname=postgres"
    assert database.resolve_url("postgres://u:p@h:6543/imdb", tmp_path) == "postgresql://u:p@h:6543/imdb"
    assert dbt.environment(settings.Settings(), "postgres://u:p@h:6543/imdb?sslmode=require") == {
        "IMDB_DBT_HOST": "h",
        "IMDB_DBT_PORT": "6543",
        "IMDB_DBT_USER": "u",
        "IMDB_DBT_PASSWORD": "p",
        "IMDB_DBT_DBNAME": "imdb",
        "IMDB_DBT_SSLMODE": "require",
        "IMDB_RECOMMENDATION_MIN_VOTES": "1000",
        "IMDB_FRESHNESS_WARN_AFTER_DAYS": "2",
        "IMDB_FRESHNESS_ERROR_AFTER_DAYS": "7",
    }


def test_cpu_count_follows_the_affinity_mask_and_a_container_quota(tmp_path):
    assert 1 <= settings.cpu_count(tmp_path) == len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("50000 100000\n")  # half a CPU: one connection, not none
    assert settings.cpu_count(v2) == 1
    (v2 / "cpu.max").write_text("max 100000\n")
    assert settings.cpu_count(v2) == settings.cpu_count(tmp_path)
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert settings.cpu_count(v1) == 1


def test_load_connections_setting(monkeypatch):
    monkeypatch.delenv("IMDB_LOAD_CONNECTIONS", raising=False)
    assert settings.load().load_connections is None  # a load then uses one connection per CPU
    monkeypatch.setenv("IMDB_LOAD_CONNECTIONS", "12")
    assert settings.load().load_connections == 12
    for bad, reason in (("0", "greater than or equal to 1"), ("-2", "greater than or equal to 1"), ("abc", "integer")):
        monkeypatch.setenv("IMDB_LOAD_CONNECTIONS", bad)
        with pytest.raises(settings.SettingsError, match=rf"^IMDB_LOAD_CONNECTIONS='{bad}': .*{reason}"):
            settings.load()


def test_available_connections_leave_the_reserved_and_a_spare_few(stock_server: StockServer):
    with contextlib.ExitStack() as stack, psycopg.connect(stock_server.url()) as conn:
        assert database.available_connections(conn, 4) == 4
        # One session (this one) is open: the role's slots less it and the spare ones.
        assert database.available_connections(conn, 100) == ROLE_SLOTS - 1 - database.SPARE_CONNECTIONS
        for _ in range(8):
            stack.enter_context(psycopg.connect(stock_server.url()))
        assert database.available_connections(conn, 100) == ROLE_SLOTS - 9 - database.SPARE_CONNECTIONS
        for _ in range(ROLE_SLOTS - 9):
            stack.enter_context(psycopg.connect(stock_server.url()))
        assert database.available_connections(conn, 100) == 1  # at least one, so a load still makes progress


def test_a_role_without_createdb_gets_a_clear_error_for_a_missing_database(stock_server: StockServer):
    with pytest.raises(PermissionError, match=rf"database 'nowhere' does not exist .* role '{ROLE}' may not create it"):
        database.ensure_database(stock_server.url("postgres"), "nowhere")
    assert database.ensure_database(stock_server.url("postgres"), "dagster") == stock_server.url("dagster").replace(
        "postgres://", "postgresql://"
    )


def test_the_platform_on_a_stock_server_as_a_non_superuser_through_a_postgres_url(
    stock_server: StockServer, mirror, mirror_dir, data_dir, tmp_path, monkeypatch
):
    """Every file and dbt model loaded through a postgres:// URL as a role that owns its database and nothing more,
    Dagster's storage on the same server; with most connections taken, the load splits into fewer parts."""
    url = stock_server.url()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("IMDB_RECOMMENDATION_MIN_VOTES", "20")
    monkeypatch.setattr(parse, "ROW_GROUP_ROWS", 500)  # the larger tables in key-range partitions, as IMDb's are
    monkeypatch.setattr(load, "MIN_PART_ROWS", 500)
    platform = Platform(mirror.base_url, data_dir, url)
    platform.resources["warehouse"] = Warehouse(database_url=url, data_dir=str(data_dir), load_connections=8)
    platform.instance = DagsterInstance.from_config(str(fresh_home(tmp_path, "dagster")))
    held = 8  # other clients: with the load's own session, 17 - 9 - 3 spare = 5 parts at most, not the 8 wanted
    with contextlib.ExitStack() as stack:
        for _ in range(held):
            stack.enter_context(psycopg.connect(url))
        result = platform.refresh(models=True)
    for dataset in DATASETS:
        assert_table_matches_file(platform, dataset, mirror_dir / dataset.file_name)
    assert_all_checks_pass(result)
    rows = {m: platform.query(f"SELECT count(*) FROM imdb_marts.{m}")[0][0] for m in MARTS}
    assert rows["titles"] == platform.query("SELECT count(*) FROM imdb.title_basics")[0][0]
    # The ratings history's marts stay empty until releases a day apart have been loaded.
    assert min(count for mart, count in rows.items() if mart not in HISTORY_MARTS) > 0

    parts = platform.query("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", "imdb.title_principals")
    assert parts == [(ROLE_SLOTS - held - 1 - database.SPARE_CONNECTIONS,)]
    owners = platform.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname LIKE 'imdb%%'")
    assert owners == [(ROLE,)]
    with stock_server.admin("dagster") as conn:
        runs = conn.execute("SELECT status FROM runs").fetchall()
        assert runs == [("SUCCESS",)]
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() == (False,)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def setting(url: str, name: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]


def test_the_embedded_server_is_not_restarted_while_another_client_uses_it(tmp_path, monkeypatch, caplog):
    url = database.embedded_server_url(tmp_path)
    try:
        started = postmaster_pid(tmp_path)
        # Settings the server does not have yet: one needs a restart, one a reload.
        monkeypatch.setitem(database.EMBEDDED_SETTINGS, "max_connections", "190")
        monkeypatch.setitem(database.EMBEDDED_SETTINGS, "work_mem", "32MB")
        with psycopg.connect(url) as other:  # another process's session, in the middle of its work
            other.execute("CREATE TEMPORARY TABLE work AS SELECT 1 AS x")
            database.embedded_server_url.cache_clear()
            with caplog.at_level(logging.WARNING, logger=database.__name__):
                url = database.embedded_server_url(tmp_path)
            assert other.execute("SELECT x FROM work").fetchone() == (1,)
            assert postmaster_pid(tmp_path) == started
            assert "keeps its current max_connections until no other client is connected (1 are now)" in caplog.text
            assert (setting(url, "max_connections"), setting(url, "work_mem")) == ("200", "32MB")

        # Alone on it, the next process restarts it (the closed session's backend may take a moment to exit).
        deadline = time.monotonic() + 10
        while postmaster_pid(tmp_path) == started and time.monotonic() < deadline:
            database.embedded_server_url.cache_clear()
            url = database.embedded_server_url(tmp_path)
        assert postmaster_pid(tmp_path) != started
        assert (setting(url, "max_connections"), setting(url, "work_mem")) == ("190", "32MB")
    finally:
        database.stop_embedded_server(tmp_path)


def test_waiting_for_a_server_retries_a_refused_connection_but_not_an_answer(pg_server: str) -> None:
    """What compose's services do at start (podman does not wait for PostgreSQL's healthcheck): a server not yet
    listening is waited for until the timeout, a server that answers with an error is not."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        port = sock.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="refused"):
            database.wait_for_server(f"postgresql://imdb:x@127.0.0.1:{port}/imdb", timeout=2)
        assert time.monotonic() - start >= 2
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        database.wait_for_server(database.with_database(pg_server, "no_such_database"), timeout=30)
    assert time.monotonic() - start < 10
    database.wait_for_server(pg_server, timeout=5)
