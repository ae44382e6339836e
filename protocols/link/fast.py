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

The readings come back column by column (:class:`FastReadings`), checked a column at a time
(``set(map(type, column))``, ``min``/``max``) rather than reading by reading: a Python statement
per reading is what this path exists to avoid.

Values come back as JSON numbers re-serialised by orjson: a float's shortest repr, which is the
exact decimal text for the <= 15 significant digits readings carry. orjson reads an integer beyond
64 bits as a float, which would round it; such a float (and any other of 1e16 or more) is written
with an exponent ``e+``, and a batch with a ``+`` in its values takes the slow path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from .messages import MAX_PAYLOAD_BYTES, VERSION

__all__ = ["FastReading", "FastReadings", "fast_readings"]

_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEQ_LIMIT = 2**63
_TIME_LIMIT = 1e11
_METER_LIMIT = 64
_NUMBER = frozenset({int, float})
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
_TEXT = frozenset({str})
_OBJECT = frozenset({dict})

Number = float | int | None


class FastReading(NamedTuple):
    """One reading of a :class:`FastReadings`, as a row (for tests and the odd caller)."""

    meter: str
    time: float
    meter_time: float | None
    values_json: str
    energy_kwh: Number
    credit_kwh: Number


@dataclass(frozen=True, slots=True)
class FastReadings:
    """A batch of readings, column by column: reading ``i`` is ``meters[i]``, ``times[i]``...

    ``energy_kwh`` and ``credit_kwh`` are the ``energy_import_total`` and ``credit_remaining``
    values as sent when they are numbers, else None. ``flagged``: some reading has one of the value
    names the caller asked about."""

    gateway: str
    seq: int
    time: float
    meters: tuple[str, ...]
    times: tuple[float, ...]
    meter_times: tuple[float | None, ...]
    values_json: tuple[str, ...]
    energy_kwh: tuple[Number, ...]
    credit_kwh: tuple[Number, ...]
    flagged: bool = False

    def __len__(self) -> int:
        return len(self.meters)

    @property
    def readings(self) -> tuple[FastReading, ...]:
        columns = (self.meters, self.times, self.meter_times, self.values_json, self.energy_kwh,
                   self.credit_kwh)  # fmt: skip
        return tuple(map(FastReading._make, zip(*columns, strict=True)))


def _times(column: list[Any]) -> list[float] | None:
    """The column as floats if every entry is a time in seconds since 1970, else None.

    orjson gives no NaN or infinity, and a bool is not an int here (``type``, not isinstance)."""
    if not column:
        return column
    kinds = set(map(type, column))
    if not kinds <= _NUMBER or min(column) < 0 or max(column) >= _TIME_LIMIT:
        return None
    return column if kinds == {float} else [float(t) for t in column]


def _numbers(column: list[Any]) -> tuple[Number, ...]:
    if set(map(type, column)) <= _NUMBER_OR_NONE:
        return tuple(column)
    return tuple(v if type(v) is int or type(v) is float else None for v in column)


def fast_readings(payload: bytes, flagged: frozenset[str] = frozenset()) -> FastReadings | None:
    """The readings of a plainly valid ``readings`` payload, or None (decode it the slow way).

    ``flagged`` is set when any reading has one of the ``flagged`` value names (the head-end takes
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
    batch_time = _times([time])
    if batch_time is None or type(items) is not list:
        return None
    if items and set(map(type, items)) != _OBJECT:
        return None
    meters = [item.get("m") for item in items]
    values = [item.get("v") for item in items]
    if items and (set(map(type, meters)) != _TEXT or max(map(len, meters)) > _METER_LIMIT
                  or set(map(type, values)) != _OBJECT):  # fmt: skip
        return None
    if "\x00" in "".join(meters):  # a store cannot hold it: the full decoder says so
        return None
    times = _times([item.get("t") for item in items])
    meter_times: list[float | None] = [item.get("mt") for item in items]
    sent = [t for t in meter_times if t is not None]
    sent_times = _times(sent)
    if times is None or sent_times is None:
        return None
    if sent_times is not sent:  # some were ints: put the floats back in their places
        as_float = iter(sent_times)
        meter_times = [None if t is None else next(as_float) for t in meter_times]
    texts = [orjson.dumps(v) for v in values]
    joined = b"".join(texts)
    # values are numbers, text, true/false or null: one "{" per reading (its own) and no "["
    # means no value is an object or an array (nor a string holding a bracket: the slow path
    # checks those properly); "+": an exponent, see the module docstring
    if joined.count(b"{") != len(texts) or b"[" in joined or b"+" in joined:
        return None
    return FastReadings(
        gateway, seq, batch_time[0], tuple(meters), tuple(times), tuple(meter_times),
        tuple(map(bytes.decode, texts)),
        _numbers([v.get("energy_import_total") for v in values]),
        _numbers([v.get("credit_remaining") for v in values]),
        any(any(map(dict.__contains__, values, repeat(name))) for name in flagged),
    )  # fmt: skip
