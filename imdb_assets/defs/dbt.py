"""The dbt models as assets (`imdb_assets.dbt` builds them from the project's manifest), their tests as checks."""

from dagster import Definitions

from imdb_assets.dbt import imdb_dbt_models

defs = Definitions(assets=[imdb_dbt_models])
