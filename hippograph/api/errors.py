"""Every error is JSON `{"error", "reason", "status"}` with the right status; nothing escapes as a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from hippograph.stores.errors import HippographError

log = logging.getLogger(__name__)

def _error(status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, "status": status}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HippographError)
    async def hippograph_error(_: Request, exc: HippographError) -> JSONResponse:
        return _error(exc.status_code, type(exc).__name__, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _error(exc.status_code, "HTTPError", reason, getattr(exc, "headers", None))

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's errors are dicts; LangServe raises some as plain strings ("Invalid JSON body").
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} if isinstance(e, dict)
                  else {"loc": [], "msg": str(e)} for e in exc.errors()]
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
        response = _error(422, "ValidationError", reason)
        response.body = response.render({"error": "ValidationError", "reason": reason, "status": 422,
                                         "errors": errors})
        response.headers["content-length"] = str(len(response.body))
        return response

    @app.exception_handler(ValidationError)
    async def pydantic_error(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, "ValidationError", str(exc).splitlines()[0] if str(exc) else "invalid input")

    @app.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return _error(422, "InvalidInput", str(exc) or "invalid input")

    @app.exception_handler(RecursionError)
    async def recursion_error(_: Request, exc: RecursionError) -> JSONResponse:
        return _error(422, "InvalidInput", "input is nested too deeply")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: logged with its traceback, answered as JSON without internals.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "InternalError", "internal server error (logged on the server)")
