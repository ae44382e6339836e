"""One interface to a meter, whatever the bus speaks (Modbus RTU/TCP, DL/T 645 on RS485 or PLC).

The poller and the command processor only use :class:`MeterAccess`; each protocol's driver
implements it. Operations a meter cannot do (an STS token over DL/T 645, say) raise
:class:`CommandUnsupported`, which becomes a clear "rejected" status, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from protocols.modbus import Value

from .modbus_driver import (
    ModbusMeter,
    TokenPushResult,
    drn_text,
    push_token,
    read_points,
    switch_relay,
    write_point,
    write_tou,
)
from .modbus_master import ModbusMaster, TransactionError

__all__ = ["CommandUnsupported", "MeterAccess", "ModbusAccess"]


class CommandUnsupported(ValueError):
    """The meter (or its protocol) cannot do what the command asks."""


class IdentityMismatch(TransactionError):
    """The meter at this address is not the meter the configuration names (swapped addresses)."""

    def __init__(self, where: str, expected: str, found: str) -> None:
        self.expected = expected
        self.found = found
        super().__init__(0, f"{where} is meter {found}, but the configuration says {expected}")


class MeterAccess(Protocol):
    meter_id: str

    @property
    def key(self) -> str:
        """The meter id, or a bus-local label until the meter is identified."""

    @property
    def label(self) -> str:
        """Where the meter is on its bus (unit id or DL/T 645 address)."""

    verified: bool

    def groups(self) -> tuple[str, ...]: ...

    async def identify(self) -> None: ...

    async def verify_identity(self) -> None:
        """Check that the meter answering is the configured one (IdentityMismatch if not)."""

    async def read_group(self, name: str) -> dict[str, Value]: ...

    def flags(self, values: Mapping[str, Value]) -> frozenset[str] | None: ...

    async def push_token(self, digits: str) -> TokenPushResult: ...

    async def switch_relay(self, connect: bool, args: Mapping[str, Any]) -> Mapping[str, Any]: ...

    async def write_tou(self, version: int, activation_s: int, weekday: list[list[int]],
                        weekend: list[list[int]]) -> Mapping[str, Any]: ...  # fmt: skip

    async def set_max_power(self, watts: int) -> Value: ...

    async def set_clock(self, now_s: int) -> Value: ...


@dataclass(slots=True)
class ModbusAccess:
    """A Modbus meter through the profile of its model."""

    master: ModbusMaster
    meter: ModbusMeter
    verified: bool = False

    @property
    def meter_id(self) -> str:
        return self.meter.meter_id

    @meter_id.setter
    def meter_id(self, value: str) -> None:
        self.meter.meter_id = value

    @property
    def key(self) -> str:
        return self.meter.meter_id or f"unit-{self.meter.unit_id}"

    @property
    def label(self) -> str:
        return f"unit {self.meter.unit_id}"

    def groups(self) -> tuple[str, ...]:
        return self.meter.profile.groups

    async def _drn(self) -> str:
        values = await read_points(self.master, self.meter, [self.meter.profile.point("drn")])
        return drn_text(values["drn"])

    async def identify(self) -> None:
        self.meter.meter_id = await self._drn()
        self.verified = True

    async def verify_identity(self) -> None:
        if "drn" not in {p.name for p in self.meter.profile.points}:
            self.verified = True  # a profile without a DRN (third-party meter): nothing to compare
            return
        found = await self._drn()
        if found != self.meter.meter_id:
            raise IdentityMismatch(f"unit {self.meter.unit_id}", self.meter.meter_id, found)
        self.verified = True

    async def read_group(self, name: str) -> dict[str, Value]:
        points = [p for p in self.meter.profile.group(name) if p.access.readable]
        if not points:
            return {}
        return await read_points(self.master, self.meter, points)

    def flags(self, values: Mapping[str, Value]) -> frozenset[str] | None:
        found: set[str] | None = None
        for name, value in values.items():
            point = self.meter.profile.point(name)
            if point.flags and isinstance(value, int):
                found = (found or set()) | set(point.flag_names(value))
        return None if found is None else frozenset(found)

    async def push_token(self, digits: str) -> TokenPushResult:
        return await push_token(self.master, self.meter, digits)

    async def switch_relay(self, connect: bool, args: Mapping[str, Any]) -> Mapping[str, Any]:
        return await switch_relay(self.master, self.meter, connect)

    async def write_tou(self, version: int, activation_s: int, weekday: list[list[int]],
                        weekend: list[list[int]]) -> Mapping[str, Any]:  # fmt: skip
        return await write_tou(self.master, self.meter, version, activation_s, weekday, weekend)

    async def set_max_power(self, watts: int) -> Value:
        await write_point(self.master, self.meter, "max_power_limit", watts)
        check = await read_points(
            self.master, self.meter, [self.meter.profile.point("max_power_limit")]
        )
        return check["max_power_limit"]

    async def set_clock(self, now_s: int) -> Value:
        await write_point(self.master, self.meter, "clock_set", now_s)
        check = await read_points(
            self.master, self.meter, [self.meter.profile.point("meter_clock")]
        )
        return check["meter_clock"]
