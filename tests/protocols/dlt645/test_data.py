"""BCD values, timestamps, status word 3 and the data identifier registry.

Expected values come from the vector file (its ``vectors``, ``data_identifiers`` and
``status_word_3_bits``) and from the layout rules in the notes (§1: packed BCD, low byte first,
implied decimals, sign in the MSB; DI sent DI0 first), never from the code under test.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from protocols.dlt645 import (
    DATA_IDENTIFIERS,
    DataFormatError,
    Dlt645UsageError,
    UnknownDataIdentifierError,
    bcd_to_decimal,
    bcd_to_int,
    decimal_to_bcd,
    decode_datetime,
    decode_value,
    di_from_wire,
    di_to_wire,
    encode_datetime,
    encode_value,
    int_to_bcd,
    lookup,
)

VECTOR_FILE = json.loads(
    (Path(__file__).parents[2] / "vectors" / "dlt645_vectors.json").read_text()
)


# -- BCD ----------------------------------------------------------------------------------------


def test_bcd_low_byte_first() -> None:
    # pub-read-energy-resp: "value_bytes_low_first": "26802211", "value_bcd_msb_first": "11228026"
    assert bcd_to_int(bytes.fromhex("26802211")) == 11228026
    assert int_to_bcd(11228026, 4) == bytes.fromhex("26802211")
    assert bcd_to_decimal(bytes.fromhex("26802211"), 2) == Decimal("112280.26")


def test_decimals_are_exact() -> None:
    assert str(bcd_to_decimal(bytes.fromhex("501200"), 3)) == "1.250"  # XXX.XXX A
    assert str(bcd_to_decimal(bytes.fromhex("402900"), 4)) == "0.2940"  # XX.XXXX kW
    assert str(bcd_to_decimal(bytes.fromhex("0000"), 1)) == "0.0"
    assert decimal_to_bcd(Decimal("0.294"), 3, 4) == bytes.fromhex("402900")
    assert decimal_to_bcd(Decimal("123.450"), 4, 2) == bytes.fromhex("45230100")
    assert decimal_to_bcd(12345, 4, 2) == bytes.fromhex("00452301")


def test_sign_bit_is_the_msb_of_the_last_byte() -> None:
    assert bcd_to_decimal(bytes.fromhex("501280"), 3, signed=True) == Decimal("-1.250")
    assert decimal_to_bcd(Decimal("-1.25"), 3, 3, signed=True) == bytes.fromhex("501280")
    assert decimal_to_bcd(Decimal("799.999"), 3, 3, signed=True) == bytes.fromhex("999979")
    with pytest.raises(Dlt645UsageError):
        decimal_to_bcd(Decimal("800"), 3, 3, signed=True)  # the top digit shares its byte
    # unsigned formats read 80H as the digits 8 and 0
    assert bcd_to_decimal(bytes.fromhex("501280"), 3) == Decimal("801.250")


@pytest.mark.parametrize("raw", ["1A", "A0", "00FF", "5012F0"])
def test_non_bcd_nibbles_are_refused(raw: str) -> None:
    with pytest.raises(DataFormatError, match="not BCD"):
        bcd_to_int(bytes.fromhex(raw))


def test_encoding_refuses_to_round_or_guess() -> None:
    with pytest.raises(Dlt645UsageError, match="no floats"):
        decimal_to_bcd(1.5, 2, 1)  # type: ignore[arg-type]
    with pytest.raises(Dlt645UsageError, match="more than 2 decimals"):
        decimal_to_bcd(Decimal("1.005"), 4, 2)
    with pytest.raises(Dlt645UsageError, match="negative"):
        decimal_to_bcd(Decimal("-1"), 4, 2)
    with pytest.raises(Dlt645UsageError, match="too large"):
        decimal_to_bcd(Decimal("1000000"), 4, 2)
    with pytest.raises(Dlt645UsageError):
        decimal_to_bcd(Decimal("NaN"), 4, 2)
    with pytest.raises(Dlt645UsageError):
        int_to_bcd(100, 1)


def test_data_identifier_wire_order() -> None:
    # pub-read-energy-req: "DI bytes are sent DI0 first: 00 00 01 00"
    assert di_to_wire("00010000") == bytes.fromhex("00 00 01 00")
    assert di_from_wire(bytes.fromhex("03 05 00 04")) == "04000503"  # con-read-status3-req
    assert di_to_wire("040005ff") == bytes.fromhex("FF 05 00 04")
    with pytest.raises(Dlt645UsageError):
        di_to_wire("0001000")


# -- values of the vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("di", "raw", "expected"),
    [
        ("00010000", "26802211", Decimal("112280.26")),  # pub-read-energy-resp
        ("00900200", "45230100", Decimal("123.45")),  # con-read-balance-resp
        ("02010100", "5223", Decimal("235.2")),  # con-read-voltage-resp
        ("02020100", "501200", Decimal("1.250")),  # con-read-current-resp
        ("02030000", "402900", Decimal("0.2940")),  # con-read-power-resp
    ],
)
def test_vector_values(di: str, raw: str, expected: Decimal) -> None:
    value = decode_value(di, bytes.fromhex(raw))
    assert value == expected
    assert str(value) == str(expected)
    assert encode_value(di, expected) == bytes.fromhex(raw)


def test_units_and_formats_of_the_vector_file() -> None:
    # "format" strings like "XXX.XXX A (sign bit)": decimals after the point, unit, sign.
    checked = 0
    for entry in VECTOR_FILE["data_identifiers"]:
        form = entry.get("format", "")
        match = re.fullmatch(r"X+\.(X+)(?: ([A-Za-z]+))?( \(sign bit\))?", form)
        if match is None:
            continue
        for di in _expand(entry["DI"]):
            registered = lookup(di)
            assert registered.decimals == len(match.group(1)), di
            if match.group(2) is not None:  # money formats state no unit here
                assert registered.unit == match.group(2), di
            assert registered.signed is bool(match.group(3)), di
            checked += 1
    assert checked == 17  # the vector file lists 17 DIs with an XX.XX format


def test_units_stated_in_the_vectors() -> None:
    # DI_meaning like "phase A current (A, XXX.XXX, 3 B, MSB=sign)" or "(yuan, XXXXXX.XX, 4 B)"
    checked = 0
    for vector in VECTOR_FILE["vectors"]:
        meaning = vector["decoded"].get("DI_meaning", "")
        match = re.search(r"\((\w+), X+\.(X+), (\d) B", meaning)
        if match is None:
            continue
        registered = lookup(vector["decoded"]["DI"])
        assert registered.unit == match.group(1)
        assert registered.decimals == len(match.group(2))
        assert registered.length == int(match.group(3))
        checked += 1
    assert checked == 10  # vectors whose DI_meaning states unit, format and length


def test_power_factor_has_no_unit() -> None:
    # notes §3: 600888's table wrongly labels the power factor "kW"
    assert lookup("02060000").unit == ""
    assert decode_value("02060000", bytes.fromhex("9980")) == Decimal("-0.099")


# -- the registry against the vector file's list ------------------------------------------------


def _expand(field: str) -> list[str]:
    """DIs named by a vector-file "DI" field: "a/b/c", "a / b", "a..b" (one byte counts up)."""
    dis: list[str] = []
    for part in re.split(r"\s*/\s*", field):
        if ".." not in part:
            dis.append(part)
            continue
        first, last = part.split("..")
        position = next(i for i in range(0, 8, 2) if first[i : i + 2] != last[i : i + 2])
        for number in range(
            int(first[position : position + 2]), int(last[position : position + 2]) + 1
        ):
            dis.append(f"{first[:position]}{number:02d}{first[position + 2 :]}")
    return dis


def _lengths(entry: dict[str, Any], count: int) -> list[int | None]:
    size = entry["bytes"]
    lengths: list[int | None]
    if isinstance(size, int):
        lengths = [size] * count
    elif size in ("variable", "4*(1+tariffs)"):
        lengths = [None] * count
    elif size == "2 each":
        lengths = [2 if i < count - 1 else 14 for i in range(count)]  # 040005FF: "2 (14)"
    else:  # "3 / 60" or "5,2,4,4,4,4"
        lengths = [int(s) for s in re.split(r"\s*[/,]\s*", size)]
    return lengths


def _listed() -> list[tuple[str, int | None]]:
    listed: list[tuple[str, int | None]] = []
    for entry in VECTOR_FILE["data_identifiers"]:
        dis = _expand(entry["DI"])
        listed.extend(zip(dis, _lengths(entry, len(dis)), strict=True))
    return listed


LISTED = _listed()


@pytest.mark.parametrize(("di", "length"), LISTED, ids=[di for di, _ in LISTED])
def test_every_listed_identifier_is_registered_with_its_length(di: str, length: int | None) -> None:
    assert lookup(di).length == length


def test_notes_section_3_identifiers_are_registered() -> None:
    # dlt645.md §3 (and the brief): energy totals and tariffs, prepayment, status word 3, ...
    for di in [
        "00000000",
        "00010100",
        "00010400",
        "00020000",
        "00900100",
        "00900101",
        "00900200",
        "00900201",
        "02800002",
        "04000503",
        "03330201",
        "1D000101",
        "1E000101",
        "04000101",
        "04000102",
        "04000401",
        "04000402",
    ]:
        assert di in DATA_IDENTIFIERS
    assert len(LISTED) == 64  # counted by hand in the vector file


def test_unknown_identifier() -> None:
    with pytest.raises(UnknownDataIdentifierError, match="0202FF00"):
        decode_value("0202FF00", b"")
    with pytest.raises(Dlt645UsageError):
        decode_value("XYZ", b"")


def test_wrong_length_names_the_identifier() -> None:
    with pytest.raises(DataFormatError, match=r"DI 00900200 .*expected 4 bytes.*got 5"):
        decode_value("00900200", bytes(5))


# -- status word 3 ------------------------------------------------------------------------------


def test_status_word_3_vector_relay_open() -> None:
    # con-read-status3-resp-relay-open: 10 00 -> 0010H -> bit4 = 1 relay open, bit6 = 0
    flags = decode_value("04000503", bytes.fromhex("1000"))
    assert isinstance(flags, dict)
    assert flags["relay_open"] is True
    assert flags["relay_command_open"] is False
    assert flags["pre_trip_alarm"] is False
    assert flags["power_protect"] is False
    assert flags["supply"] == "mains"
    assert flags["meter_type"] == "non-prepaid"
    assert flags["local_account_opened"] is True  # bit14 = 0 means opened
    assert encode_value("04000503", flags) == bytes.fromhex("1000")


@pytest.mark.parametrize(
    ("word", "name", "expected"),
    [
        # status_word_3_bits in the vector file
        (1 << 4, "relay_open", True),
        (1 << 6, "relay_command_open", True),
        (1 << 7, "pre_trip_alarm", True),
        (1 << 12, "power_protect", True),
        (1 << 13, "identity_auth_valid", True),
        (1 << 3, "programming_enabled", True),
        (0b01 << 8, "meter_type", "energy-prepaid"),
        (0b10 << 8, "meter_type", "money-prepaid"),
        (0b01 << 1, "supply", "auxiliary"),
        (0b10 << 1, "supply", "battery"),
        (1 << 14, "local_account_opened", False),
        (1 << 15, "remote_account_opened", False),
    ],
)
def test_status_word_3_bits(word: int, name: str, expected: object) -> None:
    raw = word.to_bytes(2, "little")
    flags = decode_value("04000503", raw)
    assert isinstance(flags, dict)
    assert flags[name] == expected
    assert encode_value("04000503", flags) == raw
    assert encode_value("04000503", word) == raw


def test_status_word_3_encoding_needs_every_flag() -> None:
    flags = decode_value("04000503", bytes(2))
    assert isinstance(flags, dict)
    del flags["relay_open"]
    with pytest.raises(Dlt645UsageError):
        encode_value("04000503", flags)


def test_status_word_block() -> None:
    raw = bytes.fromhex("0100 0200 1000 0400 0500 0600 0700")
    words = decode_value("040005FF", raw)
    assert isinstance(words, dict)
    assert words["status_word_1"] == 0x0001
    assert words["status_word_7"] == 0x0007
    status_3 = words["status_word_3"]
    assert isinstance(status_3, dict) and status_3["relay_open"] is True
    assert encode_value("040005FF", words) == raw


# -- times --------------------------------------------------------------------------------------


def test_broadcast_time_vector_order_is_seconds_first() -> None:
    # pub-nuc-broadcast-time: data after -33H 51 22 10 05 06 17 = 2017-06-05 10:22:51
    when = datetime(2017, 6, 5, 10, 22, 51)
    assert encode_datetime(when) == bytes.fromhex("51 22 10 05 06 17")
    assert decode_datetime(bytes.fromhex("51 22 10 05 06 17")) == when


def test_trip_and_close_times() -> None:
    # YYMMDDhhmmss, low byte first: ss mm hh DD MM YY
    raw = bytes.fromhex("00 00 15 17 05 24")
    assert decode_value("1D000101", raw) == datetime(2024, 5, 17, 15, 0, 0)
    assert decode_value("1E000101", raw) == datetime(2024, 5, 17, 15, 0, 0)
    assert encode_value("1D000101", datetime(2024, 5, 17, 15, 0, 0)) == raw


def test_a_record_that_never_happened_decodes_to_none() -> None:
    assert decode_value("1D000101", bytes(6)) is None
    assert encode_value("1D000101", None) == bytes(6)


def test_invalid_times_are_data_errors() -> None:
    with pytest.raises(DataFormatError, match="not a valid time"):
        decode_value("1D000101", bytes.fromhex("00 00 15 32 05 24"))  # 32 May
    with pytest.raises(DataFormatError, match="not BCD"):
        decode_value("1D000101", bytes.fromhex("00 00 1A 17 05 24"))


def test_times_must_be_naive_whole_seconds_this_century() -> None:
    with pytest.raises(Dlt645UsageError, match="whole seconds"):
        encode_datetime(datetime(2024, 5, 17, 15, 0, 0, 1))
    with pytest.raises(Dlt645UsageError, match="2000-2099"):
        encode_datetime(datetime(1999, 12, 31))
    with pytest.raises(Dlt645UsageError, match="naive"):
        encode_datetime(datetime.fromisoformat("2024-05-17T15:00:00+08:00"))


def test_date_and_weekday() -> None:
    # YYMMDDWW sent WW DD MM YY; 2024-05-17 was a Friday (WW 05, 00 = Sunday)
    raw = bytes.fromhex("05 17 05 24")
    assert decode_value("04000101", raw) == {"date": date(2024, 5, 17), "weekday": 5}
    assert encode_value("04000101", date(2024, 5, 17)) == raw
    assert encode_value("04000101", date(2024, 5, 19)) == bytes.fromhex("00 19 05 24")  # Sunday
    assert encode_value("04000101", {"date": date(2024, 5, 17), "weekday": 5}) == raw
    with pytest.raises(DataFormatError, match="weekday 7"):
        decode_value("04000101", bytes.fromhex("07 17 05 24"))


def test_time_of_day() -> None:
    assert decode_value("04000102", bytes.fromhex("51 22 10")) == time(10, 22, 51)
    assert encode_value("04000102", time(10, 22, 51)) == bytes.fromhex("51 22 10")


def test_purchase_date_has_minutes() -> None:
    assert decode_value("03330101", bytes.fromhex("30 14 17 05 24")) == datetime(
        2024, 5, 17, 14, 30
    )


# -- other formats ------------------------------------------------------------------------------


def test_address_and_meter_number() -> None:
    assert decode_value("04000401", bytes.fromhex("01 00 00 00 00 00")) == "000000000001"
    assert decode_value("04000402", bytes.fromhex("16 00 00 00 15 20")) == "201500000016"
    assert encode_value("04000402", "201500000016") == bytes.fromhex("16 00 00 00 15 20")


def test_purchase_count() -> None:
    assert decode_value("03330201", bytes.fromhex("34 12")) == 1234
    assert encode_value("03330201", 7) == bytes.fromhex("07 00")


def test_voltage_block() -> None:
    raw = bytes.fromhex("52 23 00 22 10 23")
    value = {"phase_a": Decimal("235.2"), "phase_b": Decimal("220.0"), "phase_c": Decimal("231.0")}
    assert decode_value("0201FF00", raw) == value
    assert encode_value("0201FF00", value) == raw


def test_energy_block_total_and_tariffs() -> None:
    raw = bytes.fromhex("26802211 00000100 26802011")
    value = decode_value("0001FF00", raw)
    assert value == {
        "total": Decimal("112280.26"),
        "tariff_1": Decimal("100.00"),
        "tariff_2": Decimal("112080.26"),
    }
    assert encode_value("0001FF00", value) == raw
    with pytest.raises(DataFormatError):
        decode_value("0001FF00", bytes(6))


def test_max_demand_and_its_time() -> None:
    # XX.XXXX kW + YYMMDDhhmm
    raw = bytes.fromhex("45 23 01 30 14 17 05 24")
    value = {"demand": Decimal("1.2345"), "time": datetime(2024, 5, 17, 14, 30)}
    assert decode_value("01010000", raw) == value
    assert encode_value("01010000", value) == raw


def test_power_down_record() -> None:
    raw = bytes.fromhex("00 00 15 17 05 24 30 01 15 17 05 24")
    value = {"start": datetime(2024, 5, 17, 15, 0), "end": datetime(2024, 5, 17, 15, 1, 30)}
    assert decode_value("03110001", raw) == value
