"""IMDb's public datasets as Dagster assets: raw files -> typed frames -> PostgreSQL tables."""

import sys

from imdb_assets.definitions import defs

# Transitional: tests/test_refresh.py, edited on other branches meanwhile, imports the file assets' module by its name
# before it moved to imdb_assets/defs/files.py. Remove once it imports imdb_assets.defs.files.
sys.modules.setdefault("imdb_assets.assets", sys.modules["imdb_assets.defs.files"])

__all__ = ["defs"]
