"""Refreshes launched through Dagster's GraphQL API (`dagster-graphql`), so they run, are logged and are seen in
the Dagster UI like any other run of ``imdb_refresh``."""

from __future__ import annotations

from functools import cached_property
from urllib.parse import urlsplit

from imdb_assets import dbt
from imdb_assets.catalog import LAYERS, Dataset

JOB = "imdb_refresh"
LOCATION = "imdb_assets"


class DagsterUnavailable(RuntimeError):
    pass


class Runs:
    """Dagster and its GraphQL client are imported on the first refresh or status request: a reader's API process
    starts without them."""

    def __init__(self, dagster_url: str, timeout: int = 30) -> None:
        self.url = dagster_url
        self.timeout = timeout

    @cached_property
    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        parts = urlsplit(self.url)
        return DagsterGraphQLClient(
            parts.hostname or "127.0.0.1",
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=self.timeout,
            path_prefix=parts.path.rstrip("/"),
        )

    def launch(self, files: list[Dataset], requested_by: str) -> str:
        """Start ``imdb_refresh``; with ``files``, only their three layers and the dbt models downstream of them
        (which rebuild only what is stale), as the release sensor does. Returns the run id."""
        selection = None
        if files:
            from dagster import AssetKey

            file_keys = [AssetKey([layer, d.table]) for d in files for layer in LAYERS]
            downstream = dbt.models_downstream_of(dbt.read_manifest(), {d.table for d in files})
            model_keys = [AssetKey([schema, name]) for schema, name in downstream]
            selection = [*file_keys, *sorted(model_keys, key=AssetKey.to_user_string)]
        return self._call(
            self.client.submit_job_execution,
            JOB,
            repository_location_name=LOCATION,
            asset_selection=selection,
            tags={"imdb/requested_by": requested_by, "imdb/refresh": "api"},
        )

    def status(self, run_id: str) -> str | None:
        """The run's status (QUEUED, STARTED, SUCCESS, FAILURE, ...), or None for a run Dagster does not know."""
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self._call(self.client.get_run_status, run_id).value
        except DagsterGraphQLClientError as error:
            # Dagster's own answer names its GraphQL type first: RunNotFoundError for an unknown id.
            if error.args and str(error.args[0]).endswith("NotFoundError"):
                return None
            raise

    def _call(self, method, *args, **kwargs):
        """``method`` of the client; DagsterUnavailable when Dagster cannot be reached or answers a 5xx. What the
        client wraps as the cause tells, not its message: that quotes the whole query, whose type names include
        "Connection" and "NotFound" whatever happened."""
        from dagster_graphql import DagsterGraphQLClientError
        from gql.transport.exceptions import TransportConnectionFailed, TransportServerError
        from requests import RequestException

        try:
            return method(*args, **kwargs)
        except DagsterGraphQLClientError as error:
            cause = error.__cause__
            if isinstance(cause, TransportConnectionFailed | TransportServerError | RequestException | OSError):
                raise DagsterUnavailable(f"Dagster is not reachable at {self.url}") from error
            raise
        except OSError as error:
            raise DagsterUnavailable(f"Dagster is not reachable at {self.url}: {error}") from error
