"""A person and their filmography (paged by key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from imdb_api import models, queries
from imdb_api.common import (
    BAD_CURSOR,
    CATEGORY,
    READ_ROUTE,
    TCONST,
    Cursor,
    Limit,
    Nconst,
    decode_cursor,
    errors,
    found_or_404,
    is_int4,
    matching,
    page_response,
    read_route_responses,
    rows_if_found,
)

router = APIRouter(tags=["names"], dependencies=READ_ROUTE, responses=read_route_responses())
NO_PERSON = (404, "No person has this id.")


@router.get("/v1/names/{nconst}", summary="A person", response_model=models.Person, responses=errors(NO_PERSON, 422))
async def person(request: Request, nconst: Nconst) -> Response:
    return await found_or_404(request, queries.PERSON, nconst, "person")


@router.get(
    "/v1/names/{nconst}/filmography",
    summary="A person's credits",
    response_model=models.Page[models.FilmographyEntry],
    responses=errors(BAD_CURSOR, NO_PERSON, 422),
)
async def filmography(request: Request, nconst: Nconst, limit: Limit = 50, cursor: Cursor = None) -> Response:
    after = decode_cursor(cursor, (is_int4, matching(TCONST), matching(CATEGORY)))
    params = {
        "nconst": nconst,
        "after_year": after[0] if after else None,
        "after_tconst": after[1] if after else None,
        "after_category": after[2] if after else None,
        "fetch": limit + 1,
    }
    rows = await rows_if_found(request, queries.PERSON_EXISTS, nconst, "person", queries.FILMOGRAPHY, params)
    return page_response(rows, limit, lambda last: last[1:])
