"""The reference register map (profile ``amr-prepaid-v1``) over a :class:`VirtualMeter`.

Reads encode the meter's state with the profile's own point definitions, so the simulator and a
poller that uses the same profile agree by construction; the profile file stays the single source
of the map. Registers inside a table's mapped range that no point uses read as 0; a read past the
last mapped register, or a write that does not cover whole writable points, gets exception 02
(illegal data address), and a value the meter refuses gets exception 03 (illegal data value).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from protocols.modbus import Point, Profile, Table, Value, encode_registers
from protocols.sts import TokenResult

from .meter import VirtualMeter
from .tou import UNUSED, TouError, TouTable

__all__ = ["ILLEGAL_ADDRESS", "ILLEGAL_VALUE", "ModbusException", "RegisterMap"]

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


class ModbusException(Exception):
    """A Modbus exception response the meter sends (``code`` is the exception code)."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        super().__init__(reason)


def _kwh(wh: float) -> Decimal:
    return (Decimal(round(wh, 3)) / 1000).quantize(Decimal("0.01"), rounding="ROUND_DOWN")


def _tou_registers(table: TouTable, day: str) -> list[int]:
    points = table.weekday if day == "weekday" else table.weekend
    raw: list[int] = []
    for index in range(8):
        raw += list(points[index]) if index < len(points) else [UNUSED, 0]
    return raw


_Getter = Callable[[VirtualMeter], Value]

_GETTERS: dict[str, _Getter] = {
    "drn": lambda m: int(m.identity.drn),
    "manufacturer_code": lambda m: m.identity.manufacturer_code,
    "firmware_version": lambda m: m.identity.firmware_version,
    "sts_supply_group_code": lambda m: m.decoder.state.supply_group_code,
    "sts_tariff_index": lambda m: m.decoder.state.tariff_index,
    "sts_key_revision_number": lambda m: m.decoder.state.key_revision_number,
    "sts_key_type": lambda m: int(m.decoder.state.key_type),
    "sts_base_date": lambda m: int(m.decoder.state.base_date),
    "sts_encryption_algorithm": lambda m: int(m.decoder.state.algorithm.value),
    "sts_key_expiry_number": lambda m: m.decoder.state.ken,
    "energy_import_total": lambda m: _kwh(m.energy_wh),
    "credit_remaining": lambda m: _kwh(m.credit_wh) if m.credit_wh >= 0 else -_kwh(-m.credit_wh),
    "emergency_credit_remaining": lambda m: _kwh(m.emergency_remaining_wh),
    "power_active": lambda m: round(m.power_w),
    "voltage": lambda m: Decimal(round(m.voltage_v * 10)) / 10,
    "current": lambda m: Decimal(round(m.power_w / m.voltage_v * 100)) / 100,
    "frequency": lambda m: Decimal(round(m.frequency_hz * 100)) / 100,
    "power_factor": lambda m: Decimal("0.980") if m.power_w else Decimal(1),
    "relay_state": lambda m: m.relay,
    "meter_clock": lambda m: int(m.now_s),
    "active_tariff_band": lambda m: m.band,
    "tou_active_version": lambda m: m.tou.version,
    "token_result": lambda m: m.token_result,
    "token_last_tid": lambda m: m.token_last_tid,
    "token_last_amount": lambda m: _kwh(m.token_last_amount_wh),
    "token_count": lambda m: m.token_count,
    "token_entry": lambda m: 0,
    "relay_command": lambda m: m.relay_command,
    "max_power_limit": lambda m: m.max_power_limit_w,
    "emergency_credit_limit": lambda m: _kwh(m.emergency_credit_limit_wh),
    "low_credit_threshold": lambda m: _kwh(m.low_credit_threshold_wh),
    "credit_limit": lambda m: _kwh(m.credit_limit_wh),
    "friendly_hours_enabled": lambda m: int(m.friendly_hours_enabled),
    "friendly_start_hour": lambda m: m.friendly_start_hour,
    "friendly_end_hour": lambda m: m.friendly_end_hour,
    "friendly_days": lambda m: m.friendly_days,
    "clock_set": lambda m: int(m.now_s),
    "utc_offset_minutes": lambda m: m.utc_offset_min,
    "tou_commit": lambda m: 0,
}
for _band in range(4):
    _GETTERS[f"energy_import_t{_band + 1}"] = lambda m, b=_band: _kwh(m.band_wh[b])  # type: ignore[misc]
for _month in range(12):
    _GETTERS[f"consumption_month_{_month}"] = lambda m, i=_month: _kwh(m.history_wh[i])  # type: ignore[misc]


def _status_flags(point: Point) -> _Getter:
    bits = {name: bit for bit, name in point.flags.items()}
    return lambda m: sum(1 << bits[name] for name in m.status_flags() if name in bits)


class RegisterMap:
    """Serves Modbus reads and writes of one profile for any number of meters."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._points: dict[Table, list[Point]] = {}
        for point in profile.points:
            self._points.setdefault(point.table, []).append(point)
        self._end = {table: max(p.end for p in points) for table, points in self._points.items()}
        self._getters = dict(_GETTERS)
        if "status_flags" in {p.name for p in profile.points}:
            self._getters["status_flags"] = _status_flags(profile.point("status_flags"))

    def _value(self, meter: VirtualMeter, point: Point) -> Value:
        if point.table is Table.HOLDING and point.name in meter.staged:
            return meter.staged[point.name]
        if point.name.startswith("tou_") and point.table is Table.HOLDING:
            table = meter.tou_pending or meter.tou
            if point.name == "tou_version":
                return table.version
            if point.name == "tou_activation":
                return table.activation_s
            _, day, index, what = point.name.split("_")
            raw = _tou_registers(table, day)
            return raw[int(index) * 2 + (0 if what == "start" else 1)]
        getter = self._getters.get(point.name)
        return getter(meter) if getter else 0

    def read(self, meter: VirtualMeter, table: Table, address: int, count: int) -> list[int]:
        end = self._end.get(table, 0)
        if address + count > end:
            raise ModbusException(ILLEGAL_ADDRESS, f"{table.value} registers end at {end - 1}")
        image = [0] * count
        for point in self._points.get(table, []):
            if (
                point.end <= address
                or point.address >= address + count
                or not point.access.readable
            ):
                continue
            registers = encode_registers(
                self._value(meter, point),
                point.data_type,
                length=point.length,
                scale=point.scale,
                word_order=point.word_order,
                byte_order=point.byte_order,
            )
            for offset, word in enumerate(registers):
                position = point.address + offset - address
                if 0 <= position < count:
                    image[position] = word
        return image

    def write(self, meter: VirtualMeter, address: int, values: list[int]) -> None:
        """A write of holding registers; it must cover whole writable points."""
        end = address + len(values)
        covered = [
            p for p in self._points.get(Table.HOLDING, []) if p.address < end and p.end > address
        ]
        if not covered or any(p.address < address or p.end > end for p in covered):
            raise ModbusException(ILLEGAL_ADDRESS, "a write must cover whole points")
        if any(not p.access.writable for p in covered):
            raise ModbusException(ILLEGAL_ADDRESS, "read-only register")
        if sum(p.count for p in covered) != len(values):
            raise ModbusException(ILLEGAL_ADDRESS, "a write must not cover unused registers")
        for point in covered:
            words = values[point.address - address : point.end - address]
            try:
                value = point.decode(words)
            except Exception as exc:  # a bad BCD digit and the like: the value is refused
                raise ModbusException(ILLEGAL_VALUE, str(exc)) from None
            self._apply(meter, point, value, words)

    def _apply(self, meter: VirtualMeter, point: Point, value: Value, words: list[int]) -> None:
        name = point.name
        if name == "token_entry":
            digits = "".join(f"{w:04X}" for w in words)
            if not digits.isdigit():
                raise ModbusException(ILLEGAL_VALUE, "token digits must be BCD")
            meter.enter_token(digits)
            return
        if name == "relay_command":
            if value not in (0, 1, 2):
                raise ModbusException(ILLEGAL_VALUE, "relay command is 0, 1 or 2")
            meter.command_relay(int(value))
            return
        if name == "tou_commit":
            self._commit_tou(meter, int(value))
            return
        if name.startswith("tou_"):
            meter.staged[name] = int(value)
            return
        setters: dict[str, Callable[[], None]] = {
            "max_power_limit": lambda: setattr(meter, "max_power_limit_w", int(value)),
            "emergency_credit_limit": lambda: setattr(
                meter, "emergency_credit_limit_wh", float(Decimal(str(value)) * 1000)
            ),
            "low_credit_threshold": lambda: setattr(
                meter, "low_credit_threshold_wh", float(Decimal(str(value)) * 1000)
            ),
            "credit_limit": lambda: setattr(
                meter, "credit_limit_wh", float(Decimal(str(value)) * 1000)
            ),
            "friendly_hours_enabled": lambda: setattr(meter, "friendly_hours_enabled", bool(value)),
            "friendly_start_hour": lambda: setattr(meter, "friendly_start_hour", int(value) % 24),
            "friendly_end_hour": lambda: setattr(meter, "friendly_end_hour", int(value) % 24),
            "friendly_days": lambda: setattr(meter, "friendly_days", int(value) & 0xFF),
            "clock_set": lambda: meter.set_clock(float(int(value))),
            "utc_offset_minutes": lambda: setattr(meter, "utc_offset_min", int(value)),
        }
        setter = setters.get(name)
        if setter is None:
            raise ModbusException(ILLEGAL_ADDRESS, f"{name} cannot be written")
        setter()

    def _commit_tou(self, meter: VirtualMeter, value: int) -> None:
        if value != 1:
            raise ModbusException(ILLEGAL_VALUE, "write 1 to tou_commit")
        current = meter.tou_pending or meter.tou

        def staged(name: str, default: int) -> int:
            return meter.staged.get(name, default)

        days = {}
        for day in ("weekday", "weekend"):
            defaults = _tou_registers(current, day)
            raw = []
            for index in range(8):
                raw.append(staged(f"tou_{day}_{index}_start", defaults[2 * index]))
                raw.append(staged(f"tou_{day}_{index}_band", defaults[2 * index + 1]))
            days[day] = raw
        try:
            table = TouTable.from_registers(
                staged("tou_version", current.version),
                staged("tou_activation", current.activation_s),
                days["weekday"],
                days["weekend"],
            )
        except TouError as exc:
            # the refused values are dropped: the registers show the table in force again
            meter.staged = {k: v for k, v in meter.staged.items() if not k.startswith("tou_")}
            raise ModbusException(ILLEGAL_VALUE, f"TOU table refused: {exc}") from None
        meter.staged = {k: v for k, v in meter.staged.items() if not k.startswith("tou_")}
        if table.activation_s <= meter.now_s:
            meter.tou, meter.tou_pending = table, None
        else:
            meter.tou_pending = table


def result_name(code: int) -> str:
    try:
        return TokenResult(code).label
    except ValueError:
        return "none"
