"""The two floors: a core that imports nothing of Dagster nor of `imdb_assets.defs`, and the tools above it.

Read from the source (every module's imports, its functions' included), so a lazy import counts too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imdb_assets import dbt, settings

REPO = Path(__file__).resolve().parents[1]
CORE = ["catalog", "download", "parse", "load", "database", "disk", "settings", "dbt", "cli", "churn", "release"]
ABOVE_DAGSTER = ("dagster", "dagster_dbt", "dagster_postgres", "dagster_graphql", "imdb_assets.defs")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules_of(*names: str) -> list[Path]:
    paths = []
    for name in names:
        target = REPO / Path(*name.split("."))
        paths += sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
    return paths


def forbidden(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.split(".")[0] in ABOVE_DAGSTER or m.startswith(ABOVE_DAGSTER))


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_of_dagster_or_defs(module):
    for path in modules_of(f"imdb_assets.{module}"):
        assert not forbidden(path), f"{path.relative_to(REPO)} imports {forbidden(path)}"


def test_the_api_and_the_dev_tools_stand_on_the_core():
    for path in modules_of("imdb_api", "imdb_dev"):
        reached = {m for m in imported_modules(path) if m.startswith("imdb_assets.defs")}
        assert not reached, f"{path.relative_to(REPO)} imports {reached}"
    # A reader's API process starts without Dagster: it is imported only where a refresh is launched.
    command = "import sys, imdb_api.app; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    loaded = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"


def test_a_bad_setting_is_refused_naming_its_variable(monkeypatch):
    monkeypatch.setenv("IMDB_LOAD_CONNECTIONS", "abc")
    monkeypatch.setenv("IMDB_BASE_URL", "ftp://x")
    monkeypatch.setenv("DATABASE_URL", "mysql://u@h/db")
    with pytest.raises(settings.SettingsError) as refused:
        settings.load()
    message = str(refused.value)
    assert "IMDB_LOAD_CONNECTIONS='abc': Input should be a valid integer" in message
    assert "IMDB_BASE_URL='ftp://x': must be an http://, https:// or file:// URL" in message
    assert "DATABASE_URL='mysql://u@h/db': must be a postgresql:// URI" in message
    # The same from the command line, and from the code location, which refuses to load.
    env = {"IMDB_API_RATE_LIMIT": "often", "PATH": "/usr/bin:/bin"}
    cli = subprocess.run([sys.executable, "-m", "imdb_assets.cli", "url"], env=env, capture_output=True, text=True)
    assert cli.returncode == 2 and "IMDB_API_RATE_LIMIT='often': must be in the `limits` notation" in cli.stderr
    code = subprocess.run(
        [sys.executable, "-c", "import imdb_assets.definitions"], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert code.returncode == 1 and "IMDB_API_RATE_LIMIT='often'" in code.stderr


def test_every_setting_has_a_description_and_the_readme_names_it():
    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "operations.md").read_text()
    for name, description in settings.ENVIRONMENT.items():
        assert description, name
        assert name in readme, f"{name} is documented nowhere"
    # dbt run by hand falls back on the same defaults as the platform.
    project = (REPO / "dbt_project" / "dbt_project.yml").read_text()
    default = settings.Settings.model_fields["recommendation_min_votes"].default
    assert f"env_var('IMDB_RECOMMENDATION_MIN_VOTES', '{default}')" in project


def test_a_project_edited_since_its_manifest_was_prepared_is_refused(tmp_path):
    copy = tmp_path / "dbt_project"
    (copy / "models").mkdir(parents=True)
    (copy / "target").mkdir()
    (copy / "dbt_project.yml").write_text("name: x\n")
    (copy / "models" / "a.sql").write_text("select 1\n")
    with pytest.raises(dbt.StaleManifest, match="no prepared manifest: run `make prepare`"):
        dbt.check_prepared(copy)
    (copy / "target" / "manifest.json").write_text("{}")
    dbt.record_prepared(copy)
    dbt.check_prepared(copy)
    (copy / "models" / "b.sql").write_text("select 2\n")  # a model added
    with pytest.raises(dbt.StaleManifest, match=r"changed since its manifest was prepared.*run `make prepare`"):
        dbt.check_prepared(copy)
    dbt.record_prepared(copy)
    (copy / "models" / "a.sql").write_text("select 3\n")  # a model edited
    with pytest.raises(dbt.StaleManifest):
        dbt.check_prepared(copy)
    dbt.record_prepared(copy)
    (copy / "target" / "run_results.json").write_text("{}")  # what dbt writes when it runs changes nothing
    dbt.check_prepared(copy)


def test_dagster_job_execute_refuses_a_stale_manifest_before_building_anything(tmp_path):
    """A copy of the platform whose model was edited without `make prepare`: the code location does not load,
    saying why, and nothing is started or built."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "imdb_assets", copy / "imdb_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt_project", copy / "dbt_project", ignore=shutil.ignore_patterns("logs"))
    shutil.copy(REPO / "pyproject.toml", copy)  # where Dagster finds the defs folder
    titles = copy / "dbt_project" / "models" / "marts" / "titles.sql"
    titles.write_text(titles.read_text() + "\n-- edited\n")
    command = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "imdb_assets.definitions"]
    result = subprocess.run(
        [*command, "-j", "imdb_refresh"],
        env={"PATH": "/usr/bin:/bin", "IMDB_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        cwd=copy,  # the copy is imported, not the repository's package
        timeout=300,
    )
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert f"{copy / 'dbt_project'} changed since its manifest was prepared" in output, output[-3000:]
    assert "run `make prepare`" in output
    assert not (tmp_path / "data").exists()  # no server started, nothing downloaded or built


def test_imdb_psql_opens_the_embedded_database_with_the_psql_it_ships(tmp_path):
    data_dir = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "IMDB_DATA_DIR": str(data_dir)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "imdb_assets.cli", "psql", "-tAc", "select current_database(), current_user"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "imdb|postgres"
        url = subprocess.run(
            [sys.executable, "-m", "imdb_assets.cli", "url"], env=env, capture_output=True, text=True, check=True
        )
        assert url.stdout.strip() == f"postgresql://postgres:@/imdb?host={data_dir / 'postgres'}"
    finally:
        subprocess.run([sys.executable, "-m", "imdb_assets.cli", "db-stop"], env=env, check=True, timeout=120)


def test_the_manifest_helper_finds_the_models_dagster_has_downstream_of_each_table():
    """The API selects a refresh's models from the manifest alone; they are those Dagster's graph has downstream."""
    from dagster import AssetKey, AssetSelection

    from imdb_assets.catalog import DATASETS
    from imdb_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    manifest = dbt.read_manifest()
    models = {AssetKey([schema, name]) for schema, name in dbt.models(manifest)}
    for dataset in DATASETS:
        table = AssetKey(["imdb", dataset.table])
        expected = AssetSelection.assets(table).downstream().resolve(graph) & models
        found = {AssetKey([schema, name]) for schema, name in dbt.models_downstream_of(manifest, {dataset.table})}
        assert found == expected, dataset.table
