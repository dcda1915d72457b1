"""Prometheus metrics (text format at ``/metrics``), one registry per process.

Each worker process exposes its own figures; Prometheus sums them. Domains
declare their own metrics on :data:`REGISTRY` next to the code they measure.

HTTP requests are counted by method, route template and status. Requests
served by a lean path in front of the middleware stack (a running live's
playlists and parts, :class:`player.origin.LiveMediaPath`) call
:func:`count_request` instead: they are counted under the same route
template, but have no duration sample (a blocking playlist request waits for
the next part on purpose) and are not in the in-flight gauge.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from starlette.requests import Request
from starlette.responses import Response
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
    """The path template of the route the router chose (``/webinars/{webinar_id}``):
    bounded label cardinality. Read after routing (the router leaves the route in
    ``scope["route"]``), so no request is matched twice; ``unmatched`` without one."""
    route = scope.get("route")
    return str(getattr(route, "path", "other")) if route is not None else "unmatched"


_counters: dict[tuple[str, str, int], MetricWrapperBase] = {}


def count_request(method: str, route: str, status: int) -> None:
    """Count one request answered outside :class:`MetricsMiddleware` (see the module
    docstring). ``route`` must be a route template (bounded cardinality)."""
    key = (method, route, status)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = HTTP_REQUESTS.labels(method, route, str(status))
    counter.inc()  # type: ignore[attr-defined]


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
                HTTP_SECONDS.labels(scope["method"], route_template(scope)).observe(time.perf_counter() - start)
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_IN_FLIGHT.dec()
            HTTP_REQUESTS.labels(scope["method"], route_template(scope), str(status)).inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
