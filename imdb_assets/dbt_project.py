"""The dbt project (`dbt_project/`) as dagster-dbt sees it.

This module imports nothing else of the platform, so `dagster-dbt project prepare-and-package --file
imdb_assets/dbt_project.py` (`make install` and the image build) can `dbt parse` a fresh clone into
`dbt_project/target` before anything reads the manifest. Under `dagster dev` the project is parsed again whenever
the code loads (`prepare_if_dev`), so a model added or edited shows up at once; elsewhere, run `make prepare` after
an edit. Nothing is written at import otherwise.
"""

from pathlib import Path

from dagster_dbt import DbtProject

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
project.prepare_if_dev()
