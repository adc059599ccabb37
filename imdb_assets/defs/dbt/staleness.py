"""Which of a step's assets need rebuilding, by Dagster's own record of what each was built from.

Every materialization carries its code version and the data versions of the inputs it read (Dagster's data
provenance). An asset is rebuilt when its relation is missing, when Dagster has no record of it, when its code
version differs from the recorded one, when an input's current data version differs from the one it was built
from, or when an input is itself rebuilt in this step with new contents. This is the rule behind the UI's "stale"
and "missing" badges, applied inside the step, so `imdb_refresh`, the sensor's runs and the UI's Materialize all
rebuild the same models.

The file layers always report a materialization, with an unchanged data version when nothing changed, rather than
none: Dagster skips a downstream multi-asset step whole when an upstream step yields nothing (dagster#9408).

Dagster has no option to skip a step whose inputs kept their data versions (dagster#14842), which is what this
module does; `latest_data_version` is its one adapter to Dagster's records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dagster import AssetExecutionContext, AssetKey, DataVersion

CODE_CHANGED = "its code changed"
# The tag under which Dagster records a materialization's data version; no public accessor reads it back.
DATA_VERSION_TAG = "dagster/data_version"


@dataclass(frozen=True)
class Rebuild:
    """Why an asset is rebuilt. ``same_contents`` when only its relation went missing: rebuilt from the same inputs
    by the same code, it keeps its data version, so what reads it need not be rebuilt for its sake. ``whole`` when
    its code changed: an incremental model then builds every row again, not only those the change log touched."""

    reason: str
    same_contents: bool = False
    whole: bool = False


def latest_data_version(context: AssetExecutionContext, key: AssetKey) -> DataVersion | None:
    """The data version of ``key``'s latest materialization, read from its tags (the adapter of dagster#14842)."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    version = materialization.tags.get(DATA_VERSION_TAG) if materialization and materialization.tags else None
    return DataVersion(version) if version else None


def rebuilds(
    context: AssetExecutionContext,
    keys_in_order: Sequence[AssetKey],
    code_versions: Mapping[AssetKey, str | None],
    parents: Mapping[AssetKey, set[AssetKey]],
    exists: Callable[[AssetKey], bool],
) -> dict[AssetKey, Rebuild]:
    """The assets among ``keys_in_order`` (parents before children) to rebuild, each with its reason."""
    current: dict[AssetKey, DataVersion | None] = {}

    def version_of(key: AssetKey) -> DataVersion | None:
        if key not in current:
            current[key] = latest_data_version(context, key)
        return current[key]

    decided: dict[AssetKey, Rebuild] = {}
    for key in keys_in_order:
        reason = _changed(context, key, code_versions.get(key), parents.get(key, set()), decided, version_of)
        if reason:
            decided[key] = Rebuild(reason, whole=reason == CODE_CHANGED)
        elif not exists(key):
            decided[key] = Rebuild("its relation is missing from the database", same_contents=True)
    return decided


def _changed(context, key, code_version, parents, decided, version_of) -> str | None:
    provenance = context.get_asset_provenance(key)
    if provenance is None:
        return "Dagster has no record of building it"
    if code_version is not None and provenance.code_version != code_version:
        return CODE_CHANGED
    for parent in sorted(parents, key=lambda k: k.to_user_string()):
        if parent in decided and not decided[parent].same_contents:
            return f"{parent.to_user_string()} is rebuilt first"
        built_from, now = provenance.input_data_versions.get(parent), version_of(parent)
        if now is not None and built_from != now:
            return f"{parent.to_user_string()} changed since it was built"
    return None
