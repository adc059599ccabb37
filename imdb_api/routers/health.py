"""/healthz and /readyz, for probes: no key needed."""

from __future__ import annotations

import psycopg
import psycopg_pool
from fastapi import APIRouter, Request, Response

from imdb_api import queries
from imdb_api.common import errors, fetch_one, json_response
from imdb_api.errors import error_response
from imdb_assets.catalog import DATASETS
from imdb_assets.database import one_row
from imdb_assets.history import HISTORY_TABLE

# /readyz is 503 until every one of these exists.
REQUIRED_RELATIONS = [f"imdb.{table}" for table in [d.table for d in DATASETS] + [HISTORY_TABLE]] + [
    f"imdb_marts.{name}"
    for name in (
        "titles",
        "people",
        "title_people",
        "title_recommendations",
        "series_episodes",
        "title_search",
        "title_rating_trends",
        "title_trending_ranks",
    )
]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up (no key needed)")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers and the data is loaded (no key needed)",
    responses=errors((503, "The database does not answer, or a table or mart is not loaded yet.")),
)
async def readyz(request: Request) -> Response:
    try:
        missing = one_row(await fetch_one(request, queries.READY, (REQUIRED_RELATIONS,)))[0]
    except (psycopg.Error, psycopg_pool.PoolTimeout):
        return error_response(503, "the database is unavailable")
    if missing:
        return error_response(503, f"not loaded yet: {', '.join(missing)}")
    return json_response('{"status":"ready"}')
