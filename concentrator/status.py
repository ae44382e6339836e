"""The gateway's local status page and Prometheus metrics, for the technician on site and for
monitoring.

    GET /              a page a technician reads on a laptop or a phone: link, journal, buses,
                       meters (last good read, error streak, active alarms)
    GET /health.json   the same figures as JSON (what the health message carries, plus meters)
    GET /metrics       Prometheus text exposition

The page and the metrics read a snapshot the service refreshes every few seconds, so a scrape
never waits for the journal's thread.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["StatusResource", "metric_name"]

Snapshot = Mapping[str, Any]


def metric_name(key: str) -> str:
    """``bus.rtu1.timeouts`` -> ``amr_gateway_bus_timeouts`` (the bus becomes a label)."""
    return "amr_gateway_" + key.replace(".", "_").replace("-", "_")


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        data = self.snapshot()
        gateway = str(data.get("gateway", ""))
        families: dict[str, GaugeMetricFamily] = {}

        def family(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
            if name not in families:
                families[name] = GaugeMetricFamily(name, help_text, labels=labels)
            return families[name]

        for key, raw in data.get("metrics", {}).items():
            if not isinstance(raw, int | float):
                continue
            value = float(raw)
            parts = key.split(".")
            if parts[0] == "bus" and len(parts) == 3:
                name = metric_name(f"bus.{parts[2]}")
                family(name, f"per-bus {parts[2]}", ["gateway", "bus"]).add_metric(
                    [gateway, parts[1]], value
                )
            else:
                family(metric_name(key), key, ["gateway"]).add_metric([gateway], value)
        for meter in data.get("meters", []):
            labels = [gateway, meter["meter"]]
            age = meter.get("last_good_age_s")
            if age is not None:
                family("amr_gateway_meter_last_good_age_seconds", "seconds since the last good read",
                       ["gateway", "meter"]).add_metric(labels, age)  # fmt: skip
            streak = family("amr_gateway_meter_error_streak", "consecutive failed reads",
                            ["gateway", "meter"])  # fmt: skip
            streak.add_metric(labels, meter["error_streak"])
        return list(families.values())


class StatusResource(Resource):
    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SnapshotCollector(snapshot))

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - Twisted's name
        path = request.path.decode() if request.path else "/"
        if path == "/metrics":
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            return generate_latest(self.registry)
        if path == "/health.json":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(self.snapshot(), default=str).encode()
        if path in ("/", "/index.html"):
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return _page(self.snapshot()).encode()
        request.setResponseCode(404)
        return b"not found\n"


def _page(data: Snapshot) -> str:
    metrics = data.get("metrics", {})
    escape = html.escape

    def row(cells: Iterable[object], header: bool = False) -> str:
        tag = "th" if header else "td"
        return "<tr>" + "".join(f"<{tag}>{escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    link = "connected" if metrics.get("mqtt.connected") else "NOT CONNECTED"
    buses = sorted({k.split(".")[1] for k in metrics if k.startswith("bus.")})
    bus_rows = [row(["bus", "open", "busy", "requests", "timeouts", "CRC errors", "queue",
                     "dead meters"], header=True)]  # fmt: skip
    for bus in buses:

        def m(name: str, bus: str = bus) -> Any:
            return metrics.get(f"bus.{bus}.{name}", "")

        busy = m("utilisation")
        bus_rows.append(row([bus, "yes" if m("connected") else "NO", f"{float(busy or 0):.0%}",
                             m("requests"), m("timeouts"), m("crc_errors"), m("queue_depth"),
                             m("open_breakers")]))  # fmt: skip
    meter_rows = [row(["meter", "bus", "last good read", "error streak", "alarms"], header=True)]
    for meter in data.get("meters", []):
        age = meter.get("last_good_age_s")
        meter_rows.append(row([meter["meter"], meter["bus"],
                               "never" if age is None else f"{age:.0f} s ago",
                               meter["error_streak"], ", ".join(meter["alarms"]) or "-"]))  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta http-equiv="refresh" content="10"><title>Gateway {escape(str(data.get("gateway")))}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #999;padding:.3em .6em;text-align:left}}</style></head><body>
<h1>Gateway {escape(str(data.get("gateway")))}</h1>
<p>Head-end link: <strong>{link}</strong> (reconnects: {escape(str(metrics.get("mqtt.reconnects", 0)))});
journal backlog: {escape(str(metrics.get("journal.entries", 0)))} messages,
oldest {escape(str(metrics.get("journal.oldest_age_s", 0)))} s;
unacknowledged on the link: {escape(str(metrics.get("uplink.unacknowledged", 0)))}.</p>
<h2>Buses</h2><table>{"".join(bus_rows)}</table>
<h2>Meters</h2><table>{"".join(meter_rows)}</table>
<p>Updated every few seconds. Metrics: <a href="/metrics">/metrics</a>,
<a href="/health.json">/health.json</a>.</p></body></html>
"""
