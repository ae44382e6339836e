"""DL/T 645-2007 data identifiers and value formats: BCD numbers, times, status words. Pure.

A read reply's data field is the 4-byte data identifier (DI) and then the value (notes §1)::

    DI0 DI1 DI2 DI3 | N1 N2 ... Nm
    DI sent DI0 first: "00900200" (DI3 DI2 DI1 DI0 = 00 90 02 00) is sent 00 02 90 00

Numbers are packed BCD, low byte first, with the decimal point implied by the DI's format::

    XXXXXX.XX kWh, 4 bytes:  26 80 22 11  ->  digits 11 22 80 26  ->  112280.26 kWh
    XXX.XXX A (signed), 3:   50 12 80     ->  bit 7 of the last byte is the sign: -1.250 A

Timestamps follow the same low-byte-first rule, so ``YYMMDDhhmmss`` is sent ss mm hh DD MM YY
(the order the broadcast time sync uses, notes §5). DL/T 645 years are two digits: 20YY.

Values are exact: numbers decode to :class:`~decimal.Decimal` with exactly the format's decimals
(never float), counts to int, timestamps to naive datetimes (the meter's local wall clock), and
:func:`encode_value` refuses a number it would have to round. ``encode_value(di,
decode_value(di, raw)) == raw`` for every well-formed ``raw``.

The registry holds the DIs a prepaid head-end needs: the vector file's ``data_identifiers`` list
and the notes' §3 table (sources there: Clou ``DL645V07.cpp``, 600888/dlt645 ``variable_types.py``,
coyool/XXOO_000 ``dd645_2007.c``, sqf-ice/SY03A ``uartx.c`` for status word 3), plus tariffs 1-4 of
the energy totals (DI1 = tariff number). Event records whose inner layout the notes do not give
are registered as raw bytes of their stated length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import TypeAlias

from .frame import DataFormatError, Dlt645UsageError

__all__ = [
    "DATA_IDENTIFIERS",
    "DataIdentifier",
    "Kind",
    "UnknownDataIdentifierError",
    "Value",
    "ValueFormat",
    "bcd_to_decimal",
    "bcd_to_int",
    "decimal_to_bcd",
    "decode_datetime",
    "decode_status_word_3",
    "decode_value",
    "di_from_wire",
    "di_to_wire",
    "encode_datetime",
    "encode_status_word_3",
    "encode_value",
    "int_to_bcd",
    "lookup",
    "normalise_di",
]

# A decoded value. Records and blocks decode to dicts of values, status word 3 to named flags.
Value: TypeAlias = Decimal | int | str | bytes | datetime | date | time | dict[str, "Value"] | None


class UnknownDataIdentifierError(Dlt645UsageError, LookupError):
    """A DI that is not in the registry (see :data:`DATA_IDENTIFIERS`)."""


# -- data identifiers ---------------------------------------------------------------------------

_DI = re.compile(r"[0-9A-F]{8}")


def normalise_di(di: str) -> str:
    """``di`` as 8 upper-case hex digits, DI3 first (``"00900200"``); Dlt645UsageError if not."""
    if not isinstance(di, str) or _DI.fullmatch(di.upper()) is None:
        raise Dlt645UsageError(f"data identifier {di!r} is not 8 hex digits (DI3 DI2 DI1 DI0)")
    return di.upper()


def di_to_wire(di: str) -> bytes:
    """The 4 DI bytes in transmission order, DI0 first."""
    return bytes.fromhex(normalise_di(di))[::-1]


def di_from_wire(raw: bytes) -> str:
    """The DI string of 4 bytes received DI0 first."""
    if len(raw) != 4:
        raise DataFormatError(f"a data identifier is 4 bytes, got {len(raw)}")
    return bytes(raw[::-1]).hex().upper()


# -- BCD ----------------------------------------------------------------------------------------


def bcd_to_int(raw: bytes, *, signed: bool = False) -> int:
    """Packed BCD, low byte first; with ``signed`` bit 7 of the last byte is the sign.

    DataFormatError names the first byte with a nibble above 9.
    """
    value = 0
    last = len(raw) - 1
    for index in range(last, -1, -1):
        byte = raw[index]
        if signed and index == last:
            byte &= 0x7F
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise DataFormatError(f"byte {index} of {bytes(raw).hex(' ').upper()} is not BCD")
        value = value * 100 + high * 10 + low
    if signed and raw and raw[last] & 0x80:
        value = -value
    return value


def int_to_bcd(value: int, length: int) -> bytes:
    """``value`` (0 .. 10**(2*length) - 1) as ``length`` bytes of packed BCD, low byte first."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Dlt645UsageError(f"BCD needs an int, not {type(value).__name__}")
    if not 0 <= value < 10 ** (2 * length):
        raise Dlt645UsageError(f"{value} does not fit {length} BCD bytes")
    out = bytearray()
    for _ in range(length):
        value, pair = divmod(value, 100)
        out.append((pair // 10) << 4 | pair % 10)
    return bytes(out)


def bcd_to_decimal(raw: bytes, decimals: int, *, signed: bool = False) -> Decimal:
    """A BCD number with ``decimals`` implied decimals, exactly (``-0`` keeps its sign bit)."""
    magnitude = abs(bcd_to_int(raw, signed=signed))
    negative = signed and bool(raw) and bool(raw[-1] & 0x80)
    digits = tuple(int(c) for c in str(magnitude))
    return Decimal((1 if negative else 0, digits, -decimals))


def decimal_to_bcd(
    value: Decimal | int, length: int, decimals: int, *, signed: bool = False
) -> bytes:
    """``value`` as BCD with ``decimals`` implied decimals; refuses to round or to drop a sign."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise Dlt645UsageError(
            f"a BCD number takes a Decimal or an int, not {type(value).__name__} (no floats)"
        )
    number = Decimal(value)
    if not number.is_finite():
        raise Dlt645UsageError(f"{value} is not a finite number")
    negative = number.is_signed()
    if negative and not signed:
        raise Dlt645UsageError(f"{value} is negative; this format has no sign bit")
    _, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    coefficient = int("".join(map(str, digit_tuple)) or "0")
    shift = exponent + decimals
    if shift >= 0:
        scaled = coefficient * 10**shift
    else:
        scaled, dropped = divmod(coefficient, 10**-shift)
        if dropped:
            raise Dlt645UsageError(f"{value} has more than {decimals} decimals; round it first")
    limit = 8 * 10 ** (2 * length - 1) if signed else 10 ** (2 * length)
    if scaled >= limit:
        raise Dlt645UsageError(f"{value} is too large for {length} BCD bytes, {decimals} decimals")
    raw = bytearray(int_to_bcd(scaled, length))
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)


def _bcd_fields(raw: bytes) -> list[int]:
    return [bcd_to_int(raw[i : i + 1]) for i in range(len(raw))]


# -- timestamps ---------------------------------------------------------------------------------


def _check_wall_clock(when: datetime, what: str) -> None:
    if not isinstance(when, datetime):
        raise Dlt645UsageError(f"{what} must be a datetime, not {type(when).__name__}")
    if when.tzinfo is not None:
        raise Dlt645UsageError(f"{what}: pass the meter's local wall-clock time (a naive datetime)")
    if not 2000 <= when.year <= 2099:
        raise Dlt645UsageError(
            f"{what}: DL/T 645 years are 2000-2099 (two digits), not {when.year}"
        )


def encode_datetime(when: datetime) -> bytes:
    """YYMMDDhhmmss as sent: ss mm hh DD MM YY. Seconds resolution (no microseconds)."""
    _check_wall_clock(when, "time")
    if when.microsecond:
        raise Dlt645UsageError("DL/T 645 times have whole seconds; drop the microseconds first")
    fields = (when.second, when.minute, when.hour, when.day, when.month, when.year - 2000)
    return b"".join(int_to_bcd(f, 1) for f in fields)


def decode_datetime(raw: bytes) -> datetime:
    """The datetime of ss mm hh DD MM YY (6 BCD bytes); DataFormatError if it is no real time."""
    if len(raw) != 6:
        raise DataFormatError(f"a YYMMDDhhmmss time is 6 bytes, got {len(raw)}")
    second, minute, hour, day, month, year = _bcd_fields(raw)
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise DataFormatError(f"{bytes(raw).hex(' ').upper()} is not a valid time: {exc}") from exc


def _decode_minutes(raw: bytes) -> datetime:
    minute, hour, day, month, year = _bcd_fields(raw)
    try:
        return datetime(2000 + year, month, day, hour, minute)
    except ValueError as exc:
        raise DataFormatError(f"{bytes(raw).hex(' ').upper()} is not a valid time: {exc}") from exc


def _encode_minutes(when: datetime) -> bytes:
    _check_wall_clock(when, "time")
    if when.second or when.microsecond:
        raise Dlt645UsageError("a YYMMDDhhmm time has whole minutes; drop the seconds first")
    fields = (when.minute, when.hour, when.day, when.month, when.year - 2000)
    return b"".join(int_to_bcd(f, 1) for f in fields)


# -- status word 3 ------------------------------------------------------------------------------
#
# Bit map from sqf-ice/SY03A uartx.c, as listed in the vector file (``status_word_3_bits``). The
# two account bits are inverted on the wire ("0 = opened"); the flags below say what is true.

_SUPPLY = ("mains", "auxiliary", "battery", "reserved")
_METER_TYPE = ("non-prepaid", "energy-prepaid", "money-prepaid", "reserved")
_STATUS_3_BITS = (
    ("time_slot_table_2", 0),  # 1 = the second time-slot table is running
    ("programming_enabled", 3),
    ("relay_open", 4),  # actual relay state: 0 closed, 1 open
    ("time_zone_table_2", 5),
    ("relay_command_open", 6),  # the relay command state: 0 close, 1 open
    ("pre_trip_alarm", 7),
    ("step_tariff_table_2", 10),
    ("step_set_2", 11),
    ("power_protect", 12),
    ("identity_auth_valid", 13),
)
_STATUS_3_KEYS = frozenset(
    [name for name, _ in _STATUS_3_BITS]
    + ["supply", "meter_type", "local_account_opened", "remote_account_opened"]
)


def decode_status_word_3(raw: bytes) -> dict[str, Value]:
    """Running status word 3 (DI 04000503, 2 bytes, low byte first) as named flags."""
    if len(raw) != 2:
        raise DataFormatError(f"status word 3 is 2 bytes, got {len(raw)}")
    word = raw[0] | raw[1] << 8
    flags: dict[str, Value] = {name: bool(word >> bit & 1) for name, bit in _STATUS_3_BITS}
    flags["supply"] = _SUPPLY[word >> 1 & 3]
    flags["meter_type"] = _METER_TYPE[word >> 8 & 3]
    flags["local_account_opened"] = not word >> 14 & 1
    flags["remote_account_opened"] = not word >> 15 & 1
    return flags


def encode_status_word_3(flags: Mapping[str, object]) -> bytes:
    """The 2 bytes of status word 3 from the flags :func:`decode_status_word_3` gives."""
    if not isinstance(flags, Mapping) or set(flags) != _STATUS_3_KEYS:
        raise Dlt645UsageError(f"status word 3 needs exactly the flags {sorted(_STATUS_3_KEYS)}")
    word = 0
    for name, bit in _STATUS_3_BITS:
        word |= _flag(flags, name) << bit
    word |= _choice(flags, "supply", _SUPPLY) << 1
    word |= _choice(flags, "meter_type", _METER_TYPE) << 8
    word |= (not _flag(flags, "local_account_opened")) << 14
    word |= (not _flag(flags, "remote_account_opened")) << 15
    return bytes((word & 0xFF, word >> 8))


def _flag(flags: Mapping[str, object], name: str) -> int:
    value = flags[name]
    if not isinstance(value, bool):
        raise Dlt645UsageError(f"status word 3 flag {name} must be a bool")
    return int(value)


def _choice(flags: Mapping[str, object], name: str, names: tuple[str, ...]) -> int:
    value = flags[name]
    if value not in names:
        raise Dlt645UsageError(f"status word 3 {name} must be one of {names}, not {value!r}")
    return names.index(str(value))


# -- formats ------------------------------------------------------------------------------------


class Kind(Enum):
    """How a value's bytes are laid out."""

    NUMBER = "number"  # BCD with implied decimals -> Decimal
    COUNT = "count"  # BCD integer -> int
    WORD = "word"  # binary 16-bit word, low byte first -> int
    STATUS_WORD_3 = "status word 3"  # -> dict of named flags
    DATETIME = "YYMMDDhhmmss"  # -> datetime, or None for an all-zero (never happened) record
    DATETIME_MINUTES = "YYMMDDhhmm"  # -> datetime, or None for all zeros
    DATE_WEEKDAY = "YYMMDDWW"  # -> {"date": date, "weekday": 0 (Sunday) .. 6}
    TIME = "hhmmss"  # -> time
    DIGITS = "12 BCD digits"  # -> str, printed most significant digit first
    RECORD = "record"  # fields one after the other -> dict
    TARIFF_BLOCK = "total + tariffs"  # 4-byte XXXXXX.XX kWh each -> {"total", "tariff_1", ...}
    RAW = "raw"  # layout not modelled -> bytes


@dataclass(frozen=True, slots=True)
class ValueFormat:
    """The layout of one value; ``length`` None = variable length."""

    kind: Kind
    length: int | None
    decimals: int = 0
    signed: bool = False
    unit: str = ""
    fields: tuple[tuple[str, ValueFormat], ...] = ()

    def decode(self, raw: bytes) -> Value:
        raw = bytes(raw)
        if self.length is not None and len(raw) != self.length:
            raise DataFormatError(
                f"expected {self.length} bytes ({self.kind.value}), got {len(raw)}"
            )
        kind = self.kind
        if kind is Kind.NUMBER:
            return bcd_to_decimal(raw, self.decimals, signed=self.signed)
        if kind is Kind.COUNT:
            return bcd_to_int(raw)
        if kind is Kind.WORD:
            return int.from_bytes(raw, "little")
        if kind is Kind.STATUS_WORD_3:
            return decode_status_word_3(raw)
        if kind in (Kind.DATETIME, Kind.DATETIME_MINUTES):
            if not any(raw):
                return None
            return decode_datetime(raw) if kind is Kind.DATETIME else _decode_minutes(raw)
        if kind is Kind.DATE_WEEKDAY:
            weekday, day, month, year = _bcd_fields(raw)
            if weekday > 6:
                raise DataFormatError(f"weekday {weekday} is not 0 (Sunday) to 6")
            try:
                return {"date": date(2000 + year, month, day), "weekday": weekday}
            except ValueError as exc:
                raise DataFormatError(f"{raw.hex(' ').upper()} is not a valid date: {exc}") from exc
        if kind is Kind.TIME:
            second, minute, hour = _bcd_fields(raw)
            try:
                return time(hour, minute, second)
            except ValueError as exc:
                raise DataFormatError(f"{raw.hex(' ').upper()} is not a valid time: {exc}") from exc
        if kind is Kind.DIGITS:
            bcd_to_int(raw)  # rejects non-BCD bytes
            return raw[::-1].hex()
        if kind is Kind.RECORD:
            values: dict[str, Value] = {}
            offset = 0
            for name, part in self.fields:
                assert part.length is not None  # record fields have fixed lengths
                values[name] = part.decode(raw[offset : offset + part.length])
                offset += part.length
            return values
        if kind is Kind.TARIFF_BLOCK:
            if not raw or len(raw) % 4:
                raise DataFormatError(f"a total + tariffs block is 4 bytes each, got {len(raw)}")
            energies: dict[str, Value] = {}
            for index in range(len(raw) // 4):
                name = "total" if index == 0 else f"tariff_{index}"
                energies[name] = bcd_to_decimal(raw[4 * index : 4 * index + 4], 2)
            return energies
        return raw  # Kind.RAW

    def encode(self, value: object) -> bytes:
        raw = self._encode(value)
        if self.length is not None and len(raw) != self.length:
            raise Dlt645UsageError(
                f"expected {self.length} bytes ({self.kind.value}), got {len(raw)}"
            )
        return raw

    def _encode(self, value: object) -> bytes:
        kind = self.kind
        length = self.length
        if kind is Kind.NUMBER:
            assert length is not None
            if not isinstance(value, Decimal | int):
                raise Dlt645UsageError(f"expected a Decimal, not {type(value).__name__}")
            return decimal_to_bcd(value, length, self.decimals, signed=self.signed)
        if kind is Kind.COUNT:
            assert length is not None
            if not isinstance(value, int):
                raise Dlt645UsageError(f"expected an int, not {type(value).__name__}")
            return int_to_bcd(value, length)
        if kind is Kind.WORD:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise Dlt645UsageError(f"a status word is an int 0..FFFFH, not {value!r}")
            return value.to_bytes(2, "little")
        if kind is Kind.STATUS_WORD_3:
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
                return value.to_bytes(2, "little")
            if not isinstance(value, Mapping):
                raise Dlt645UsageError(
                    "status word 3 takes its flags (a dict) or the word (an int)"
                )
            return encode_status_word_3(value)
        if kind in (Kind.DATETIME, Kind.DATETIME_MINUTES):
            assert length is not None
            if value is None:
                return bytes(length)
            if not isinstance(value, datetime):
                raise Dlt645UsageError(f"expected a datetime or None, not {type(value).__name__}")
            return encode_datetime(value) if kind is Kind.DATETIME else _encode_minutes(value)
        if kind is Kind.DATE_WEEKDAY:
            return _encode_date_weekday(value)
        if kind is Kind.TIME:
            if not isinstance(value, time) or value.tzinfo is not None or value.microsecond:
                raise Dlt645UsageError("expected a naive time with whole seconds")
            return b"".join(int_to_bcd(f, 1) for f in (value.second, value.minute, value.hour))
        if kind is Kind.DIGITS:
            if not isinstance(value, str) or not re.fullmatch(r"[0-9]{12}", value):
                raise Dlt645UsageError(f"expected 12 decimal digits, not {value!r}")
            return bytes.fromhex(value)[::-1]
        if kind is Kind.RECORD:
            names = [name for name, _ in self.fields]
            if not isinstance(value, Mapping) or set(value) != set(names):
                raise Dlt645UsageError(f"expected a dict with exactly the keys {names}")
            return b"".join(part.encode(value[name]) for name, part in self.fields)
        if kind is Kind.TARIFF_BLOCK:
            if not isinstance(value, Mapping) or not value:
                raise Dlt645UsageError("expected a dict of total, tariff_1, ...")
            names = ["total"] + [f"tariff_{i}" for i in range(1, len(value))]
            if set(value) != set(names):
                raise Dlt645UsageError(f"expected exactly the keys {names}")
            out = b""
            for name in names:
                energy = value[name]
                if not isinstance(energy, Decimal | int):
                    raise Dlt645UsageError(f"{name} must be a Decimal")
                out += decimal_to_bcd(energy, 4, 2)
            return out
        if not isinstance(value, bytes):  # Kind.RAW
            raise Dlt645UsageError(f"expected bytes, not {type(value).__name__}")
        return value


def _encode_date_weekday(value: object) -> bytes:
    # A plain date gets its weekday computed; DL/T 645 counts 0 = Sunday .. 6 = Saturday.
    if isinstance(value, date) and not isinstance(value, datetime):
        day, weekday = value, value.isoweekday() % 7
    elif isinstance(value, Mapping) and set(value) == {"date", "weekday"}:
        day, weekday = value["date"], value["weekday"]
        if not isinstance(day, date) or isinstance(day, datetime):
            raise Dlt645UsageError("date must be a datetime.date")
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise Dlt645UsageError("weekday must be 0 (Sunday) to 6")
    else:
        raise Dlt645UsageError("expected a date or {'date': date, 'weekday': 0..6}")
    if not 2000 <= day.year <= 2099:
        raise Dlt645UsageError(f"DL/T 645 years are 2000-2099, not {day.year}")
    fields = (weekday, day.day, day.month, day.year - 2000)
    return b"".join(int_to_bcd(f, 1) for f in fields)


@dataclass(frozen=True, slots=True)
class DataIdentifier:
    """One registered data identifier: what it means and how its value is laid out."""

    di: str
    name: str
    value_format: ValueFormat

    @property
    def length(self) -> int | None:
        """Value bytes after the DI (None: variable)."""
        return self.value_format.length

    @property
    def decimals(self) -> int:
        return self.value_format.decimals

    @property
    def signed(self) -> bool:
        return self.value_format.signed

    @property
    def unit(self) -> str:
        return self.value_format.unit

    @property
    def kind(self) -> Kind:
        return self.value_format.kind

    def decode(self, raw: bytes) -> Value:
        try:
            return self.value_format.decode(raw)
        except DataFormatError as exc:
            raise DataFormatError(f"DI {self.di} ({self.name}): {exc}") from exc

    def encode(self, value: object) -> bytes:
        try:
            return self.value_format.encode(value)
        except Dlt645UsageError as exc:
            raise Dlt645UsageError(f"DI {self.di} ({self.name}): {exc}") from exc


# -- the registry -------------------------------------------------------------------------------


def _number(length: int, decimals: int, unit: str, *, signed: bool = False) -> ValueFormat:
    return ValueFormat(Kind.NUMBER, length, decimals, signed, unit)


def _record(unit: str, *fields: tuple[str, ValueFormat]) -> ValueFormat:
    total = 0
    for _, part in fields:
        assert part.length is not None
        total += part.length
    return ValueFormat(Kind.RECORD, total, unit=unit, fields=fields)


_ENERGY = _number(4, 2, "kWh")  # XXXXXX.XX kWh
_MONEY = _number(4, 2, "yuan")  # XXXXXX.XX, the vector file's unit for money-prepaid meters
_VOLTAGE = _number(2, 1, "V")  # XXX.X V
_CURRENT = _number(3, 3, "A", signed=True)  # XXX.XXX A, sign bit
_COUNT_2 = ValueFormat(Kind.COUNT, 2)
_COUNT_3 = ValueFormat(Kind.COUNT, 3)  # event counts XXXXXX
_WORD = ValueFormat(Kind.WORD, 2)
_STATUS_3 = ValueFormat(Kind.STATUS_WORD_3, 2)
_DATETIME = ValueFormat(Kind.DATETIME, 6)
_MINUTES = ValueFormat(Kind.DATETIME_MINUTES, 5)


def _raw(length: int | None) -> ValueFormat:
    return ValueFormat(Kind.RAW, length)


def _entries() -> list[DataIdentifier]:
    entries: list[DataIdentifier] = []

    def add(di: str, name: str, value_format: ValueFormat) -> None:
        entries.append(DataIdentifier(di, name, value_format))

    # Energy (DI3 = 00): DI2 = quantity, DI1 = 00 total / 01.. tariff, DI0 = 00 current period.
    for di2, quantity in (
        ("00", "combined active"),
        ("01", "forward active"),
        ("02", "reverse active"),
    ):
        add(f"00{di2}0000", f"{quantity} energy total", _ENERGY)
        for tariff in range(1, 5):
            add(f"00{di2}{tariff:02d}00", f"{quantity} energy tariff {tariff}", _ENERGY)
    add("00010001", "forward active energy total, previous settlement period", _ENERGY)
    add(
        "0001FF00",
        "forward active energy total + tariffs (block)",
        ValueFormat(Kind.TARIFF_BLOCK, None, 2, unit="kWh"),
    )
    # Prepayment registers (Clou DL645V07.cpp).
    add("00900100", "current remaining energy (energy-prepaid meters)", _ENERGY)
    add("00900101", "current overdraft energy", _ENERGY)
    add("00900200", "current remaining money (money-prepaid meters)", _MONEY)
    add("00900201", "current overdraft money", _MONEY)
    # Demand (DI3 = 01).
    add(
        "01010000",
        "forward active max demand + time",
        _record("kW", ("demand", _number(3, 4, "kW")), ("time", _MINUTES)),
    )
    # Instantaneous variables (DI3 = 02).
    for number, phase in enumerate("ABC", start=1):
        add(f"0201{number:02d}00", f"phase {phase} voltage", _VOLTAGE)
    add(
        "0201FF00",
        "phase A/B/C voltage (block)",
        _record("V", ("phase_a", _VOLTAGE), ("phase_b", _VOLTAGE), ("phase_c", _VOLTAGE)),
    )
    for number, phase in enumerate("ABC", start=1):
        add(f"0202{number:02d}00", f"phase {phase} current", _CURRENT)
    add("02030000", "instantaneous total active power", _number(3, 4, "kW", signed=True))
    add("02060000", "total power factor", _number(2, 3, "", signed=True))
    add("02800002", "grid frequency", _number(2, 2, "Hz"))
    # Events (DI3 = 03).
    add("03110000", "power-down event count", _COUNT_3)
    add(
        "03110001",
        "last power-down: start and end",
        _record("", ("start", _DATETIME), ("end", _DATETIME)),
    )
    add("03300100", "meter clear count", _COUNT_3)
    add("03300101", "last meter clear record", _raw(106))
    add("03300400", "time-set count", _COUNT_3)
    add("03300401", "last time-set record", _raw(16))
    add("03300D00", "meter-cover open count", _COUNT_3)
    add("03300D01", "last meter-cover open record", _raw(60))
    add("03300E00", "terminal-cover open count", _COUNT_3)
    add("03300E01", "last terminal-cover open record", _raw(60))
    # Last purchase records: 0333xx01 money-prepaid, 0332xx01 energy-prepaid (Clou).
    for di2, unit_name, amount in (("33", "money", _MONEY), ("32", "energy", _ENERGY)):
        add(f"03{di2}0101", f"last {unit_name} purchase: date", _MINUTES)
        add(f"03{di2}0201", f"last {unit_name} purchase: purchase count after purchase", _COUNT_2)
        add(f"03{di2}0301", f"last {unit_name} purchase: amount", amount)
        add(f"03{di2}0401", f"last {unit_name} purchase: balance before", amount)
        add(f"03{di2}0501", f"last {unit_name} purchase: balance after", amount)
        add(f"03{di2}0601", f"last {unit_name} purchase: cumulative purchased", amount)
    # Parameters (DI3 = 04).
    add("04000101", "date and weekday", ValueFormat(Kind.DATE_WEEKDAY, 4))
    add("04000102", "time", ValueFormat(Kind.TIME, 3))
    add("04000401", "communication address", ValueFormat(Kind.DIGITS, 6))
    add("04000402", "meter number", ValueFormat(Kind.DIGITS, 6))
    words = []
    for number in range(1, 8):
        word = _STATUS_3 if number == 3 else _WORD
        add(f"040005{number:02d}", f"running status word {number}", word)
        words.append((f"status_word_{number}", word))
    add("040005FF", "running status words 1-7 (block)", _record("", *words))
    for di0, name in (
        ("01", "alarm money threshold 1"),
        ("02", "alarm money threshold 2"),
        ("03", "overdraft limit"),
        ("04", "hoarding limit"),
        ("05", "close-allowed money threshold"),
    ):
        add(f"040010{di0}", name, _MONEY)
    # Freeze (DI3 = 05) and load profile (DI3 = 06).
    add("05060001", "last daily freeze: time", _MINUTES)
    add(
        "05060101",
        "last daily freeze: forward active energy total + 4 tariffs",
        ValueFormat(Kind.TARIFF_BLOCK, 20, 2, unit="kWh"),
    )
    add("06000001", "load profile, all classes (read with count + start time)", _raw(None))
    # Relay events (coyool/XXOO_000 dd645_2007.c: "last trip/close time, yymmddhhmmss").
    add("1D000101", "last trip record (time)", _DATETIME)
    add("1E000101", "last close record (time)", _DATETIME)
    return entries


DATA_IDENTIFIERS: Mapping[str, DataIdentifier] = MappingProxyType({e.di: e for e in _entries()})


def lookup(di: str) -> DataIdentifier:
    """The registry entry of ``di``; UnknownDataIdentifierError if it is not registered."""
    key = normalise_di(di)
    try:
        return DATA_IDENTIFIERS[key]
    except KeyError:
        raise UnknownDataIdentifierError(f"data identifier {key} is not registered") from None


def decode_value(di: str, raw: bytes) -> Value:
    """The value of a registered DI from its bytes (as received, after -33H, DI removed)."""
    return lookup(di).decode(raw)


def encode_value(di: str, value: object) -> bytes:
    """The bytes of ``value`` for a registered DI (to put after the DI, before +33H)."""
    return lookup(di).encode(value)
