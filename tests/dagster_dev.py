"""`dagster dev` (webserver and daemon) as `make dev` runs it, on a fresh instance, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
ENDED = {"SUCCESS", "FAILURE", "CANCELED"}
RUNS_QUERY = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId parentRunId status endTime assetSelection { path } } }
  }
}"""


def fresh_home(tmp_path: Path, storage_database: str) -> Path:
    """A DAGSTER_HOME with the repo's dagster.yaml, Dagster's storage in a database of the test's own: other tests'
    runs on the session's server must not count as this instance's history."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (REPO / "dagster.yaml").read_text()
    assert "database: dagster\n" in config
    (home / "dagster.yaml").write_text(config.replace("database: dagster\n", f"database: {storage_database}\n"))
    return home


def clean_env() -> dict[str, str]:
    """This process's environment without the platform's settings: a subprocess sees only what a test gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("IMDB_", "DATABASE_URL", "DAGSTER_HOME"))}


def platform_env(home: Path, **settings: str) -> dict[str, str]:
    """`clean_env()` plus ``settings`` and DAGSTER_HOME."""
    return clean_env() | {"DAGSTER_HOME": str(home)} | settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterDev:
    """`dagster dev` in a process group of its own, talking to the test over GraphQL."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "dagster-dev.log"
        self.context: Callable[[], str] = lambda: ""
        """More for a failure message than the log's tail (the sensor test adds its ticks)."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [DAGSTER, "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def graphql(self, query: str, **variables) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self, tags: dict[str, str] | None = None) -> list[dict]:
        """Runs (with these tags, if given), oldest first."""
        run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return self.graphql(RUNS_QUERY, filter=run_filter)["runsOrError"]["results"][::-1]

    def run(self, run_id: str) -> dict:
        return next(r for r in self.runs() if r["runId"] == run_id)

    def wait_for(self, what: str, check, timeout: float):
        """Poll ``check`` until it returns something; fail with the log's tail if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster dev exited with {self.process.returncode}\n{self.tail()}"
            try:
                found = check()
            except httpx.HTTPError:  # the webserver is still starting
                found = None
            if found:
                return found
            time.sleep(1)
        pytest.fail(f"no {what} within {timeout:.0f}s\n{self.tail()}")

    def wait_for_run(self, run_id: str, status: str = "SUCCESS", timeout: float = 600) -> dict:
        """The run once it ended; fails the test as soon as it ends otherwise than with ``status``."""

        def ended():
            run = self.run(run_id)
            if run["status"] not in ENDED:
                return None
            assert run["status"] == status, f"run {run_id} ended {run['status']}\n{self.tail()}"
            return run

        return self.wait_for(f"end of run {run_id}", ended, timeout)

    def tail(self, chars: int = 6000) -> str:
        output = self.log.read_text(errors="replace")[-chars:]
        return f"{self.context()}\ndagster dev output, last lines:\n{output}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
