"""Titles and people by words of their names: every word, then any word, then (with pg_trgm) names spelled alike."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imdb_api import models, queries
from imdb_api.common import NO_NUL, READ_ROUTE, Limit, fetch_all, items_response, read_route_responses
from imdb_api.errors import ApiError

SEARCHES = {"titles": (queries.SEARCH_RATED_TITLES, queries.SEARCH_TITLES), "names": (None, queries.SEARCH_NAMES)}
Text = Annotated[str, Query(min_length=1, max_length=200, pattern=NO_NUL)]

router = APIRouter(
    tags=["search"],
    dependencies=READ_ROUTE,
    responses=read_route_responses((422, "A parameter is not valid, or q has no letter or digit.")),
)


@router.get("/v1/search/titles", summary="Titles by words of any name", response_model=models.Items[models.TitleHit])
async def search_titles(request: Request, q: Text, limit: Limit = 20) -> Response:
    return await _search(request, "titles", q, limit)


@router.get("/v1/search/names", summary="People by words of their name", response_model=models.Items[models.NameHit])
async def search_names(request: Request, q: Text, limit: Limit = 20) -> Response:
    return await _search(request, "names", q, limit)


async def _search(request: Request, kind: str, q: str, limit: int) -> Response:
    """Every word, then any word; titles among the rated first (enough of them ends it); then, where pg_trgm is
    installed, names spelled alike (a typo)."""
    rated, every = SEARCHES[kind]
    for any_word in (False, True):
        params = {"query": _search_query(q, any_word), "limit": limit}
        if rated and len(rows := await fetch_all(request, rated, params)) >= limit:
            return items_response([row[0] for row in rows])
        if rows := await fetch_all(request, every, params):
            return items_response([row[0] for row in rows])
    similar = request.app.state.similar[kind]
    rows = await fetch_all(request, similar, {"text": q, "limit": limit}) if similar else []
    return items_response([row[0] for row in rows])


def _search_query(q: str, any_word: bool) -> str:
    """A tsquery of the text's words (all of them, or any): the last one also matches as a prefix. Words are
    letters and digits only, so nothing in ``q`` can reach tsquery's syntax."""
    words = re.findall(r"[^\W_]+", q)[:10]
    if not words:
        raise ApiError(422, "q must contain a letter or a digit")
    words[-1] += ":*"
    return (" | " if any_word else " & ").join(words)
