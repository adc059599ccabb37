"""What is loaded: rows, release date and freshness per table, from the load log."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imdb_api import models, queries
from imdb_api.common import READ_ROUTE, fetch_all, read_route_responses
from imdb_api.release import http_date
from imdb_assets.catalog import DATASETS

router = APIRouter(tags=["datasets"], dependencies=READ_ROUTE, responses=read_route_responses())


@router.get(
    "/v1/datasets", summary="Rows and freshness per table", response_model=models.Items[models.DatasetFreshness]
)
async def datasets(request: Request) -> dict:
    loads = {row[0]: row[1:] for row in await fetch_all(request, queries.DATASETS, ())}
    items = []
    for dataset in DATASETS:
        rows, last_modified, loaded_at = loads.get(dataset.table, (None, None, None))
        published = http_date(last_modified)
        items.append(
            {
                "file": dataset.file_name,
                "table": f"imdb.{dataset.table}",
                "rows": rows,
                "source_last_modified": last_modified,
                "release_date": published.date().isoformat() if published else None,
                "loaded_at": loaded_at.isoformat() if loaded_at else None,
            }
        )
    return {"items": items}
