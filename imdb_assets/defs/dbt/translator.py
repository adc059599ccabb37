"""How dagster-dbt names, groups and versions the project's models: the one translator of the project."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, AssetSpec
from dagster_dbt import DagsterDbtTranslator, DbtProject

from imdb_assets.catalog import SCHEMA
from imdb_assets.load import CHANGE_LOG, META_SCHEMA

CHANGE_LOG_KEY = AssetKey([META_SCHEMA, CHANGE_LOG])


class ImdbDbtTranslator(DagsterDbtTranslator):
    """Sources are the table assets (`imdb/<table>`), and the change log (`imdb_meta/changes`), which is no dependency;
    models are keyed by the schema they land in, grouped by their folder (staging, intermediate, marts), versioned
    by their SQL, config and contract, together with those of the ephemeral models they read."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> AssetSpec:
        # An ephemeral model is no asset: its SQL is inlined into the models that read it, so an edit to it must
        # change their code version, or Dagster would keep them as up to date.
        spec = super().get_asset_spec(manifest, unique_id, project)
        # The change log is read by the incremental models, and written by the table assets they already depend on:
        # no asset of its own, nor a node of the graph.
        if any(dep.asset_key == CHANGE_LOG_KEY for dep in spec.deps):
            spec = spec.replace_attributes(deps=[dep for dep in spec.deps if dep.asset_key != CHANGE_LOG_KEY])
        inlined = sorted(ephemeral_ancestors(manifest, unique_id))
        if spec.code_version is None or not inlined:
            return spec
        versions = [spec.code_version, *(self.get_code_version(manifest["nodes"][node]) or "" for node in inlined)]
        return spec.replace_attributes(code_version=hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16])

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            # imdb/<table> for the tables; the change log, which every table's load writes, is imdb_meta/changes.
            return AssetKey([dbt_resource_props.get("source_name", SCHEMA), dbt_resource_props["name"]])
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


def ephemeral_ancestors(manifest: Mapping[str, Any], unique_id: str) -> set[str]:
    """The ephemeral models a node reads, directly or through other ephemeral models."""
    found: set[str] = set()
    queue = list(manifest["nodes"].get(unique_id, {}).get("depends_on", {}).get("nodes", []))
    while queue:
        parent = manifest["nodes"].get(queue.pop())
        if parent and parent["config"].get("materialized") == "ephemeral" and parent["unique_id"] not in found:
            found.add(parent["unique_id"])
            queue.extend(parent.get("depends_on", {}).get("nodes", []))
    return found


TRANSLATOR = ImdbDbtTranslator()
