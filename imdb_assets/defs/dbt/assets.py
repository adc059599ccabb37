"""The dbt models as one multi-asset step, downstream of the seven tables; their tests as asset checks.

A model's code version is dbt's checksum of its SQL together with its config and contract (`translator`), so editing
either marks it stale. The step rebuilds only the selected models that `staleness` finds stale or missing, in one
`dbt build` (which parses partially from the prepared manifest). Every selected check is evaluated by every run:
a check whose last result passed on the materialization its asset still has stands (the same data gives the same
result), reported again with the run it came from; the others are tested by `dbt test`. A run with nothing to
rebuild runs no dbt at all. The
incremental models rebuild only the keys the change log touched (`dbt_project/macros/change_log.sql`); one whose
code changed, or every one with the `full_refresh` config, is built whole. Before it builds, the step estimates the
disk its tables need and is refused, having built nothing, when the disk cannot hold them (`imdb_assets.disk`).
"""

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    Definitions,
    Output,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation
from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets

from imdb_assets import dbt, disk, settings
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.defs import metadata
from imdb_assets.defs.dbt import staleness
from imdb_assets.defs.dbt.project import project
from imdb_assets.defs.dbt.translator import TRANSLATOR, ephemeral_ancestors
from imdb_assets.defs.resources import DataStore, Warehouse

PARTIAL_PARSE = "partial_parse.msgpack"


class DbtBuildConfig(Config):
    force: bool = False
    """Rebuild every selected model, even those Dagster has as up to date."""
    full_refresh: bool = False
    """Build every selected model whole (dbt's --full-refresh), the incremental ones too: the same rows as their
    builds from the change log, computed from all of their inputs."""


def _build_args(excluded: list[str], rebuild: Mapping[AssetKey, staleness.Rebuild], full_refresh: bool) -> list[str]:
    """`dbt build`'s arguments: the models not rebuilt excluded; all built whole with ``full_refresh``, else those
    whose code changed (the var the change log's macros read)."""
    args = ["build", *(["--exclude", " ".join(excluded)] if excluded else [])]
    if full_refresh:
        return [*args, "--full-refresh"]
    whole = sorted(key.path[-1] for key, why in rebuild.items() if why.whole)
    return [*args, "--vars", json.dumps({"full_refresh_models": whole})] if whole else args


def _ephemeral_not_inlined(manifest: Mapping[str, Any], rebuilt: set[str]) -> list[str]:
    """The ephemeral models inlined into none of the models rebuilt: excluded like the up-to-date models, so that
    their unit tests run only when a model reading them is built."""
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    inlined = set().union(*(ephemeral_ancestors(manifest, m["unique_id"]) for m in models if m["name"] in rebuilt))
    return sorted(
        m["name"] for m in models if m["config"].get("materialized") == "ephemeral" and m["unique_id"] not in inlined
    )


def _existing_relations(warehouse: Warehouse, keys: list[AssetKey]) -> set[AssetKey]:
    names = [".".join(key.path) for key in keys]
    with warehouse.connect() as conn:
        found = conn.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL", (names,)
        ).fetchall()
    present = {name for (name,) in found}
    return {key for key in keys if ".".join(key.path) in present}


def _to_rebuild(context: AssetExecutionContext, warehouse: Warehouse) -> dict[AssetKey, staleness.Rebuild]:
    """The selected models that are stale or missing, parents first."""
    assets_def = context.assets_def
    selected = context.selected_asset_keys
    parents = {key: set(assets_def.asset_deps.get(key, ())) for key in selected}
    in_order = [key for key in TopologicalSorter(parents).static_order() if key in selected]
    existing = _existing_relations(warehouse, in_order)
    return staleness.rebuilds(
        context, in_order, assets_def.code_versions_by_key, parents, exists=lambda key: key in existing
    )


def _refuse_without_room(
    manifest: Mapping[str, Any], rebuild: Mapping[AssetKey, staleness.Rebuild], store: DataStore, warehouse: Warehouse
) -> None:
    """Refuse the step before it builds anything when the disk cannot hold the tables it rebuilds, each beside the
    one it replaces until dbt swaps them: a model's table at its current size, the tables of models never built
    together at the size of the imdb tables (at full scale the marts took about as much). Only on the embedded
    server: another server's disk is not the data folder's."""
    if not warehouse.embedded:
        return
    tables = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"].get("materialized") in ("table", "incremental")
    }
    rebuilt = [".".join(key.path) for key in rebuild if key.path[-1] in tables]
    if not rebuilt:
        return
    sources = [f"{SCHEMA}.{dataset.table}" for dataset in DATASETS]
    with warehouse.connect() as conn:
        sizes = {name: heap + indexes for name, (heap, indexes) in disk.relation_sizes(conn, rebuilt + sources).items()}
    need = {"rebuilt tables": sum(sizes[name] for name in rebuilt if name in sizes)}
    if any(name not in sizes for name in rebuilt):
        need["new tables"] = sum(sizes.get(name, 0) for name in sources)
    disk.refuse_without_room("the dbt step", need, store.folder, store.disk_safety_factor)


@contextmanager
def _dbt_environment(values: Mapping[str, str]) -> Iterator[None]:
    """dagster-dbt hands the step's environment to dbt and takes no other: the connection and the models' settings
    are set there for the invocations of one step, and put back after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_dbt_assets(dbt_project: DbtProject) -> AssetsDefinition:
    """The project's models as one multi-asset step, from the manifest `make prepare` wrote; refused when the
    project's files changed since (a run would build the models as they were)."""
    dbt.check_prepared(Path(dbt_project.project_dir))
    manifest = dbt.read_manifest(dbt_project.manifest_path)

    @dbt_assets(manifest=dbt_project.manifest_path, dagster_dbt_translator=TRANSLATOR)
    def imdb_dbt_models(
        context: AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        store: DataStore,
        warehouse: Warehouse,
    ):
        url = warehouse.url()
        if config.force or config.full_refresh:
            reason = "built whole by the run's config" if config.full_refresh else "forced by the run's config"
            rebuild = {key: staleness.Rebuild(reason) for key in context.selected_asset_keys}
        else:
            rebuild = _to_rebuild(context, warehouse)
        up_to_date = sorted(key.path[-1] for key in context.selected_asset_keys - rebuild.keys())
        for key, why in rebuild.items():
            context.log.info(f"Rebuilding {key.to_user_string()}: {why.reason}")
        if up_to_date:
            context.log.info(f"Up to date, not rebuilt: {', '.join(up_to_date)}")
        _refuse_without_room(manifest, rebuild, store, warehouse)
        evaluated: set[AssetCheckKey] = set()
        with _dbt_environment(_step_environment(url)):
            if rebuild:
                excluded = up_to_date + _ephemeral_not_inlined(manifest, {key.path[-1] for key in rebuild})
                invocation = dbt.cli(_build_args(excluded, rebuild, config.full_refresh), context=context)
                yield from _events(invocation, context, store, warehouse, rebuild, evaluated)
                _keep_partial_parse(invocation, dbt_project)
            for check_key, result in _standing_results(context, context.selected_asset_check_keys - evaluated).items():
                evaluated.add(check_key)
                yield result
            if context.selected_asset_check_keys - evaluated:
                # The selected tests not run by the build and without a standing result; unit tests test the SQL
                # of rebuilt models only.
                done = sorted(key.name for key in evaluated)
                invocation = dbt.cli(
                    ["test", "--exclude", " ".join(["resource_type:unit_test", *done])], context=context
                )
                yield from _events(invocation, context, store, warehouse, rebuild, evaluated)
                _keep_partial_parse(invocation, dbt_project)

    return imdb_dbt_models


def _standing_results(
    context: AssetExecutionContext, keys: AbstractSet[AssetCheckKey]
) -> dict[AssetCheckKey, AssetCheckResult]:
    """The checks of ``keys`` whose last evaluation passed on the materialization their asset still has: that
    result again, naming the run it came from. A failed check, or one whose asset changed since, is not among them."""
    instance = context.instance
    standing = {}
    for key in sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        )
        if not history or history[0].event is None or history[0].event.dagster_event is None:
            continue
        last = history[0]
        evaluation = last.event.dagster_event.event_specific_data
        if not isinstance(evaluation, AssetCheckEvaluation) or not evaluation.passed:
            continue
        materialized = instance.fetch_materializations(key.asset_key, limit=1).records
        target = evaluation.target_materialization_data
        if not materialized or target is None or target.storage_id != materialized[0].storage_id:
            continue
        standing[key] = AssetCheckResult(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=True,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata={**evaluation.metadata, "result_of_run": last.run_id},
        )
    return standing


def _step_environment(url: str) -> dict[str, str]:
    return dbt.environment(settings.load(), url)


imdb_dbt_models = build_dbt_assets(project)

defs = Definitions(assets=[imdb_dbt_models])


def _keep_partial_parse(invocation: DbtCliInvocation, dbt_project: DbtProject) -> None:
    """Keep what dbt parsed against this database's profile where dagster-dbt copies the next invocation's partial
    parse from: a parse at install time used another profile (dbt reparses everything when its connection
    settings differ), so without this every build would parse the whole project again."""
    parsed = invocation.target_path / PARTIAL_PARSE
    if parsed.exists():
        kept = Path(dbt_project.project_dir, dbt_project.target_path, PARTIAL_PARSE)
        partial = kept.with_name(f".{PARTIAL_PARSE}.{os.getpid()}")
        shutil.copyfile(parsed, partial)
        os.replace(partial, kept)


def _events(
    invocation: DbtCliInvocation,
    context: AssetExecutionContext,
    store: DataStore,
    warehouse: Warehouse,
    rebuild: Mapping[AssetKey, staleness.Rebuild],
    evaluated: set[AssetCheckKey],
) -> Iterator[Any]:
    """dagster-dbt's events, each model's output given why it was rebuilt, the rows its statement wrote and the
    relation's size and first rows as built (the asset key is the relation's `schema.name`, see the translator) and
    the data folder's total then; each check evaluated is added to ``evaluated``."""
    for message in invocation.stream_raw_events():
        for event in message.to_default_asset_events(
            manifest=invocation.manifest,
            dagster_dbt_translator=invocation.dagster_dbt_translator,
            context=context,
            target_path=invocation.target_path,
        ):
            if isinstance(event, AssetCheckResult) and event.asset_key and event.check_name:
                evaluated.add(AssetCheckKey(event.asset_key, event.check_name))
            if isinstance(event, Output):
                key = context.asset_key_for_output(event.output_name)
                why = rebuild.get(key)
                event = event.with_metadata(
                    {
                        **event.metadata,
                        **({"rebuilt_because": why.reason} if why else {}),
                        **_run_metadata(message.raw_event.get("data", {})),
                        **metadata.relation_metadata(warehouse, ".".join(key.path)),
                        **metadata.data_folder_metadata(store.root),
                    }
                )
            yield event


def _run_metadata(result: Mapping[str, Any]) -> dict[str, Any]:
    """Rows from PostgreSQL's command tag in dbt's model result: `SELECT 1234` for a table built, none for a view
    (dagster-dbt already adds the execution duration)."""
    tag = re.fullmatch(r"(SELECT|INSERT 0|UPDATE|DELETE|MERGE) (\d+)", str(result.get("status", "")))
    if not tag:
        return {}
    rows = int(tag.group(2))
    return {"rows_affected": rows, "dagster/row_count": rows}
