"""The dbt models as Dagster assets downstream of the seven tables, their tests as asset checks.

A model's code version is dbt's checksum of its SQL together with its config and contract, so editing either
marks it stale. The dbt step rebuilds only the selected models that `imdb_assets.staleness` finds stale or missing,
in one `dbt build` (which parses partially from the manifest `make prepare` wrote), and none at all when every one
is up to date.

    uv run python -m imdb_assets.dbt build --select marts    # dbt by hand, against the platform's database
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import psycopg
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, AssetSpec, Config, Output
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets
from psycopg.conninfo import conninfo_to_dict

from imdb_assets import metadata, settings, staleness
from imdb_assets.catalog import SCHEMA
from imdb_assets.dbt_project import project
from imdb_assets.resources import Warehouse


def dbt_environment(database_url: str) -> dict[str, str]:
    """The `IMDB_DBT_*` variables `dbt_project/profiles.yml` reads, from a libpq URL (Unix-socket hosts work)."""
    parts = {name: str(value) for name, value in conninfo_to_dict(database_url).items()}  # from a URL, all text
    values = {
        "IMDB_DBT_HOST": parts.get("host") or "localhost",
        "IMDB_DBT_PORT": str(parts.get("port") or 5432),
        "IMDB_DBT_USER": parts.get("user") or "postgres",
        "IMDB_DBT_PASSWORD": parts.get("password") or "",
        "IMDB_DBT_DBNAME": parts.get("dbname") or "postgres",
    }
    if parts.get("sslmode"):
        values["IMDB_DBT_SSLMODE"] = parts["sslmode"]
    return values


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """dagster-dbt hands `os.environ` to the dbt process; set the connection there for one invocation."""
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


class ImdbDbtTranslator(DagsterDbtTranslator):
    """Sources are the table assets (`imdb/<table>`); models are keyed by the schema they land in, grouped by
    their folder (staging, intermediate, marts), versioned by their SQL, config and contract, together with those
    of the ephemeral models they read."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> AssetSpec:
        # An ephemeral model is no asset: its SQL is inlined into the models that read it, so an edit to it must
        # change their code version, or Dagster would keep them as up to date.
        spec = super().get_asset_spec(manifest, unique_id, project)
        inlined = sorted(_ephemeral_ancestors(manifest, unique_id))
        if spec.code_version is None or not inlined:
            return spec
        versions = [spec.code_version, *(self.get_code_version(manifest["nodes"][node]) or "" for node in inlined)]
        return spec.replace_attributes(code_version=hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16])

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([SCHEMA, dbt_resource_props["name"]])
        return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else super().get_group_name(dbt_resource_props)

    def get_code_version(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        checksum = dbt_resource_props.get("checksum", {}).get("checksum")
        if checksum is None:
            return None
        settings_of = {"config": dbt_resource_props.get("config"), "contract": dbt_resource_props.get("contract")}
        digest = hashlib.sha256(checksum.encode() + json.dumps(settings_of, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


def _ephemeral_ancestors(manifest: Mapping[str, Any], unique_id: str) -> set[str]:
    """The ephemeral models a node reads, directly or through other ephemeral models."""
    found: set[str] = set()
    queue = list(manifest["nodes"].get(unique_id, {}).get("depends_on", {}).get("nodes", []))
    while queue:
        parent = manifest["nodes"].get(queue.pop())
        if parent and parent["config"].get("materialized") == "ephemeral" and parent["unique_id"] not in found:
            found.add(parent["unique_id"])
            queue.extend(parent.get("depends_on", {}).get("nodes", []))
    return found


def _ephemeral_not_inlined(manifest: Mapping[str, Any], rebuilt: set[str]) -> list[str]:
    """The ephemeral models inlined into none of the models rebuilt: excluded like the up-to-date models, so that
    their unit tests run only when a model reading them is built."""
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    inlined = set().union(*(_ephemeral_ancestors(manifest, m["unique_id"]) for m in models if m["name"] in rebuilt))
    return sorted(
        m["name"] for m in models if m["config"].get("materialized") == "ephemeral" and m["unique_id"] not in inlined
    )


TRANSLATOR = ImdbDbtTranslator()
PARTIAL_PARSE = "partial_parse.msgpack"


class DbtBuildConfig(Config):
    force: bool = False
    """Rebuild every selected model, even those Dagster has as up to date."""


def marts(dbt_project: DbtProject = project) -> list[str]:
    """`schema.name` of every model under `models/marts`, in the manifest's order."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return [
        f"{node['schema']}.{node['name']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == "marts"
    ]


def _existing_relations(url: str, keys: list[AssetKey]) -> set[AssetKey]:
    names = [".".join(key.path) for key in keys]
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL", (names,)
        ).fetchall()
    present = {name for (name,) in found}
    return {key for key in keys if ".".join(key.path) in present}


def _to_rebuild(context: AssetExecutionContext, url: str) -> dict[AssetKey, staleness.Rebuild]:
    """The selected models that are stale or missing, parents first."""
    assets_def = context.assets_def
    selected = context.selected_asset_keys
    parents = {key: set(assets_def.asset_deps.get(key, ())) for key in selected}
    in_order = [key for key in TopologicalSorter(parents).static_order() if key in selected]
    existing = _existing_relations(url, in_order)
    return staleness.rebuilds(
        context, in_order, assets_def.code_versions_by_key, parents, exists=lambda key: key in existing
    )


def build_dbt_assets(dbt_project: DbtProject) -> AssetsDefinition:
    """The project's models as one multi-asset step, from the manifest `make prepare` wrote."""
    manifest = json.loads(dbt_project.manifest_path.read_text())

    @dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=TRANSLATOR)
    def imdb_dbt_models(
        context: AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource, warehouse: Warehouse
    ):
        url = warehouse.url()
        if config.force:
            rebuild = {key: staleness.Rebuild("forced by the run's config") for key in context.selected_asset_keys}
        else:
            rebuild = _to_rebuild(context, url)
        up_to_date = sorted(key.path[-1] for key in context.selected_asset_keys - rebuild.keys())
        if not rebuild:
            context.log.info(f"All {len(up_to_date)} selected models are up to date: nothing to rebuild")
            return
        for key, why in rebuild.items():
            context.log.info(f"Rebuilding {key.to_user_string()}: {why.reason}")
        args = ["build"]
        if up_to_date:
            context.log.info(f"Up to date, not rebuilt: {', '.join(up_to_date)}")
        excluded = up_to_date + _ephemeral_not_inlined(manifest, {key.path[-1] for key in rebuild})
        if excluded:
            args += ["--exclude", " ".join(excluded)]
        with _environment(dbt_environment(url)):
            invocation = dbt.cli(args, context=context)
            yield from _with_run_metadata(invocation, context, url, rebuild, dbt_project)
        _keep_partial_parse(invocation, dbt_project)

    return imdb_dbt_models


imdb_dbt_models = build_dbt_assets(project)


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


def _with_run_metadata(
    invocation: DbtCliInvocation,
    context: AssetExecutionContext,
    url: str,
    rebuild: Mapping[AssetKey, staleness.Rebuild],
    dbt_project: DbtProject,
) -> Iterator[Any]:
    """dagster-dbt's events, each model's output given why it was rebuilt, the rows its statement wrote and the
    relation's size and first rows as built (the asset key is the relation's `schema.name`, see the translator)."""
    for message in invocation.stream_raw_events():
        for event in message.to_default_asset_events(
            manifest=invocation.manifest,
            dagster_dbt_translator=invocation.dagster_dbt_translator,
            context=context,
            target_path=invocation.target_path,
            project=dbt_project,
        ):
            if isinstance(event, Output):
                key = context.asset_key_for_output(event.output_name)
                why = rebuild.get(key)
                event = event.with_metadata(
                    {
                        **event.metadata,
                        **({"rebuilt_because": why.reason} if why else {}),
                        **_run_metadata(message.raw_event.get("data", {})),
                        **metadata.relation_metadata(url, ".".join(key.path)),
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    url = Warehouse(database_url=os.environ.get("DATABASE_URL", ""), data_dir=str(settings.data_dir())).url()
    environment = {**os.environ, **dbt_environment(url)}
    command = [sys.executable, "-m", "dbt.cli.main", *args]
    project_dir = str(project.project_dir)
    environment |= {"DBT_PROJECT_DIR": project_dir, "DBT_PROFILES_DIR": project_dir}
    sys.exit(subprocess.call(command, env=environment, cwd=project_dir))


if __name__ == "__main__":
    main()
