"""IMDb's public datasets as Dagster assets: raw files -> typed frames -> PostgreSQL tables.

The code location is `imdb_assets.definitions`; importing a module of this package does not load it.
"""
