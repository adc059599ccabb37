"""A title, titles by filter (paged by key), and a title's lists: credits, akas, recommendations, episodes, and its
ratings history (paged by date)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from imdb_api import models, queries
from imdb_api.common import (
    BAD_CURSOR,
    CATEGORY,
    CURSOR_NOT_VALID,
    READ_ROUTE,
    TCONST,
    WORD,
    Cursor,
    Limit,
    Tconst,
    Year,
    decode_cursor,
    errors,
    fetch_all,
    found_or_404,
    is_date,
    items_response,
    matching,
    page_response,
    read_route_responses,
    rows_if_found,
)
from imdb_api.errors import ApiError

router = APIRouter(tags=["titles"], dependencies=READ_ROUTE, responses=read_route_responses())
NO_TITLE = (404, "No title has this id.")
A_TITLE_ERRORS = errors(NO_TITLE, 422)
# The key a cursor of each sort carries, as the query compares it: an integer, or a decimal rating.
SORT_KEYS = {"votes": "[0-9]{1,9}", "year": "[0-9]{1,9}", "rating": r"[0-9]{1,9}(\.[0-9]{1,9})?"}


@router.get("/v1/titles/{tconst}", summary="A title", response_model=models.Title, responses=A_TITLE_ERRORS)
async def title(request: Request, tconst: Tconst) -> Response:
    return await found_or_404(request, queries.TITLE, tconst, "title")


@router.get(
    "/v1/titles",
    summary="Titles by filter, paged by key",
    response_model=models.Page[models.TitleSummary],
    responses=errors(BAD_CURSOR, 422),
)
async def titles(
    request: Request,
    type: Annotated[str | None, Query(pattern=WORD, description="movie, tvSeries, ...")] = None,
    genre: Annotated[str | None, Query(pattern=WORD)] = None,
    year_from: Year = None,
    year_to: Year = None,
    min_votes: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
    sort: Literal["votes", "rating", "year"] = "votes",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    after = decode_cursor(cursor, (matching("|".join(SORT_KEYS)), matching(SORT_KEYS["rating"]), matching(TCONST)))
    if after and after[0] != sort:
        raise ApiError(400, f"the cursor belongs to sort={after[0]}, not sort={sort}")
    if after and not re.fullmatch(SORT_KEYS[sort], after[1]):
        raise ApiError(400, CURSOR_NOT_VALID)
    params = {
        "type": type,
        "genre": genre,
        "year_from": year_from,
        "year_to": year_to,
        "min_votes": min_votes,
        "after_key": after[1] if after else None,
        "after_tconst": after[2] if after else None,
        "fetch": limit + 1,
    }
    rows = await fetch_all(request, queries.titles_page(sort, after=after is not None), params)
    return page_response(rows, limit, lambda last: (sort, str(last[1]), last[2]))


@router.get(
    "/v1/titles/{tconst}/credits",
    summary="Who worked on it",
    response_model=models.Items[models.Credit],
    responses=A_TITLE_ERRORS,
)
async def credits(
    request: Request, tconst: Tconst, category: Annotated[str | None, Query(pattern=CATEGORY)] = None
) -> Response:
    return await _title_items(request, tconst, queries.CREDITS, (tconst, category, category))


@router.get(
    "/v1/titles/{tconst}/akas",
    summary="Its other titles",
    response_model=models.Items[models.Aka],
    responses=A_TITLE_ERRORS,
)
async def akas(request: Request, tconst: Tconst) -> Response:
    return await _title_items(request, tconst, queries.AKAS, (tconst,))


@router.get(
    "/v1/titles/{tconst}/similar",
    summary="Recommendations",
    response_model=models.Items[models.Similar],
    responses=A_TITLE_ERRORS,
)
async def similar(request: Request, tconst: Tconst) -> Response:
    return await _title_items(request, tconst, queries.SIMILAR, (tconst,))


@router.get(
    "/v1/titles/{tconst}/episodes",
    summary="A series' episodes",
    response_model=models.Items[models.Episode],
    responses=A_TITLE_ERRORS,
)
async def episodes(
    request: Request, tconst: Tconst, season: Annotated[int | None, Query(ge=0, le=100_000)] = None
) -> Response:
    return await _title_items(request, tconst, queries.EPISODES, (tconst, season, season))


@router.get(
    "/v1/titles/{tconst}/ratings/history",
    summary="Its rating and votes, release by release",
    response_model=models.Page[models.RatingChange],
    responses=errors(BAD_CURSOR, NO_TITLE, 422),
)
async def ratings_history(request: Request, tconst: Tconst, limit: Limit = 50, cursor: Cursor = None) -> Response:
    after = decode_cursor(cursor, (is_date,))
    params = {"tconst": tconst, "after": after[0] if after else None, "fetch": limit + 1}
    rows = await rows_if_found(request, queries.TITLE_EXISTS, tconst, "title", queries.RATINGS_HISTORY, params)
    return page_response(rows, limit, lambda last: (last[1],))


async def _title_items(request: Request, tconst: str, statement: str, params) -> Response:
    rows = await rows_if_found(request, queries.TITLE_EXISTS, tconst, "title", statement, params)
    return items_response([row[0] for row in rows])
