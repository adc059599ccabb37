"""The release sensor: notices a new IMDb release on its own and refreshes exactly the files that changed.

IMDb publishes no schedule, so each tick asks for every file's current version (one HEAD per file, all at once, a
ranged GET where HEAD is refused; size and mtime for file://) and compares it with the version the last
materialization of the file's raw asset recorded. The files that changed go into one run of their raw assets and
everything downstream of them (frames, tables, dbt models), so unchanged files are not touched and a layer added
downstream is included without editing this module.

The same upstream version never triggers two runs: the cursor remembers the version last requested for each file
(so a tick during a long refresh does not request it again, and restarts keep that memory), and the run key is made
of the versions, so Dagster drops a repeated request even if the cursor is reset. A run that fails is retried by
Dagster's run retries (`dagster.yaml`), not by a later tick: the next release, or a re-execution, refreshes it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, wait

import httpx
from dagster import (
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from imdb_assets import download, settings
from imdb_assets.catalog import DATASETS, Dataset
from imdb_assets.defs.files.keys import VERSION_KEY, raw_key
from imdb_assets.defs.resources import ImdbSource

# A tick must end well inside Dagster's 60 s limit on a sensor evaluation: the files are checked side by side, each
# request waits at most HEAD_TIMEOUT_SECONDS, and all of them together at most TICK_DEADLINE_SECONDS.
HEAD_TIMEOUT_SECONDS = 10.0
TICK_DEADLINE_SECONDS = 30.0
# Dagster's run retries (enabled in dagster.yaml) re-execute a failed refresh from the failed step, this often; the
# concurrency tag (limited to one run in dagster.yaml) queues a release's refresh behind the previous one, so two runs
# never rebuild the same downstream models at once.
RUN_TAGS = {"dagster/max_retries": "2", "imdb/refresh": "release"}


def recorded_version(instance: DagsterInstance, dataset: Dataset) -> str | None:
    """The upstream version the raw asset last downloaded; None if it never materialized (counts as changed)."""
    event = instance.get_latest_materialization_event(raw_key(dataset))
    entry = event.asset_materialization.metadata.get(VERSION_KEY) if event and event.asset_materialization else None
    # Written as text (assets.py); any other value is no version.
    return entry.value if entry and isinstance(entry.value, str) else None


# The interval and the default status are read from the settings when the code loads, not through a resource:
# Dagster takes them from the sensor's definition, before any resource exists.
SETTINGS = settings.load()


@sensor(
    job_name="imdb_refresh",
    minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
    default_status=DefaultSensorStatus.RUNNING if SETTINGS.sensor_running_by_default else DefaultSensorStatus.STOPPED,
    description="Checks IMDB_BASE_URL for a new release (a HEAD per file) and refreshes the files that changed.",
)
def imdb_release_sensor(context: SensorEvaluationContext, source: ImdbSource) -> SensorResult | SkipReason:
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    versions, failures = remote_versions(source)
    if failures:
        # One failure is enough: the server is down or in trouble, and the next tick asks again.
        names = ", ".join(d.file_name for d in failures)
        return SkipReason(f"could not check {names}, the next tick tries again: {'; '.join(failures.values())}")
    changed: dict[Dataset, tuple[str | None, str]] = {}
    awaited: list[str] = []
    for dataset, remote in versions.items():
        recorded = recorded_version(context.instance, dataset)
        if remote == recorded:
            continue
        if requested.get(dataset.file_stem) == remote:
            awaited.append(dataset.file_name)
        else:
            changed[dataset] = (recorded, remote)
    if not changed:
        waiting = f"; requested earlier, its run is queued, running or failed: {', '.join(awaited)}" if awaited else ""
        return SkipReason(f"no new release at {source.base_url}{waiting}")

    if context.repository_def is None:
        raise RuntimeError("the sensor needs its definitions to select what is downstream of the changed files")
    selection = AssetSelection.assets(*(raw_key(d) for d in changed)).downstream()
    keys = sorted(selection.resolve(context.repository_def.asset_graph), key=lambda key: key.to_user_string())
    run_key = ", ".join(f"{d.file_stem} {old or 'none'} -> {new}" for d, (old, new) in changed.items())
    context.log.info(f"new release of {', '.join(d.file_name for d in changed)}: requesting {len(keys)} assets")
    return SensorResult(
        run_requests=[RunRequest(run_key=run_key, asset_selection=keys, tags=RUN_TAGS)],
        cursor=json.dumps(requested | {d.file_stem: new for d, (_, new) in changed.items()}, sort_keys=True),
    )


def remote_versions(source: ImdbSource) -> tuple[dict[Dataset, str], dict[Dataset, str]]:
    """Every file's current version, asked for side by side, and what went wrong for the files it could not get
    (in catalog order). A check still running at the deadline is abandoned: its thread ends at its own timeout."""
    timeout = min(source.timeout_seconds, HEAD_TIMEOUT_SECONDS)
    pool = ThreadPoolExecutor(len(DATASETS), thread_name_prefix="imdb-sensor")
    with httpx.Client(follow_redirects=True, timeout=timeout) as client:
        checks = {d: pool.submit(download.remote_version, source.url(d), client) for d in DATASETS}
        wait(checks.values(), timeout=TICK_DEADLINE_SECONDS)
        pool.shutdown(wait=False, cancel_futures=True)
    versions, failures = {}, {}
    for dataset, check in checks.items():
        url = source.url(dataset)
        if not check.done():
            failures[dataset] = f"{url}: no answer within {TICK_DEADLINE_SECONDS:g} s"
        elif isinstance(error := check.exception(), download.DownloadError | download.TransientDownloadError):
            failures[dataset] = str(error)  # already names the URL and the status
        elif error is not None:
            if not isinstance(error, httpx.HTTPError | OSError):
                raise error
            failures[dataset] = f"{url}: {type(error).__name__}: {error or 'no detail'}"
        else:
            versions[dataset] = check.result().key()
    return versions, failures


defs = Definitions(sensors=[imdb_release_sensor])
