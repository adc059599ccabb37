"""`imdb_refresh`, the one job, and the executor every run's steps share."""

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

imdb_refresh = define_asset_job(
    "imdb_refresh",
    selection=AssetSelection.all(),
    description="Refresh every IMDb file that changed, then the dbt models that are stale or missing.",
)

# One process runs the steps one after another: a file's step already keeps both cores busy (Polars parses on every
# core, the load runs one connection per core), and a refresh with little to do pays no process start per step.
defs = Definitions(jobs=[imdb_refresh], executor=in_process_executor)
