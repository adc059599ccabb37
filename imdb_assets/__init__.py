"""IMDb's public datasets as Dagster assets: raw files -> typed frames -> PostgreSQL tables."""

from imdb_assets.definitions import defs

__all__ = ["defs"]
