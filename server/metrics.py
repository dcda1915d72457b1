"""Prometheus metrics (text format at ``/metrics``), one registry per process.

Each worker process exposes its own figures; Prometheus sums them. Domains
declare their own metrics on :data:`REGISTRY` next to the code they measure.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "webinar_http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY
)
HTTP_SECONDS = Histogram(
    "webinar_http_request_seconds", "HTTP request duration (seconds, until the response starts)",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("webinar_http_requests_in_flight", "HTTP requests being answered", registry=REGISTRY)
BUILD_INFO = Gauge("webinar_build_info", "Version of the running server", ["version"], registry=REGISTRY)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/webinars/{webinar_id}``): bounded label cardinality."""
    app = scope.get("app")
    for route in getattr(app, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        route = route_template(scope)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                HTTP_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - start)
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_IN_FLIGHT.dec()
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
