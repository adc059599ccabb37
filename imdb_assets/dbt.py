"""The dbt project as plain files, for everything that is not Dagster: where it is, what its manifest holds, and
the environment dbt runs in against the platform's database.

The Dagster side (the models as assets, their translator and staleness) is `imdb_assets.defs.dbt`; the API and the
command-line tools read the manifest through this module, without building any definitions.

    uv run imdb dbt build --select marts    # dbt by hand, against the platform's database
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from imdb_assets.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
MANIFEST = PROJECT_DIR / "target" / "manifest.json"
# What the prepared manifest was parsed from: the files under these folders of the project, and the project's files.
PROJECT_SOURCES = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")
SOURCES_DIGEST = PROJECT_DIR / "target" / "imdb_sources_digest.txt"


class StaleManifest(RuntimeError):
    """``dbt_project/`` changed since its manifest was prepared: a run would silently build the old models."""


def read_manifest(manifest: Path = MANIFEST) -> dict[str, Any]:
    if not manifest.exists():
        raise StaleManifest(f"{manifest} does not exist: run `make prepare` to parse the dbt project")
    return json.loads(manifest.read_text())


def models(manifest: Mapping[str, Any], folder: str | None = None) -> Iterator[tuple[str, str]]:
    """(schema, name) of each model dbt builds (ephemeral ones are inlined, not built), in the manifest's order;
    with ``folder``, only those under ``models/<folder>``."""
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["config"].get("materialized") == "ephemeral":
            continue
        if folder is None or node["fqn"][1] == folder:
            yield node["schema"], node["name"]


def models_downstream_of(manifest: Mapping[str, Any], tables: set[str]) -> list[tuple[str, str]]:
    """(schema, name) of each model that reads one of ``tables`` (sources of the `imdb` schema), directly or
    through other models, in the manifest's order: what a refresh of those tables' files may change."""
    children = manifest["child_map"]
    reached: set[str] = set()
    queue = [uid for uid, source in manifest["sources"].items() if source["name"] in tables]
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in reached and child.startswith("model."):
                reached.add(child)
                queue.append(child)
    return [
        (node["schema"], node["name"])
        for uid, node in manifest["nodes"].items()
        if uid in reached and node["config"].get("materialized") != "ephemeral"
    ]


def marts(manifest: Path = MANIFEST) -> list[str]:
    """``schema.name`` of every model under ``models/marts``."""
    return [f"{schema}.{name}" for schema, name in models(read_manifest(manifest), "marts")]


def sources_digest(project_dir: Path = PROJECT_DIR) -> str:
    """A digest of the project's own files (not its ``target/`` or ``logs/``): what a manifest was parsed from."""
    digest = hashlib.sha256()
    files = [project_dir / name for name in PROJECT_FILES if (project_dir / name).is_file()]
    for folder in PROJECT_SOURCES:
        files += sorted(path for path in (project_dir / folder).rglob("*") if path.is_file())
    for path in files:
        digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def record_prepared(project_dir: Path = PROJECT_DIR) -> None:
    """Note, beside a manifest just prepared, which files it was parsed from."""
    (project_dir / "target" / SOURCES_DIGEST.name).write_text(sources_digest(project_dir) + "\n")


def check_prepared(project_dir: Path = PROJECT_DIR) -> None:
    """Raise `StaleManifest` when the project's files differ from those its manifest was prepared from."""
    recorded = project_dir / "target" / SOURCES_DIGEST.name
    if not (project_dir / "target" / MANIFEST.name).exists() or not recorded.exists():
        raise StaleManifest(f"{project_dir} has no prepared manifest: run `make prepare` (or `uv run imdb prepare`)")
    if recorded.read_text().strip() != sources_digest(project_dir):
        raise StaleManifest(
            f"{project_dir} changed since its manifest was prepared, so a run would build the models as they were: "
            "run `make prepare` (or `uv run imdb prepare`), then start the run again"
        )


def environment(settings: Settings, database_url: str) -> dict[str, str]:
    """What `dbt_project/profiles.yml` and the models read: the `IMDB_DBT_*` connection from a libpq URL (Unix
    socket hosts work) and the models' settings."""
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
    return values | settings.dbt_variables()
