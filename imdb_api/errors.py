"""Every error the API answers is JSON of one shape: ``{"error": {"status": ..., "message": ..., "details": ...}}``."""

from __future__ import annotations

import logging

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, bearer: bool = False, retry_after: int | None = None, details=None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = {}
        if bearer:
            self.headers["WWW-Authenticate"] = "Bearer"
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)


def error_response(status: int, message: str, details=None, headers: dict | None = None) -> JSONResponse:
    body = {"status": status, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.details, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # The offending input is not echoed back: it may be huge, or a key sent in the wrong place.
        details = [{"loc": list(e["loc"]), "message": e["msg"]} for e in error.errors()]
        return error_response(422, "the request is not valid", details)

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def too_slow(request: Request, error: psycopg.errors.QueryCanceled) -> JSONResponse:
        message = "the query took too long and was cancelled; narrow it down"
        return error_response(503, message, headers={"Retry-After": "1"})

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def not_built(request: Request, error: psycopg.errors.UndefinedTable) -> JSONResponse:
        message = "the data is not loaded yet: run the imdb_refresh job"
        return error_response(503, message, headers={"Retry-After": "60"})

    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def busy(request: Request, error: psycopg_pool.PoolTimeout) -> JSONResponse:
        return error_response(503, "the API is busy; try again shortly", headers={"Retry-After": "1"})

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, error: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", error)
        return error_response(503, "the database is unavailable; try again shortly", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")
