"""The dbt project (`dbt_project/`) as dagster-dbt sees it.

`dagster-dbt project prepare-and-package --file imdb_assets/defs/dbt/project.py` (`make prepare`, the image build)
loads this module alone to `dbt parse` a fresh clone into `dbt_project/target`, before anything reads the manifest.
Under `dagster dev` the project is parsed again whenever the code loads (`prepare_if_dev`), so a model added or
edited shows up at once; elsewhere the definitions refuse to load a manifest older than the project's files
(`imdb_assets.dbt.check_prepared`), which says to run `make prepare`.
"""

from dagster_dbt import DbtProject

from imdb_assets.dbt import PROJECT_DIR, record_prepared


def prepare(dbt_project: DbtProject) -> None:
    """Parse ``dbt_project`` into its manifest and note which files it was parsed from."""
    dbt_project.preparer.prepare(dbt_project)
    record_prepared(dbt_project.project_dir)


project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
if project.preparer.using_dagster_dev():
    prepare(project)
