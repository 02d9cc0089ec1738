"""One error hierarchy, rendered as RFC 9457 problem+json by one handler."""

from __future__ import annotations

from typing import Any


class EngageError(Exception):
    """A failure with an HTTP status, a stable machine code and a human detail."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(EngageError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(EngageError):
    status, code, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str = "missing or unknown API key") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="engage"'})


class Forbidden(EngageError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(EngageError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(EngageError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(EngageError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(EngageError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(EngageError):
    status, code, title = 422, "validation_failed", "Validation failed"


class RateLimited(EngageError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_s))})


class Unavailable(EngageError):
    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, retry_after_s: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_s))})
