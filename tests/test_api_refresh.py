"""`POST /v1/refresh` end to end, apart from tests/test_api.py (so that the two run side by side): a real `dagster
dev` runs the refresh the operator launched while readers keep reading."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.api_server import ApiServer, new_key
from tests.conftest import Platform
from tests.dagster_dev import DagsterDev, fresh_home, platform_env
from tests.imdb_files import write_files
from tests.mirror_server import MirrorServer
from tests.test_api import api_env
from tests.world import WORLD


@pytest.mark.timeout(1200)
def test_the_refresh_endpoint_runs_imdb_refresh_while_clients_keep_reading(db_url: str, tmp_path: Path) -> None:
    """A real `dagster dev`: the operator's POST launches imdb_refresh, its status reaches SUCCESS, and readers
    hammering the API meanwhile always get a right answer, the old rating or the new one, never an error."""
    world = {name: [dict(row) for row in rows] for name, rows in WORLD.items()}
    mirror_dir = write_files(tmp_path / "mirror", world)
    mirror = MirrorServer(mirror_dir)
    platform = Platform(mirror.base_url, tmp_path / "data", db_url)
    platform.refresh(models=True)
    world["title.ratings"][0]["average_rating"] = "8.3"  # tt0000001's new rating in the next release
    write_files(mirror_dir, world)
    env = platform_env(
        fresh_home(tmp_path, "dagster_api_end_to_end"),
        DATABASE_URL=db_url,
        IMDB_BASE_URL=mirror.base_url,
        IMDB_DATA_DIR=str(tmp_path / "data"),
    )
    dev = DagsterDev(env, tmp_path)
    api = None
    try:
        dev.wait_for("the webserver", lambda: dev.graphql("{ version }"), timeout=300)
        api = ApiServer(
            api_env(db_url, tmp_path / "data", IMDB_DAGSTER_URL=dev.url, IMDB_API_RATE_LIMIT="100000/minute"), tmp_path
        )
        answers: list[tuple[int, float | None]] = []
        done = threading.Event()

        def read() -> None:
            with api.client(new_key(db_url, "reader")) as client:
                while not done.is_set():
                    response = client.get("/v1/titles/tt0000001")
                    rating = response.json().get("rating") if response.status_code == 200 else None
                    answers.append((response.status_code, rating and rating["average"]))
                    client.get("/v1/search/titles", params={"q": "twin"}).raise_for_status()
                    time.sleep(0.01)  # steady traffic through the swap, leaving the CPU to the run

        readers = [threading.Thread(target=read) for _ in range(2)]
        for thread in readers:
            thread.start()
        with api.client(new_key(db_url, "operator")) as operator:
            launched = operator.post("/v1/refresh", json={"files": ["title.ratings"]})
            assert launched.status_code == 202, launched.text
            run_id = launched.json()["run_id"]
            dev.wait_for_run(run_id, "SUCCESS", timeout=900)
            assert operator.get(f"/v1/runs/{run_id}").json() == {"run_id": run_id, "status": "SUCCESS"}
            assert operator.get("/v1/runs/00000000-0000-0000-0000-000000000000").status_code == 404
        done.set()
        for thread in readers:
            thread.join(timeout=60)
        assert answers and {status for status, _ in answers} == {200}
        assert {rating for _, rating in answers} <= {8.1, 8.3}
        with api.client(new_key(db_url, "reader")) as client:
            assert client.get("/v1/titles/tt0000001").json()["rating"] == {"average": 8.3, "votes": 50000}
        run = dev.run(run_id)
        selected = {"/".join(key["path"]) for key in run["assetSelection"]}
        # The file's layers and what reads them, as the release sensor selects; not the models of other files.
        assert {"raw/title_ratings", "imdb/title_ratings", "imdb_marts/titles"} <= selected
        assert not {"imdb_marts/people", "imdb_marts/name_search", "raw/title_basics"} & selected
    finally:
        if api:
            api.stop()
        dev.stop()
        mirror.stop()
