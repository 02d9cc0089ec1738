"""What every service's HTTP face shares: problem+json errors, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import EngageError, PayloadTooLarge, ValidationFailed
from shared.failures import TRANSIENT, failure_kind
from shared.metrics import HttpMetricsMiddleware, metrics_endpoint

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

ReadinessCheck = Callable[[], Awaitable[str | None]]  # None = ready, else the reason


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable machine `code` and field-level `errors`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemResponse(Response):
    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return ProblemResponse(body, status_code=status, headers=headers)


_PROBLEM_TEXT = {
    400: "Malformed request (e.g. a cursor this API did not issue)",
    401: "Missing or unknown API key",
    403: "The key lacks the required role",
    404: "No such resource",
    409: "Conflicts with the resource's current state",
    422: "Validation failed; `errors` names each field",
    429: "Over the caller's request rate; retry after `Retry-After` seconds",
    503: "Temporarily unavailable; retry after `Retry-After` seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the problem+json statuses a route can answer."""
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": _PROBLEM_TEXT[s]}
        for s in statuses
    }


async def reject_unknown_query_params(request: Request) -> None:
    """Refuse query parameters the route does not declare (a typo must not be ignored)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    allowed: set[str] = set()
    pending = [dependant]
    while pending:  # the route's own query parameters and those of its dependencies
        current = pending.pop()
        allowed.update(p.alias for p in current.query_params)
        pending.extend(current.dependencies)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ValidationFailed(
            f"unknown query parameter(s): {', '.join(unknown)}",
            code="unknown_parameter",
            extra={
                "errors": [
                    {"field": name, "message": "not a parameter of this route"} for name in unknown
                ]
            },
        )


def _install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(EngageError)
    async def engage_error(request: Request, exc: EngageError) -> Response:
        return problem(
            exc.status, exc.code, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")),
                # pydantic prefixes our validators' words with "Value error, ": noise to a user
                "message": str(e["msg"]).removeprefix("Value error, "),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(
            422, "validation_failed", "Validation failed", detail, request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route of the path; a path served by several
            # routes (GET here, PUT there) allows all their methods.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(
            exc.status_code,
            code,
            str(exc.detail),
            str(exc.detail),
            request.url.path,
            headers,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> Response:
        state = getattr(exc.orig, "sqlstate", None)
        if state == "57014":  # query_canceled: the request's statement_timeout
            seconds = getattr(request.app.state, "statement_timeout_ms", 0) / 1000
            return problem(
                503,
                "statement_timeout",
                "Took too long",
                f"the request ran longer than {seconds:g} s and was cancelled: ask for less "
                "(a shorter range, a smaller page) or retry later",
                request.url.path,
                {"Retry-After": "5"},
            )
        if failure_kind(exc) == TRANSIENT:
            return problem(
                503,
                "database_unavailable",
                "Database unavailable",
                "the database did not answer; retry after a moment",
                request.url.path,
                {"Retry-After": "2"},
            )
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(
            500,
            "internal_error",
            "Internal error",
            "an unexpected error occurred",
            request.url.path,
        )


def document_limits(app: FastAPI) -> None:
    """Every authenticated operation may answer 429 (the caller's request rate) and 503 (a
    statement over the timeout, the database away): say so in the OpenAPI document, with the
    same problem+json body its 401 has."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                responses = op.get("responses", {}) if isinstance(op, dict) else {}
                if "401" not in responses:
                    continue
                for status, text in (("429", _PROBLEM_TEXT[429]), ("503", _PROBLEM_TEXT[503])):
                    responses.setdefault(status, {**responses["401"], "description": text})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path: each asked of the router."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


MAX_REQUEST_BYTES = 1024 * 1024


BODY_READ_TIMEOUT_S = 30.0


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes` — declared (answered before reading) or streamed
    (the read stops there) — so no route ever buffers an unbounded body; 408 for a body still
    arriving `read_timeout_s` after its request began (a slow drip holds no connection for
    long). Slow *headers* are the ingress's to cut (docs/operations.md, transport limits)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, read_timeout_s: float = BODY_READ_TIMEOUT_S
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            detail = f"body is {int(declared)} bytes; at most {self.max_bytes}"
            await problem(413, "payload_too_large", "Payload too large", detail, scope["path"])(
                scope, receive, send
            )
            return
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s
        received = 0
        refusal: tuple[int, str, str, str] | None = None

        async def limited() -> Message:
            nonlocal received, refusal
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refusal = (408, "request_timeout", "Request timeout",
                           f"the body did not arrive within {self.read_timeout_s:g} s")  # fmt: skip
                raise
            if message["type"] == "http.request" and declared is None:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refusal = (413, "payload_too_large", "Payload too large",
                               f"body exceeds {self.max_bytes} bytes")  # fmt: skip
                    raise PayloadTooLarge(f"body exceeds {self.max_bytes} bytes")
            return message

        async def answer(message: Message) -> None:
            # FastAPI turns any error while reading a body into a 400; say what it was.
            if refusal is None:
                await send(message)
            elif message["type"] == "http.response.start":
                status, code, title, detail = refusal
                headers = {"Connection": "close"} if status == 408 else None
                await problem(status, code, title, detail, scope["path"], headers)(
                    scope, receive, send
                )

        await self.app(scope, limited, answer)


def create_service_app(
    *,
    service: str,
    title: str,
    description: str,
    version: str,
    lifespan: Any,
    readiness: Sequence[ReadinessCheck] | Callable[[FastAPI], Sequence[ReadinessCheck]],
    max_body_bytes: int = MAX_REQUEST_BYTES,
    body_read_timeout_s: float = BODY_READ_TIMEOUT_S,
) -> FastAPI:
    """A FastAPI app with problem+json errors, HTTP metrics, `/healthz`, `/readyz`, `/metrics`."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # Metrics go to Prometheus (SPEC §8); FastAPI's native OpenTelemetry hooks cost ~5% CPU
        # per request for nothing here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _install_problem_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=max_body_bytes, read_timeout_s=body_read_timeout_s
    )
    app.add_middleware(HttpMetricsMiddleware, service=service)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process serves requests")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: database and Kafka reachable",
        responses={503: {"model": Problem, "content": {PROBLEM_JSON: {}}}},
    )
    async def readyz(request: Request) -> Response:
        checks = readiness(request.app) if callable(readiness) else readiness
        failures = [reason for check in checks if (reason := await check()) is not None]
        if failures:
            return problem(
                503, "not_ready", "Not ready", "; ".join(failures), "/readyz", {"Retry-After": "2"}
            )
        return JSONResponse({"status": "ready"})

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app
