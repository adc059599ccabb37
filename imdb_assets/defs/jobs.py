"""`imdb_refresh`, the one job, and the executor every run's steps share."""

from dagster import AssetSelection, Definitions, ExecutorDefinition, define_asset_job, in_process_executor

from imdb_assets import settings
from imdb_assets.defs.executor import isolated_process_executor

imdb_refresh = define_asset_job(
    "imdb_refresh",
    selection=AssetSelection.all(),
    description="Refresh every IMDb file that changed, then the dbt models that are stale or missing.",
)


def step_executor(name: str) -> ExecutorDefinition:
    """The executor `IMDB_STEP_EXECUTOR` names.

    `in_process`: one process runs the steps one after another; a file's step already keeps both cores busy (Polars
    parses on every core, the load runs one connection per core), and a refresh with little to do pays no process
    start per step. `process`: each step a process of its own in an empty working and temporary directory
    (`imdb_assets.defs.executor`), the isolation of pods on one machine. `k8s`: each step is a Kubernetes Job of its
    own (`dagster_k8s.k8s_job_executor`), in the image, environment, Secrets and volumes the code location gives its
    runs under Dagster's Helm chart.
    """
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # the Kubernetes client, which only a cluster needs

        return k8s_job_executor
    if name == "process":
        return isolated_process_executor
    return in_process_executor


defs = Definitions(jobs=[imdb_refresh], executor=step_executor(settings.load().step_executor))
