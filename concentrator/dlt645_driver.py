"""A DL/T 645-2007 prepaid meter behind a :class:`Dlt645Line` or a :class:`PlcModuleLink`.

Poll groups map to data identifiers (DL/T 645-2007 appendix A; see docs/register-map.md for the
Modbus equivalents)::

    energy    00010000 forward active total, 00010100..00010400 tariffs 1..4   (kWh)
    status    00900100 remaining energy, 00900101 overdraft, 04000503 status word 3
    instant   02010100 voltage A, 02020100 current A, 02030000 active power, 02800002 frequency
    identity  04000401 communication address

Status word 3 gives the relay state (bit 4) and the pre-trip alarm (bit 7, reported as
``low_credit``); remaining energy 0 with the relay open is ``credit_exhausted``. A data identifier
the meter refuses (abnormal reply) is left out of the reading, not invented.

Relay commands use 1CH: with ``{"dlt645_payload_hex": ...}`` (the head-end's ciphertext for meters
that need it encrypted) the payload is carried as is; otherwise the plaintext form with the
level-03 password from the gateway's configuration. STS tokens, TOU tables and power limits are not
DL/T 645 operations here: those commands are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from protocols import dlt645
from protocols.modbus import Value

from .access import CommandUnsupported, IdentityMismatch
from .dlt645_link import Dlt645Line, PlcModuleLink
from .modbus_driver import TokenPushResult
from .modbus_master import TransactionError

__all__ = ["GROUPS", "Dlt645Access"]

GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "energy": (("energy_import_total", "00010000"), ("energy_import_t1", "00010100"),
               ("energy_import_t2", "00010200"), ("energy_import_t3", "00010300"),
               ("energy_import_t4", "00010400")),
    "status": (("credit_remaining", "00900100"), ("credit_overdraft", "00900101"),
               ("status_word_3", "04000503")),
    "instant": (("voltage", "02010100"), ("current", "02020100"), ("power_active", "02030000"),
                ("frequency", "02800002")),
    "identity": (("address", "04000401"),),
}  # fmt: skip


class MeterRefused(TransactionError):
    def __init__(self, address: str, what: str) -> None:
        super().__init__(0, f"meter {address} refused {what}")


def _plain(value: object) -> Value:
    if isinstance(value, bool | int | Decimal | str):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp())
    return str(value)


@dataclass(slots=True)
class Dlt645Access:
    link: Dlt645Line | PlcModuleLink
    address: str
    meter_id: str = ""
    relay_password: str = "123456"
    operator: str = "00000000"
    verified: bool = False

    @property
    def key(self) -> str:
        return self.meter_id or self.address

    @property
    def label(self) -> str:
        return f"address {self.address}"

    def groups(self) -> tuple[str, ...]:
        return tuple(GROUPS)

    async def _read(self, di: str) -> tuple[Value, bytes] | None:
        reply = dlt645.parse_reply(
            await self.link.exchange(dlt645.ReadRequest(self.address, di).to_frame())
        )
        if isinstance(reply, dlt645.ReadReply):
            return _plain(reply.value()), reply.payload
        return None

    async def identify(self) -> None:
        read = await self._read("04000401")
        self.meter_id = str(read[0]) if read else self.address
        self.verified = True

    async def verify_identity(self) -> None:
        read = await self._read("04000401")
        if read is not None and str(read[0]) != self.address:
            raise IdentityMismatch(f"address {self.address}", self.address, str(read[0]))
        self.verified = True

    async def read_group(self, name: str) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for point, di in GROUPS.get(name, ()):
            read = await self._read(di)
            if read is None:
                continue
            value, raw = read
            if di == "04000503":
                word = dlt645.decode_status_word_3(raw)
                values["status_word_3"] = int.from_bytes(raw, "little")
                values["relay_state"] = int(bool(word.get("relay_open")))
                values["pre_trip_alarm"] = bool(word.get("pre_trip_alarm"))
            else:
                values[point] = value
        return values

    def flags(self, values: Mapping[str, Value]) -> frozenset[str] | None:
        if "relay_state" not in values:
            return None
        flags = set()
        if values.get("pre_trip_alarm"):
            flags.add("low_credit")
        remaining = values.get("credit_remaining")
        if values["relay_state"] == 1 and remaining is not None and remaining == 0:
            flags.add("credit_exhausted")
        return frozenset(flags)

    async def push_token(self, digits: str) -> TokenPushResult:
        raise CommandUnsupported("STS tokens cannot be entered over DL/T 645 on this meter")

    async def switch_relay(self, connect: bool, args: Mapping[str, Any]) -> Mapping[str, Any]:
        payload_hex = args.get("dlt645_payload_hex")
        if isinstance(payload_hex, str):
            request = dlt645.RelayControlOpaque(self.address, bytes.fromhex(payload_hex)).to_frame()
        else:
            command = dlt645.RelayCommand.CLOSE_DIRECT if connect else dlt645.RelayCommand.TRIP
            valid_until = datetime.fromtimestamp(int(self.link.clock.seconds())) + timedelta(
                minutes=10
            )
            request = dlt645.RelayControl(self.address, dlt645.Password(3, self.relay_password),
                                          self.operator, command, valid_until).to_frame()  # fmt: skip
        reply = dlt645.parse_reply(await self.link.exchange(request))
        if isinstance(reply, dlt645.ErrorReply):
            raise MeterRefused(self.address, f"the relay command ({', '.join(reply.reasons)})")
        status = await self.read_group("status")
        return {"relay_state": status.get("relay_state"), "expected": 0 if connect else 1}

    async def write_tou(self, version: int, activation_s: int, weekday: list[list[int]],
                        weekend: list[list[int]]) -> Mapping[str, Any]:  # fmt: skip
        raise CommandUnsupported("TOU tables are not written over DL/T 645 by this gateway")

    async def set_max_power(self, watts: int) -> Value:
        raise CommandUnsupported("power limits are not written over DL/T 645 by this gateway")

    async def set_clock(self, now_s: int) -> Value:
        raise CommandUnsupported("DL/T 645 meters are synchronised by broadcast, not per meter")
