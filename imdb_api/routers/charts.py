"""Aggregates over the marts: the best rated titles, the titles gaining votes, and titles and ratings by genre."""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imdb_api import models, queries
from imdb_api.common import (
    BAD_CURSOR,
    READ_ROUTE,
    WORD,
    Cursor,
    Limit,
    Year,
    decode_cursor,
    errors,
    fetch_all,
    is_int4,
    items_response,
    page_response,
    read_route_responses,
)

router = APIRouter(tags=["charts"], dependencies=READ_ROUTE, responses=read_route_responses(422))


class TrendingDays(IntEnum):
    """The windows title_rating_trends counts votes over, in days back from the history's latest release."""

    DAY = 1
    WEEK = 7
    MONTH = 30


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


@router.get(
    "/v1/charts/trending",
    summary="Titles gaining the most votes",
    response_model=models.Page[models.TrendingTitle],
    responses=errors(BAD_CURSOR, 422),
)
async def trending_chart(
    request: Request,
    days: Annotated[TrendingDays, Query(description="Votes gained over the last 1, 7 or 30 days.")] = TrendingDays.WEEK,
    type: Annotated[str | None, Query(pattern=WORD, description="movie, tvSeries, ...")] = None,
    genre: Annotated[str | None, Query(pattern=WORD)] = None,
    min_votes: Annotated[int, Query(ge=0, le=1_000_000_000, description="Titles with at least this many votes.")] = 0,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    after = decode_cursor(cursor, (is_int4,))
    params = {
        "days": int(days),
        "type": type or "",
        "genre": genre or "",
        "min_votes": min_votes,
        "after_rank": after[0] if after else 0,
        "fetch": limit + 1,
    }
    rows = await fetch_all(request, queries.trending_page(int(days)), params)
    return page_response(rows, limit, lambda last: (last[1],))


@router.get("/v1/stats/genres", summary="Titles and ratings by genre", response_model=models.Items[models.GenreStats])
async def genre_stats(request: Request, year_from: Year = None, year_to: Year = None) -> Response:
    params = {"year_from": year_from, "year_to": year_to}
    return items_response([row[0] for row in await fetch_all(request, queries.GENRE_STATS, params)])
