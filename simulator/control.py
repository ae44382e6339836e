"""The simulator's control API (HTTP, JSON): the meters' keypads, fault switches and state.

    GET  /meters                      every meter: DRN, bus, address, credit, relay, flags, faults
                                      (DL/T 645 meters, on dlt645 and plc buses, also carry
                                      their 12-digit ``dlt645_address``; their ``address`` is it)
    GET  /meters/{drn}                one meter
    POST /meters/{drn}/keypad         {"token": "1234 5678 ..."} -> the STS result, as on the display
    POST /meters/{drn}/faults         {"no_answer": true, "intermittent": 0.2, ...} (partial update)
    POST /meters/{drn}/events         {"tamper": true, "cover_open": false, "power_fail": false}
    GET  /buses                       each bus: where it is and its counters

Bad requests get 4xx with a JSON ``error`` message; the simulator keeps running.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from .fleet import Fleet
from .meter import Faults, VirtualMeter

__all__ = ["ControlResource", "meter_json"]


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def meter_json(bus: str, address: int | str, meter: VirtualMeter) -> dict[str, Any]:
    """A meter as the API shows it; ``address`` is a Modbus unit id or a DL/T 645 address."""
    body: dict[str, Any] = {
        "drn": meter.identity.drn,
        "bus": bus,
        "address": address,
        "credit_kwh": str(meter.credit_kwh()),
        "energy_kwh": round(meter.energy_wh / 1000, 2),
        "power_w": round(meter.power_w),
        "relay": "open" if meter.relay else "closed",
        "flags": sorted(meter.status_flags()),
        "faults": meter.faults.as_dict(),
        "key_revision_number": meter.decoder.state.key_revision_number,
        "tou_version": meter.tou.version,
        "clock": int(meter.now_s),
    }
    if isinstance(address, str):
        body["dlt645_address"] = address
    return body


class ControlResource(Resource):
    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet

    def render(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        try:
            body = self._dispatch(request)
        except _HttpError as exc:
            request.setResponseCode(exc.status)
            body = {"error": str(exc)}
        return json.dumps(body).encode() + b"\n"

    def _body(self, request: Request) -> dict[str, Any]:
        assert request.content is not None
        try:
            data = json.loads(request.content.read() or b"{}")
        except json.JSONDecodeError as exc:
            raise _HttpError(400, f"body is not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "body must be a JSON object")
        return data

    def _meter(self, drn: str) -> tuple[str, int | str, VirtualMeter]:
        found = self.fleet.meters_by_drn.get(drn)
        if found is None:
            raise _HttpError(404, f"no meter with DRN {drn}")
        return found

    def _dispatch(self, request: Request) -> Any:
        parts = [p.decode() for p in request.postpath or [] if p]
        method = request.method.decode() if request.method else "GET"
        now = self.fleet.clock.now()
        if parts == ["meters"] and method == "GET":
            for meter in self.fleet.meters():
                meter.advance(now)
            return [meter_json(*entry) for entry in self.fleet.meters_by_drn.values()]
        if parts == ["buses"] and method == "GET":
            return [
                {"name": e.bus.name, "where": e.where, "meters": len(e.bus.meters),
                 "stats": asdict(e.bus.stats)}
                for e in self.fleet.buses
            ]  # fmt: skip
        if len(parts) >= 2 and parts[0] == "meters":
            bus, address, meter = self._meter(parts[1])
            meter.advance(now)
            if len(parts) == 2 and method == "GET":
                return meter_json(bus, address, meter)
            if parts[2:] == ["keypad"] and method == "POST":
                token = self._body(request).get("token")
                if not isinstance(token, str):
                    raise _HttpError(400, 'give the token as a string: {"token": "..."}')
                outcome = meter.enter_token(token)
                return {
                    "result": outcome.result.label,
                    "code": int(outcome.result),
                    "accepted": outcome.accepted,
                    "detail": outcome.detail,
                    "credit_kwh": str(meter.credit_kwh()),
                }
            if parts[2:] == ["faults"] and method == "POST":
                return self._set_faults(meter, self._body(request))
            if parts[2:] == ["events"] and method == "POST":
                return self._set_events(bus, address, meter, self._body(request))
        raise _HttpError(404, f"no such endpoint: {method} /{'/'.join(parts)}")

    def _set_faults(self, meter: VirtualMeter, body: dict[str, Any]) -> dict[str, object]:
        allowed = Faults().as_dict()
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise _HttpError(400, f"unknown fault(s): {', '.join(unknown)}")
        for name, given in body.items():
            expected = type(allowed[name])
            value: object = given
            if expected is float and isinstance(given, int | float) and not isinstance(given, bool):
                value = float(given)
            if not isinstance(value, expected):
                raise _HttpError(400, f"{name} must be {expected.__name__}")
            if name == "intermittent" and not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
                raise _HttpError(400, "intermittent is a probability 0..1")
            setattr(meter.faults, name, value)
        return meter.faults.as_dict()

    def _set_events(
        self, bus: str, address: int | str, meter: VirtualMeter, body: dict[str, Any]
    ) -> Any:
        allowed = {"tamper", "cover_open", "power_fail"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise _HttpError(400, f"unknown event(s): {', '.join(unknown)}")
        for name, value in body.items():
            if not isinstance(value, bool):
                raise _HttpError(400, f"{name} must be true or false")
            setattr(meter, name, value)
        return meter_json(bus, address, meter)
