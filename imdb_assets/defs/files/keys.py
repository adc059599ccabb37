"""The asset keys of a file's three layers, and what the raw layer records of the upstream version it downloaded."""

from dagster import AssetKey

from imdb_assets.catalog import PARSED_LAYER, RAW_LAYER, TABLE_LAYER, Dataset
from imdb_assets.history import HISTORY_TABLE

VERSION_KEY = "version_key"  # raw metadata: the upstream version downloaded, which the release sensor compares


def raw_key(dataset: Dataset) -> AssetKey:
    return AssetKey([RAW_LAYER, dataset.table])


def parsed_key(dataset: Dataset) -> AssetKey:
    return AssetKey([PARSED_LAYER, dataset.table])


def table_key(dataset: Dataset) -> AssetKey:
    return AssetKey([TABLE_LAYER, dataset.table])


# The ratings history, appended by each load of title.ratings (imdb_assets.history).
HISTORY_KEY = AssetKey([TABLE_LAYER, HISTORY_TABLE])
