"""Aggregates over the marts: the best rated titles, and titles and ratings by genre."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imdb_api import models, queries
from imdb_api.common import READ_ROUTE, WORD, Limit, Year, fetch_all, items_response, read_route_responses

router = APIRouter(tags=["charts"], dependencies=READ_ROUTE, responses=read_route_responses(422))


@router.get("/v1/charts/top", summary="Best rated titles", response_model=models.Items[models.TitleSummary])
async def top_chart(
    request: Request,
    genre: Annotated[str | None, Query(pattern=WORD)] = None,
    type: Annotated[str, Query(pattern=WORD)] = "movie",
    min_votes: Annotated[int, Query(ge=0, le=1_000_000_000)] = 25_000,
    limit: Limit = 20,
) -> Response:
    params = {"genre": genre, "type": type, "min_votes": min_votes, "limit": limit}
    return items_response([row[0] for row in await fetch_all(request, queries.TOP_CHART, params)])


@router.get("/v1/stats/genres", summary="Titles and ratings by genre", response_model=models.Items[models.GenreStats])
async def genre_stats(request: Request, year_from: Year = None, year_to: Year = None) -> Response:
    params = {"year_from": year_from, "year_to": year_to}
    return items_response([row[0] for row in await fetch_all(request, queries.GENRE_STATS, params)])
