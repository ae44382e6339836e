"""The fast readings path accepts only what the full decoder accepts, and reads it the same way."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.link import LinkError, ReadingBatch, Topic, decode_message
from protocols.link.fast import fast_readings

GOOD = {"v": 1, "gw": "gw-1", "seq": 7, "t": 1767225600.5,
        "r": [{"m": "01234567897", "t": 1767225600.0, "mt": None,
               "v": {"energy_import_total": 1000.05, "relay_state": "closed", "flags": 3,
                     "ok": True, "gone": None}}]}  # fmt: skip


def _agree(payload: bytes) -> None:
    fast = fast_readings(payload)
    try:
        full = decode_message(Topic.READINGS, payload)
    except LinkError:
        assert fast is None, payload  # never accepts what the full decoder refuses
        return
    if fast is None:
        return  # allowed: the fast path may leave any payload to the full decoder
    assert isinstance(full, ReadingBatch)
    assert (fast.gateway, fast.seq, fast.time) == (full.gateway, full.seq, full.time)
    assert len(fast.readings) == len(full.readings)
    for quick, slow in zip(fast.readings, full.readings, strict=True):
        assert (quick.meter, quick.time, quick.meter_time) == (slow.meter, slow.time,
                                                               slow.meter_time)  # fmt: skip
        stored = json.loads(quick.values_json, parse_float=Decimal)
        assert stored == dict(slow.values)


def test_a_plain_batch_takes_the_fast_path_and_keeps_every_value() -> None:
    payload = json.dumps(GOOD).encode()
    fast = fast_readings(payload, frozenset({"flags"}))
    assert fast is not None and fast.readings[0].energy_kwh == 1000.05
    assert fast.flagged
    _agree(payload)


def test_what_the_full_decoder_refuses_is_never_fast() -> None:
    for change in ({"v": 2}, {"gw": "gw/1"}, {"seq": -1}, {"seq": True}, {"t": "now"},
                   {"r": [{"m": "x" * 65, "t": 1.0, "v": {}}]},
                   {"r": [{"m": "1", "t": 1.0, "v": {"a": [1]}}]},
                   {"r": [{"m": "1", "t": 1.0, "v": {"a": {"b": 1}}}]},
                   {"r": [{"m": "1", "t": 1e12, "v": {}}]},
                   {"r": [{"m": "1", "t": 1.0, "mt": "x", "v": {}}]}):  # fmt: skip
        payload = json.dumps(GOOD | change).encode()
        assert fast_readings(payload) is None, change
        _agree(payload)
    assert fast_readings(b"{not json") is None
    assert fast_readings(b'{"v":1,"gw":"g","seq":1,"t":1,"r":[],"x":NaN}') is None


def test_an_integer_beyond_64_bits_keeps_every_digit() -> None:
    """orjson reads it as a float; the fast path leaves it to the full decoder, which does not."""
    for value in (2**64, -(2**63) - 1, 10**30):
        payload = json.dumps(GOOD | {"r": [{"m": "1", "t": 1.0, "v": {"a": value}}]}).encode()
        assert fast_readings(payload) is None, value
        _agree(payload)
    payload = json.dumps(GOOD | {"r": [{"m": "1", "t": 1.0, "v": {"a": 2**64 - 1}}]}).encode()
    fast = fast_readings(payload)
    assert fast is not None and fast.values_json == ('{"a":18446744073709551615}',)


def test_readings_come_in_columns_in_their_order() -> None:
    body = GOOD | {"r": [{"m": "a", "t": 2, "mt": 1, "v": {"credit_remaining": 5}},
                         {"m": "b", "t": 3.5, "v": {"energy_import_total": "x"}},
                         {"m": "c", "t": 4.0, "mt": 3.5, "v": {}}]}  # fmt: skip
    fast = fast_readings(json.dumps(body).encode())
    assert fast is not None and len(fast) == 3
    assert fast.meters == ("a", "b", "c")
    assert fast.times == (2.0, 3.5, 4.0) and all(type(t) is float for t in fast.times)
    assert fast.meter_times == (1.0, None, 3.5)
    assert fast.values_json == ('{"credit_remaining":5}', '{"energy_import_total":"x"}', "{}")
    assert fast.energy_kwh == (None, None, None)  # text is not an energy
    assert fast.credit_kwh == (5, None, None)
    assert not fast.flagged
    empty = fast_readings(json.dumps(GOOD | {"r": []}).encode())
    assert empty is not None and len(empty) == 0 and empty.readings == ()


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))  # fmt: skip
values = st.dictionaries(st.text(max_size=6), st.one_of(scalars, st.lists(scalars, max_size=2)),
                         max_size=5)  # fmt: skip
times = st.one_of(st.floats(-10, 2e11), st.integers(-10, 2 * 10**11), st.text(max_size=3),
                  st.none())  # fmt: skip
readings = st.fixed_dictionaries({"m": st.text(max_size=70), "t": times, "v": values},
                                 optional={"mt": times})  # fmt: skip
bodies = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2, True]), "gw": st.sampled_from(["gw-1", "", "g w", "gw+"]),
     "seq": st.one_of(st.integers(-2, 2**64), st.booleans()), "t": times,
     "r": st.lists(readings, max_size=3)}
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_the_fast_path_is_a_subset_of_the_full_decoder(body: dict[str, Any]) -> None:
    _agree(json.dumps(body).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_agree(payload: bytes) -> None:
    _agree(payload)
