"""The error tree and the one place that writes the contract's envelope."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from orgbill.kit.context import current_request_id
from orgbill.kit.metrics import RATE_LIMIT_REFUSALS

logger = logging.getLogger("orgbill.errors")

# Every error code of the contract, with its HTTP status.
ERROR_CODES: dict[str, int] = {
    "validation_error": 422,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "org_suspended": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "limit_exceeded": 403,
    "insufficient_credits": 402,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "internal_error": 500,
    "unavailable": 503,
}
ErrorCode = StrEnum("ErrorCode", {code: code for code in ERROR_CODES})  # type: ignore[misc]


class ErrorBody(BaseModel):
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    request_id: str | None = Field(description="The X-Request-Id of the request")
    details: list[dict[str, Any]] | dict[str, Any] | None = Field(
        default=None,
        description="validation_error: a list of {loc, msg, type}; other codes: specifics",
    )


class ErrorEnvelope(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(title="Error")

    error: ErrorBody


class OrgbillError(Exception):
    status_code = 400
    code = "bad_request"
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(OrgbillError):
    pass


class ValidationFailed(OrgbillError):
    status_code = 422
    code = "validation_error"
    message = "Request validation failed"


class Unauthorized(OrgbillError):
    status_code = 401
    code = "unauthorized"
    message = "Authentication required"


class Forbidden(OrgbillError):
    status_code = 403
    code = "forbidden"
    message = "You do not have access to this resource"


class OrgSuspended(OrgbillError):
    status_code = 403
    code = "org_suspended"
    message = "This organization is suspended"


class LimitExceeded(OrgbillError):
    status_code = 403
    code = "limit_exceeded"
    message = "Plan limit reached"


class NotFound(OrgbillError):
    status_code = 404
    code = "not_found"
    message = "Not found"


class Conflict(OrgbillError):
    status_code = 409
    code = "conflict"
    message = "Conflict"


class InsufficientCredits(OrgbillError):
    status_code = 402
    code = "insufficient_credits"
    message = "Not enough credits"


class RateLimited(OrgbillError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests"


class QuotaExceeded(OrgbillError):
    status_code = 429
    code = "quota_exceeded"
    message = "Quota exceeded"


class PayloadTooLarge(OrgbillError):
    status_code = 413
    code = "payload_too_large"
    message = "Request body too large"


class Unavailable(OrgbillError):
    status_code = 503
    code = "unavailable"
    message = "Service temporarily unavailable"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    if code == "rate_limited":
        RATE_LIMIT_REFUSALS.inc()
    error: dict[str, Any] = {"code": code, "message": message, "request_id": current_request_id()}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return error_response(500, "internal_error", "An unexpected error occurred")


def _is_database_outage(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError) or exc.connection_invalidated


async def _handle_orgbill(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrgbillError)
    if exc.status_code >= 500:
        _log_server_error(request, exc.status_code, exc, code=exc.code)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
    )
    if exc.status_code >= 500:
        _log_server_error(request, exc.status_code, exc, code=code)
    messages = {404: "Route not found", 405: "Method not allowed"}
    message = messages.get(exc.status_code) or (
        exc.detail if isinstance(exc.detail, str) else "Request failed"
    )
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def _clean_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Echo where and why, never the submitted value (it may be a password).
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


async def _handle_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "bad_request", "Malformed JSON body")
    return error_response(
        422, "validation_error", "Request validation failed", _clean_validation_errors(errors)
    )


def _cause_text(exc: BaseException) -> str:
    if isinstance(exc, OrgbillError):
        cause = exc.__cause__
        text = exc.message if cause is None else f"{exc.message} ({type(cause).__name__}: {cause})"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:500]


def _log_server_error(
    request: Request,
    status: int,
    exc: BaseException,
    *,
    code: str,
    message: str = "request failed",
) -> None:
    """Every 5xx names its cause in the log (with the request id and the traceback), never in
    the body. Statement parameters never appear: the engine hides them."""
    logger.error(
        message,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={
            "requestId": current_request_id(),
            "status": status,
            "code": code,
            "cause": _cause_text(exc),
            "path": request.url.path,
        },
    )


async def _handle_database(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _is_database_outage(exc):
        _log_server_error(
            request, 503, exc.orig or exc, code="unavailable", message="database unavailable"
        )
        return error_response(503, "unavailable", "Database unavailable, retry shortly")
    raise exc


async def _handle_os_error(request: Request, exc: Exception) -> JSONResponse:
    # asyncpg raises plain OSError/ConnectionRefusedError when the server is gone.
    _log_server_error(request, 503, exc, code="unavailable", message="database unavailable")
    return error_response(503, "unavailable", "Database unavailable, retry shortly")


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrgbillError, _handle_orgbill)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(DBAPIError, _handle_database)
    app.add_exception_handler(OSError, _handle_os_error)
