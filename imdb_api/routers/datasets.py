"""What is loaded and built: rows, release date and freshness per table, from the load log, and each table's and
mart's size."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imdb_api import models, queries
from imdb_api.common import READ_ROUTE, fetch_all, read_route_responses
from imdb_api.database import MARTS_SCHEMA
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.release import release_date

router = APIRouter(tags=["datasets"], dependencies=READ_ROUTE, responses=read_route_responses())


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
        published = release_date(last_modified)
        items.append(
            {
                "kind": "table",
                "file": dataset.file_name,
                "table": f"{SCHEMA}.{dataset.table}",
                "rows": rows,
                "source_last_modified": last_modified,
                "release_date": published.date().isoformat() if published else None,
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
                    "release_date": None,
                    "loaded_at": None,
                    "heap_bytes": heap,
                    "index_bytes": indexes,
                }
            )
    return {"items": items}
