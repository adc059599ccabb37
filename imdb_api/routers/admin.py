"""What operators and admins do: launch a refresh and follow its run (operator), manage keys (admin). Every
action is written to the audit log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from imdb_api import keys, models
from imdb_api.auth import audit
from imdb_api.common import KEYED_ROUTE_ERRORS, NO_NUL, Admin, Operator, errors, fetch_all, fetch_one
from imdb_api.errors import ApiError
from imdb_api.runs import DagsterUnavailable
from imdb_assets.catalog import BY_STEM
from imdb_assets.database import one_row

RUN_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DAGSTER_DOWN = (503, "The database is busy or unavailable, or Dagster is not reachable.")
UNREADABLE_BODY = (400, "A query parameter the route does not take, or a body that is not text.")

router = APIRouter(responses=errors(*KEYED_ROUTE_ERRORS, 403))


class RefreshRequest(BaseModel):
    files: list[str] = Field(default=[], description="IMDb file stems (e.g. title.ratings); empty: every file.")

    model_config = {"extra": "forbid"}


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    role: Literal["reader", "operator", "admin"]
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)

    model_config = {"extra": "forbid"}


@router.post(
    "/v1/refresh",
    tags=["operations"],
    status_code=202,
    summary="Launch imdb_refresh (operator)",
    response_model=models.RunLaunched,
    responses=errors(
        UNREADABLE_BODY, (422, "The body is not valid, or names a file IMDb does not publish."), DAGSTER_DOWN
    ),
)
async def refresh(request: Request, caller: Operator, body: Annotated[RefreshRequest | None, Body()] = None) -> dict:
    files = (body.files if body else []) or []
    unknown = [stem for stem in files if stem not in BY_STEM]
    if unknown:
        raise ApiError(422, f"unknown file(s): {', '.join(unknown)[:200]}; known: {', '.join(BY_STEM)}")
    detail = {"files": files}
    try:
        run_id = await run_in_threadpool(request.app.state.runs.launch, [BY_STEM[stem] for stem in files], caller.actor)
    except DagsterUnavailable as error:
        await audit(request, caller, "refresh", detail, "dagster unavailable")
        raise ApiError(503, str(error)) from error
    await audit(request, caller, "refresh", detail | {"run_id": run_id}, "launched")
    return {"run_id": run_id, "status_url": f"/v1/runs/{run_id}"}


@router.get(
    "/v1/runs/{run_id}",
    tags=["operations"],
    summary="A run's status (operator)",
    response_model=models.RunStatus,
    responses=errors((404, "Dagster knows no run with this id."), 422, DAGSTER_DOWN),
)
async def run_status(request: Request, caller: Operator, run_id: Annotated[str, Path(pattern=RUN_ID)]) -> dict:
    try:
        status = await run_in_threadpool(request.app.state.runs.status, run_id)
    except DagsterUnavailable as error:
        raise ApiError(503, str(error)) from error
    await audit(request, caller, "run_status", {"run_id": run_id}, status or "not found")
    if status is None:
        raise ApiError(404, f"no run {run_id}")
    return {"run_id": run_id, "status": status}


@router.post(
    "/v1/keys",
    tags=["keys"],
    status_code=201,
    summary="Make a key, shown only here (admin)",
    response_model=models.NewKeyCreated,
    responses=errors(UNREADABLE_BODY, (422, "The body is not valid.")),
)
async def create_key(request: Request, caller: Admin, body: NewKey) -> dict:
    secret = keys.new_secret()
    row = one_row(
        await fetch_one(
            request,
            keys.INSERT_KEY,
            (
                body.name,
                body.role,
                keys.key_hash(secret),
                secret[: len(keys.PREFIX) + 6],
                caller.actor,
                keys.expiry(body.expires_in_days),
            ),
        )
    )
    info = keys.KeyInfo(*row)
    await audit(request, caller, "create_key", {"key_id": info.id, "name": info.name, "role": info.role}, "ok")
    return info.public() | {"key": secret}


@router.get(
    "/v1/keys",
    tags=["keys"],
    summary="Every key, without the keys themselves (admin)",
    response_model=models.Items[models.KeyInfo],
)
async def list_keys(request: Request, caller: Admin) -> dict:
    rows = await fetch_all(request, keys.LIST_KEYS, ())
    await audit(request, caller, "list_keys", {}, "ok")
    return {"items": [keys.KeyInfo(*row).public() for row in rows]}


@router.delete(
    "/v1/keys/{key_id}",
    tags=["keys"],
    summary="Revoke a key (admin)",
    response_model=models.KeyInfo,
    responses=errors((404, "No key has this id."), 422),
)
async def revoke_key(request: Request, caller: Admin, key_id: Annotated[int, Path(ge=1, le=2**62)]) -> dict:
    row = await fetch_one(request, keys.REVOKE_KEY, (key_id,))
    await audit(request, caller, "revoke_key", {"key_id": key_id}, "ok" if row else "not found")
    if row is None:
        raise ApiError(404, f"no key {key_id}")
    request.app.state.keys.forget()
    return keys.KeyInfo(*row).public()
