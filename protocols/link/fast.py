"""A fast path for the one message that dominates ingest: a batch of readings.

:func:`decode_message` builds a :class:`Reading` per reading with every value as an exact
``Decimal`` and a location string for every field, which is what makes its errors precise, and
what makes it cost several times a database insert per reading. A head-end ingesting a million
meters wants the readings as rows, with each reading's values as compact JSON for storage.

:func:`fast_readings` parses with orjson and checks the same rules as :func:`decode_message`
(version, gateway id, seq, times, meter ids, value types), but it only *accepts*: for anything it
does not recognise as plainly valid it returns None, and the caller decodes the slow way, which
then says exactly what is wrong. So it never accepts a payload that :func:`decode_message`
refuses (a Hypothesis test in ``tests/protocols/link`` holds it to that).

Values come back as JSON numbers re-serialised by orjson: a float's shortest repr, which is the
exact decimal text for the <= 15 significant digits readings carry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from .messages import MAX_PAYLOAD_BYTES, VERSION

__all__ = ["FastReading", "FastReadings", "fast_readings"]

_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEQ_LIMIT = 2**63
_TIME_LIMIT = 1e11


class FastReading(NamedTuple):
    """One reading (a tuple: building a dataclass per reading costs more than storing it)."""

    meter: str
    time: float
    meter_time: float | None
    values_json: str
    energy_kwh: float | int | None  # energy_import_total, as sent
    credit_kwh: float | int | None  # credit_remaining, as sent
    flagged: bool  # has one of the value names the caller asked about


@dataclass(frozen=True, slots=True)
class FastReadings:
    gateway: str
    seq: int
    time: float
    readings: tuple[FastReading, ...]


def _time(value: Any) -> float | None:
    kind = type(value)
    if kind is not int and kind is not float:
        return None
    number = float(value)
    if not math.isfinite(number) or not 0 <= number < _TIME_LIMIT:
        return None
    return number


def _number(value: Any) -> float | int | None:
    kind = type(value)
    return value if kind is int or kind is float else None


def fast_readings(payload: bytes, flagged: frozenset[str] = frozenset()) -> FastReadings | None:
    """The readings of a plainly valid ``readings`` payload, or None (decode it the slow way).

    A reading with any of the ``flagged`` value names has ``flagged`` set (the head-end takes
    identity readings the slow way, to update the meter's key attributes)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or body.get("v") != VERSION or type(body.get("v")) is not int:
        return None
    gateway, seq, time, items = body.get("gw"), body.get("seq"), body.get("t"), body.get("r")
    if type(gateway) is not str or not _GATEWAY_ID.match(gateway):
        return None
    if type(seq) is not int or not 0 <= seq < _SEQ_LIMIT:
        return None
    batch_time = _time(time)
    if batch_time is None or type(items) is not list:
        return None
    readings = []
    dumps = orjson.dumps
    for item in items:
        if type(item) is not dict:
            return None
        meter, values = item.get("m"), item.get("v")
        if type(meter) is not str or len(meter) > 64 or type(values) is not dict:
            return None
        reading_time = _time(item.get("t"))
        meter_time_raw = item.get("mt")
        meter_time = None if meter_time_raw is None else _time(meter_time_raw)
        if reading_time is None or (meter_time_raw is not None and meter_time is None):
            return None
        text = dumps(values)
        # values are numbers, text, true/false or null: orjson gives nothing else but objects
        # and arrays, and their brackets can only show inside the text as nesting (or in a string,
        # which the slow path then checks properly)
        if b"[" in text or b"{" in text[1:]:
            return None
        readings.append(FastReading._make((
            meter, reading_time, meter_time, text.decode(),
            _number(values.get("energy_import_total")), _number(values.get("credit_remaining")),
            not flagged.isdisjoint(values),
        )))  # fmt: skip
    return FastReadings(gateway, seq, batch_time, tuple(readings))
