"""Prometheus metrics every service exposes (SPEC §8), and the ASGI middleware that counts HTTP."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "engage_http_requests_total",
    "HTTP requests by service, route template, method and status.",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "engage_http_request_duration_seconds",
    "HTTP request latency by service and route template.",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# Expensive requests (shared/heavy.py): simulations, reports, segment counts.
HEAVY_RUNNING = Gauge(
    "engage_heavy_requests_running",
    "Expensive requests running now, by service and kind.",
    ["service", "kind"],
)
HEAVY_REFUSED = Counter(
    "engage_heavy_requests_refused_total",
    "Expensive requests refused with 429, by service, kind and the limit that was full "
    "(service or key).",
    ["service", "kind", "limit"],
)


class HttpMetricsMiddleware:
    """Counts requests per route *template* (never a raw path: bounded label cardinality)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, template, method, str(status)).inc()
            HTTP_LATENCY.labels(self.service, template, method).observe(time.perf_counter() - start)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
