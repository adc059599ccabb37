"""Dagster's own storage (runs, events, schedules) in PostgreSQL, on the same server as the IMDb data.

`dagster.yaml` names this class instead of `DagsterPostgresStorage` so that it needs no environment variable of its
own: it follows `DATABASE_URL` (or starts the embedded server) through the platform's settings and keeps Dagster's
tables in a database of their own.
"""

from __future__ import annotations

from dagster import Field
from dagster_postgres import DagsterPostgresStorage

from imdb_assets import database, settings


class ImdbPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` whose URL is resolved from the platform's settings."""

    @classmethod
    def config_type(cls):
        return {"database": Field(str, default_value="dagster", description="Database for Dagster's tables.")}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        config = settings.load()
        if config.database_url:
            # A server of its own may still be starting (compose starts the services together).
            database.wait_for_server(database.normalize_url(config.database_url))
        server = config.database_url or database.embedded_server_url(config.data_folder("the embedded server"))
        url = database.ensure_database(server, config_value["database"])
        # ensure_database spells the scheme postgresql:// (SQLAlchemy has no postgres:// dialect); dagster-postgres
        # speaks psycopg2, and SQLAlchemy 2.1 would otherwise pick psycopg 3 for postgresql://.
        return cls(postgres_url=url.replace("postgresql://", "postgresql+psycopg2://", 1), inst_data=inst_data)
