"""The code location: the definitions of every module of `imdb_assets/defs/`, one per concern, merged.

Dagster's `load_from_defs_folder` finds them (`[tool.dg]` in `pyproject.toml` names the folder), so a new concern
is a new module there, holding a `Definitions` or plain module-level assets, jobs, sensors.
"""

from pathlib import Path

from dagster import load_from_defs_folder

defs = load_from_defs_folder(path_within_project=Path(__file__).parent)
