"""The head-end's web site: the operator interface (``/ui/``), the REST API (with its OpenAPI
document) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource

from ..web import UiFiles, root_redirect
from . import admin, campaigns, field, lifecycle, operations, overview, reports, tariffs, vending
from .framework import ApiResource, ApiSite, Router

__all__ = ["build_router", "make_site"]


def build_router() -> Router:
    router = Router()
    for module in (
        admin,
        overview,
        vending,
        field,
        operations,
        tariffs,
        reports,
        lifecycle,
        campaigns,
    ):
        router.include(module.router)
    return router


def _metrics(app: Any, api: ApiResource) -> CollectorRegistry:
    registry = CollectorRegistry()
    ingest, dispatcher = app.ingest, app.dispatcher
    for name, doc, read in (
        ("amr_ingest_messages", "uplink messages committed", lambda: ingest.messages),
        ("amr_ingest_readings", "readings stored (duplicates excluded)", lambda: ingest.readings),
        ("amr_ingest_duplicates", "uplink messages received again and skipped",
         lambda: ingest.duplicates),
        ("amr_ingest_malformed", "uplink messages refused as malformed", lambda: ingest.malformed),
        ("amr_ingest_gaps", "gaps seen in gateways' seq numbers", lambda: ingest.gaps),
        ("amr_ingest_failures", "ingest transactions that failed and were retried",
         lambda: ingest.failures),
        ("amr_ingest_set_aside", "uplink messages the store refused on their own, left "
         "unacknowledged", lambda: ingest.set_aside),
        ("amr_commands_published", "commands published to gateways", lambda: dispatcher.published),
        ("amr_api_requests_in_flight", "API requests being served", lambda: api.in_flight),
    ):  # fmt: skip
        gauge = Gauge(name, doc, registry=registry)
        gauge.set_function(read)
    return registry


def make_site(app: Any) -> ApiSite:
    router = build_router()
    app.router = router
    api = ApiResource(router, app)
    root = Resource()
    root.putChild(b"", root_redirect())
    root.putChild(b"ui", UiFiles())
    root.putChild(b"api", api)
    root.putChild(b"metrics", MetricsResource(registry=_metrics(app, api)))
    return ApiSite(root)
