"""What is loaded: rows and freshness per table, from the load log."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imdb_api import models, queries
from imdb_api.common import KEYED_ROUTE_ERRORS, errors, fetch_all, reader_key
from imdb_assets.catalog import DATASETS

router = APIRouter(tags=["datasets"], dependencies=[reader_key], responses=errors(*KEYED_ROUTE_ERRORS))


@router.get(
    "/v1/datasets", summary="Rows and freshness per table", response_model=models.Items[models.DatasetFreshness]
)
async def datasets(request: Request) -> dict:
    loads = {row[0]: row[1:] for row in await fetch_all(request, queries.DATASETS, ())}
    items = []
    for dataset in DATASETS:
        rows, last_modified, loaded_at = loads.get(dataset.table, (None, None, None))
        items.append(
            {
                "file": dataset.file_name,
                "table": f"imdb.{dataset.table}",
                "rows": rows,
                "source_last_modified": last_modified,
                "loaded_at": loaded_at.isoformat() if loaded_at else None,
            }
        )
    return {"items": items}
