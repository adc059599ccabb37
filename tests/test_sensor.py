"""The release sensor: tick evaluations against the real HTTP mirror, and `dagster dev` reacting to a new file."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import AssetKey, build_sensor_context

from imdb_assets import settings
from imdb_assets.catalog import DATASETS, Dataset
from imdb_assets.definitions import defs
from imdb_assets.defs.files import sensor as sensors
from imdb_assets.defs.files.keys import parsed_key, raw_key, table_key
from imdb_assets.defs.files.sensor import imdb_release_sensor
from imdb_assets.defs.resources import ImdbSource
from imdb_dev.generator import generate
from tests.conftest import BASICS, RATINGS, Platform
from tests.dagster_dev import ENDED, REPO, DagsterDev, fresh_home, platform_env
from tests.test_pipeline import assert_table_matches_file

LAYERS = (raw_key, parsed_key, table_key)
FILE_KEYS = {layer(d) for d in DATASETS for layer in LAYERS}
GRAPH = defs.resolve_asset_graph()


def tick(platform: Platform, cursor: str | None = None, base_url: str | None = None, timeout: float = 10.0):
    """One evaluation, as the daemon runs it: on the platform's instance, against its mirror (or ``base_url``)."""
    source = ImdbSource(base_url=base_url or platform.resources["source"].base_url, timeout_seconds=timeout)
    context = build_sensor_context(
        instance=platform.instance, cursor=cursor, definitions=defs, resources={"source": source}
    )
    return imdb_release_sensor.evaluate_tick(context)


def assert_refreshes_exactly(keys, *datasets: Dataset) -> None:
    """The run covers these files' three assets and no other file's, and everything downstream of them (dbt too)."""
    selected = set(keys)
    assert selected & FILE_KEYS == {layer(d) for d in datasets for layer in LAYERS}
    changed_raw = {raw_key(d) for d in datasets}
    for key in selected:
        assert GRAPH.get(key).child_keys <= selected, f"{key.to_user_string()}: a child is left out"
        if key not in changed_raw:
            assert GRAPH.get(key).parent_keys & selected, f"{key.to_user_string()} does not depend on a change"


def new_release(mirror_dir: Path, tmp_path: Path, dataset: Dataset, seed: int) -> None:
    generate(tmp_path / f"release{seed}", 30_000, seed=seed, only=[dataset.file_stem])
    shutil.copy(tmp_path / f"release{seed}" / dataset.file_name, mirror_dir / dataset.file_name)


# Tick evaluation


def test_files_never_downloaded_count_as_changed(platform):
    result = tick(platform)
    [request] = result.run_requests
    assert_refreshes_exactly(request.asset_selection, *DATASETS)
    assert request.tags["dagster/max_retries"] == "2"
    assert sorted(json.loads(result.cursor)) == sorted(d.file_stem for d in DATASETS)


def test_nothing_changed_skips_after_one_head_per_file(platform, mirror):
    platform.refresh(layers=(raw_key,))
    mirror.requests.clear()
    result = tick(platform)
    assert result.run_requests == []
    assert result.skip_message == f"no new release at {mirror.base_url}"
    assert sorted(mirror.requests) == sorted(("HEAD", f"/{d.file_name}", 200) for d in DATASETS)


def test_a_new_file_is_requested_once_and_only_with_what_depends_on_it(platform, mirror, mirror_dir, tmp_path):
    platform.refresh(layers=(raw_key,))
    new_release(mirror_dir, tmp_path, RATINGS, seed=99)

    first = tick(platform, cursor='{"name.basics": "an older request"}')
    [request] = first.run_requests
    assert_refreshes_exactly(request.asset_selection, RATINGS)
    assert request.run_key.startswith("title.ratings ")

    # Until the run downloads it, later ticks do not ask again; without the cursor, the same run key lets the
    # daemon drop the repeated request.
    again = tick(platform, cursor=first.cursor)
    assert again.run_requests == []
    assert again.skip_message.endswith("its run is queued, running or failed: title.ratings.tsv.gz")
    assert [r.run_key for r in tick(platform).run_requests] == [request.run_key]

    # Another file changing meanwhile gets a run of its own; the pending one is not requested twice.
    new_release(mirror_dir, tmp_path, BASICS, seed=98)
    second = tick(platform, cursor=again.cursor)
    [request] = second.run_requests
    assert_refreshes_exactly(request.asset_selection, BASICS)
    assert json.loads(second.cursor)["name.basics"] == "an older request"

    platform.refresh(RATINGS, BASICS)
    assert tick(platform, cursor=second.cursor).skip_message == f"no new release at {mirror.base_url}"
    assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)


def test_file_urls_compare_size_and_mtime(platform, mirror_dir, tmp_path):
    file_url = mirror_dir.as_uri() + "/"
    assert len(tick(platform, base_url=file_url).run_requests) == 1
    platform.resources["source"] = ImdbSource(base_url=file_url)
    platform.refresh(layers=(raw_key,))
    assert tick(platform, base_url=file_url).run_requests == []

    new_release(mirror_dir, tmp_path, RATINGS, seed=97)
    [request] = tick(platform, base_url=file_url).run_requests
    assert_refreshes_exactly(request.asset_selection, RATINGS)

    (mirror_dir / BASICS.file_name).unlink()
    skipped = tick(platform, base_url=file_url)
    assert skipped.run_requests == []
    assert "could not check title.basics.tsv.gz" in skipped.skip_message
    assert "No such file or directory" in skipped.skip_message


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: requests to it time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_server_down_skips_naming_the_file_and_the_error(platform, mirror):
    platform.refresh(layers=(raw_key,))
    cursor = '{"title.ratings": "v1"}'
    mirror.stop()
    result = tick(platform, cursor=cursor)
    assert result.run_requests == [] and result.cursor == cursor
    names = ", ".join(d.file_name for d in DATASETS)
    assert result.skip_message.startswith(f"could not check {names}, the next tick tries again: ")
    for dataset in DATASETS:
        assert f"{mirror.base_url}{dataset.file_name}: ConnectError" in result.skip_message


def test_timeout_skips_naming_the_file_and_the_error(platform, silent_port):
    started = time.monotonic()
    result = tick(platform, base_url=f"http://127.0.0.1:{silent_port}/", timeout=0.5)
    assert time.monotonic() - started < 5, "one timeout ends the tick"
    assert result.run_requests == []
    assert "could not check name.basics.tsv.gz" in result.skip_message
    assert "ReadTimeout" in result.skip_message


def test_slow_heads_are_waited_for_side_by_side_within_the_tick_s_bound(platform, mirror):
    """Every HEAD answered only after 20 s: one after the other they would take 7 x 10 s, past Dagster's 60 s."""
    mirror.head_delay = 20
    started = time.monotonic()
    result = tick(platform, timeout=10)
    assert time.monotonic() - started < 15
    assert result.run_requests == []
    names = ", ".join(d.file_name for d in DATASETS)
    assert result.skip_message.startswith(f"could not check {names}, the next tick tries again: ")
    assert result.skip_message.count("ReadTimeout") == len(DATASETS)


def test_checks_still_running_at_the_deadline_are_named(platform, mirror, monkeypatch):
    monkeypatch.setattr(sensors, "TICK_DEADLINE_SECONDS", 1.0)
    mirror.head_delay = 5  # under the 10 s request timeout, over the whole tick's deadline
    started = time.monotonic()
    result = tick(platform, timeout=10)
    assert time.monotonic() - started < 3
    assert result.run_requests == []
    for dataset in DATASETS:
        assert f"{mirror.base_url}{dataset.file_name}: no answer within 1 s" in result.skip_message


def test_a_server_refusing_head_is_asked_for_one_byte(platform, mirror, mirror_dir, tmp_path):
    platform.refresh(layers=(raw_key,))
    mirror.refuse_head = True
    mirror.requests.clear()
    assert tick(platform).skip_message == f"no new release at {mirror.base_url}"
    # Each file: HEAD refused, then the first byte only (the mirror would send the whole file with a 200).
    assert sorted(mirror.requests) == sorted(
        (method, f"/{d.file_name}", status) for d in DATASETS for method, status in (("HEAD", 405), ("GET", 206))
    )

    new_release(mirror_dir, tmp_path, RATINGS, seed=95)
    [request] = tick(platform).run_requests
    assert_refreshes_exactly(request.asset_selection, RATINGS)


def test_5xx_skips_naming_the_file_and_the_next_tick_tries_again(platform, mirror, mirror_dir, tmp_path):
    platform.refresh(layers=(raw_key,))
    new_release(mirror_dir, tmp_path, RATINGS, seed=96)
    mirror.broken[RATINGS.file_name] = 503
    result = tick(platform)
    assert result.run_requests == [] and result.cursor is None
    url = f"{mirror.base_url}{RATINGS.file_name}"
    assert result.skip_message == f"could not check {RATINGS.file_name}, the next tick tries again: {url}: HTTP 503"
    del mirror.broken[RATINGS.file_name]
    [request] = tick(platform).run_requests
    assert_refreshes_exactly(request.asset_selection, RATINGS)


def test_off_and_hourly_by_default_on_in_docker_compose(monkeypatch):
    monkeypatch.delenv("IMDB_SENSOR_DEFAULT_STATUS", raising=False)
    monkeypatch.delenv("IMDB_SENSOR_INTERVAL_SECONDS", raising=False)
    assert not settings.load().sensor_running_by_default
    assert settings.load().sensor_interval_seconds == 3600
    monkeypatch.setenv("IMDB_SENSOR_DEFAULT_STATUS", "running")
    assert settings.load().sensor_running_by_default
    monkeypatch.setenv("IMDB_SENSOR_DEFAULT_STATUS", "on")
    with pytest.raises(settings.SettingsError, match=r"IMDB_SENSOR_DEFAULT_STATUS='on': .*'running' or 'stopped'"):
        settings.load()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = compose["services"]["imdb_code"]["environment"]
    assert env["IMDB_SENSOR_DEFAULT_STATUS"] == "${IMDB_SENSOR_DEFAULT_STATUS:-running}"
    assert env["IMDB_SENSOR_INTERVAL_SECONDS"] == "${IMDB_SENSOR_INTERVAL_SECONDS:-3600}"


# End to end: `dagster dev` (webserver and daemon) on the embedded PostgreSQL, the sensor on, the mirror changes.

SENSOR_SELECTOR = {
    "repositoryLocationName": "imdb_assets",
    "repositoryName": "__repository__",
    "sensorName": imdb_release_sensor.name,
}
SENSOR_TAGS = {"dagster/sensor_name": imdb_release_sensor.name}
TICKS_QUERY = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { status ticks(limit: 20) { status timestamp skipReason runIds error { message } } } }
  }
}"""


def ticks(dev: DagsterDev) -> list[dict]:
    return dev.graphql(TICKS_QUERY, selector=SENSOR_SELECTOR)["sensorOrError"]["sensorState"]["ticks"]


def recent_ticks(dev: DagsterDev) -> str:
    """The sensor's last ticks: what a failure message needs besides the log."""
    try:
        return "Sensor ticks, newest first:\n" + "\n".join(str(t) for t in ticks(dev)[:10])
    except (httpx.HTTPError, AssertionError) as error:
        return f"Sensor ticks unavailable: {error}"


def ended_run(dev: DagsterDev, number: int, status: str = "SUCCESS") -> dict | None:
    """The sensor's ``number``-th run once it ended; fails the test as soon as it ends with another ``status``."""
    runs = dev.runs(SENSOR_TAGS)
    if len(runs) < number or runs[number - 1]["status"] not in ENDED:
        return None
    run = runs[number - 1]
    assert run["status"] == status, f"run {run['runId']} ended {run['status']}\n{dev.tail()}"
    return run


def selection(run: dict) -> set[AssetKey]:
    return {AssetKey(key["path"]) for key in run["assetSelection"]}


@pytest.mark.timeout(1800)
def test_dagster_dev_refreshes_a_changed_file_on_its_own(mirror, mirror_dir, db_url, tmp_path):
    env = platform_env(
        fresh_home(tmp_path, "dagster_sensor_end_to_end"),
        DATABASE_URL=db_url,
        IMDB_BASE_URL=mirror.base_url,
        IMDB_DATA_DIR=str(tmp_path / "data"),
        IMDB_MAX_REJECT_FRACTION="0.05",
        IMDB_SENSOR_DEFAULT_STATUS="running",
        IMDB_SENSOR_INTERVAL_SECONDS="5",
    )
    dev = DagsterDev(env, tmp_path)
    dev.context = lambda: recent_ticks(dev)
    try:
        # The first tick finds no raw asset ever materialized: every file is new.
        first = dev.wait_for("first refresh", lambda: ended_run(dev, 1), timeout=900)
        assert_refreshes_exactly(selection(first), *DATASETS)

        new_release(mirror_dir, tmp_path, RATINGS, seed=99)
        second = dev.wait_for("refresh of the new title.ratings", lambda: ended_run(dev, 2), timeout=600)
        assert_refreshes_exactly(selection(second), RATINGS)
        platform = Platform(mirror.base_url, tmp_path / "data", db_url)
        assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)

        # A refresh whose download keeps failing fails; the daemon retries it (dagster.yaml), the sensor does not.
        mirror.fail_next(*["500"] * 5)  # all five attempts of the download
        new_release(mirror_dir, tmp_path, RATINGS, seed=98)
        failed = dev.wait_for("failed refresh", lambda: ended_run(dev, 3, "FAILURE"), timeout=600)
        retry = dev.wait_for("its retry", lambda: ended_run(dev, 4), timeout=600)
        assert retry["parentRunId"] == failed["runId"]
        assert_refreshes_exactly(selection(failed), RATINGS)
        assert mirror.gets(RATINGS.file_name)[-6:] == [500] * 5 + [200]
        assert_table_matches_file(platform, RATINGS, mirror_dir / RATINGS.file_name)

        # The ticks after it find the release in place and request nothing more.
        def tick_after_retry():
            later = [t for t in ticks(dev) if t["timestamp"] > retry["endTime"] and t["status"] == "SKIPPED"]
            return later[-1] if later else None

        settled = dev.wait_for("a tick after the retry", tick_after_retry, timeout=120)
        assert settled["skipReason"] == f"no new release at {mirror.base_url}"
        assert len(dev.runs(SENSOR_TAGS)) == 4
    finally:
        dev.stop()
