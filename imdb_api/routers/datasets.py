"""What is loaded and built: rows and freshness per table, from the load log, and each table's and mart's size."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imdb_api import models, queries
from imdb_api.common import KEYED_ROUTE_ERRORS, errors, fetch_all, reader_key
from imdb_api.database import MARTS_SCHEMA
from imdb_assets.catalog import DATASETS, SCHEMA

router = APIRouter(tags=["datasets"], dependencies=[reader_key], responses=errors(*KEYED_ROUTE_ERRORS))


@router.get(
    "/v1/datasets",
    summary="Rows, freshness and size per table, and the size of each mart",
    response_model=models.Items[models.DatasetFreshness],
)
async def datasets(request: Request) -> dict:
    loads = {row[0]: row[1:] for row in await fetch_all(request, queries.DATASETS, ())}
    sizes = {
        (schema, name): (heap, indexes)
        for schema, name, heap, indexes in await fetch_all(request, queries.DATASET_SIZES, ())
    }
    items = []
    for dataset in DATASETS:
        rows, last_modified, loaded_at = loads.get(dataset.table, (None, None, None))
        heap, indexes = sizes.get((SCHEMA, dataset.table), (None, None))
        items.append(
            {
                "kind": "table",
                "file": dataset.file_name,
                "table": f"{SCHEMA}.{dataset.table}",
                "rows": rows,
                "source_last_modified": last_modified,
                "loaded_at": loaded_at.isoformat() if loaded_at else None,
                "heap_bytes": heap,
                "index_bytes": indexes,
            }
        )
    for (schema, name), (heap, indexes) in sizes.items():
        if schema == MARTS_SCHEMA:
            items.append(
                {
                    "kind": "mart",
                    "file": None,
                    "table": f"{schema}.{name}",
                    "rows": None,
                    "source_last_modified": None,
                    "loaded_at": None,
                    "heap_bytes": heap,
                    "index_bytes": indexes,
                }
            )
    return {"items": items}
