"""Commissioning a gateway in the field: find the meters on a line, then check a daemon config.

Two jobs, for ``amr gw scan`` and ``amr gw check`` (:mod:`concentrator.gw_cli` only parses
arguments and prints what these functions return):

* **Scan** a Modbus line (RTU serial or TCP) unit id by unit id with the profile's identity read
  (the ``identity`` group, one request for the reference map), and list who answered. Silence,
  or a TCP gateway's exception 0A/0B ("no device behind me at that unit id"), means nobody is
  there; any other exception, or registers that do not decode, proves a device is there that is
  not a meter of this profile. A DL/T 645 line is asked for its address with 13H sent to the
  wildcard address; that only works with one meter on the line (several meters answer at once and
  their replies collide, or, as the simulator does, stay silent).
* **Check** a daemon config the way the daemon will use it, one :class:`CheckResult` per thing a
  technician can fix: the config and its profiles, the journal folder, the head-end key, TLS
  files, the broker (an MQTT v5 CONNECT), the clock, every bus and every meter on it.

The scan results can be written into a daemon config (:func:`write_bus_config`): the bus is added,
or replaced if one of that name exists, and the whole file is validated with
:func:`concentrator.config.parse_config` before anything is written.

Everything takes the reactor (``callLater``, ``connectTCP``, file descriptors, the thread pool)
as an argument; nothing here imports the global reactor. The MQTT probe is the only blocking
work and runs in the reactor's thread pool (:func:`thd_probe_broker`). Its client id is the
daemon's with ``-check`` appended, with a clean start: a CONNECT with the daemon's own id would
take over the running daemon's connection and, with a clean start, discard its session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from protocols.dlt645 import (
    NEED_DATA,
    BadFrame,
    ErrorReply,
    Frame,
    FrameReceiver,
    MessageError,
    ReadAddressReply,
    ReadAddressRequest,
    encode_frame,
    parse_reply,
)
from protocols.errors import ProtocolError, RemoteProtocolError
from protocols.modbus import Point, Profile, ProfileError, decode_block, plan_reads
from protocols.modbus.adapter import EXCEPTION_NAMES, Framing, Request, read_function
from protocols.modbus.profiles import PROFILE_DIR
from protocols.modbus.timing import silent_interval_s

from .config import (
    ConcentratorConfig,
    ConfigError,
    JournalConfig,
    MeterConfig,
    MqttConfig,
    RtuBusConfig,
    TcpBusConfig,
    load_config,
    parse_config,
)
from .modbus_driver import drn_text, load_profiles
from .modbus_master import (
    LinkDown,
    MeterException,
    MeterTimeout,
    ModbusLinkProtocol,
    ModbusMaster,
)

__all__ = [
    "DEFAULT_PROFILES",
    "BrokerProbe",
    "BrokerSettings",
    "CheckReport",
    "CheckResult",
    "ConfigWrite",
    "Dlt645Scan",
    "LinkOpenError",
    "MeterIdentity",
    "ModbusLink",
    "ModbusScan",
    "ScanHit",
    "SerialLine",
    "Status",
    "TcpLink",
    "broker_settings",
    "check_broker",
    "check_bus",
    "check_clock",
    "check_config",
    "check_gateway",
    "check_journal",
    "check_meter",
    "check_mqtt_files",
    "check_public_key",
    "check_serial_bus",
    "identity_points",
    "interpret_read_address",
    "merge_bus",
    "open_modbus",
    "parse_unit_ids",
    "read_config_file",
    "read_identity",
    "scan_dlt645",
    "scan_modbus",
    "scanned_bus",
    "thd_probe_broker",
    "write_bus_config",
]

DEFAULT_PROFILES = PROFILE_DIR
GATEWAY_NO_DEVICE = frozenset({0x0A, 0x0B})  # gateway path unavailable / target failed to respond
CLOSE_TIMEOUT_S = 2.0
MIN_YEAR = 2024
METER_ATTEMPTS = 2  # an identity read in `check` is tried twice before a meter is called silent


# -- links ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SerialLine:
    """An RS485 line behind a serial device (an RTU bus or a DL/T 645 line)."""

    device: str
    baud: int = 9600
    parity: str = "E"

    def __str__(self) -> str:
        return f"{self.device} {self.baud} 8{self.parity}1"


@dataclass(frozen=True, slots=True)
class TcpLink:
    """A Modbus TCP server or RTU-over-TCP gateway."""

    host: str
    port: int = 502

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class LinkOpenError(Exception):
    """A serial device or TCP server that could not be opened; ``fix`` says what to do."""

    def __init__(self, reason: str, fix: str) -> None:
        self.reason = reason
        self.fix = fix
        super().__init__(reason)


class _ProbeLink(ModbusLinkProtocol):
    """The daemon's link protocol, counting bytes and telling when the link is gone."""

    def __init__(self, master: ModbusMaster) -> None:
        super().__init__(master, on_lost=self._link_lost)
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.bytes_received = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.bytes_received += len(data)
        super().dataReceived(data)

    def _link_lost(self, reason: str) -> None:
        if not self.lost.called:
            self.lost.callback(None)


async def _close(reactor: Any, transport: Any, lost: defer.Deferred[None]) -> None:
    if lost.called or transport is None:
        return
    transport.loseConnection()
    lost.addTimeout(CLOSE_TIMEOUT_S, reactor)
    with contextlib.suppress(defer.TimeoutError, defer.CancelledError):
        await lost


@dataclass(slots=True)
class ModbusLink:
    """An open Modbus link: the daemon's :class:`ModbusMaster` on a serial port or TCP socket."""

    reactor: Any
    master: ModbusMaster
    protocol: _ProbeLink
    where: str

    @property
    def bytes_received(self) -> int:
        return self.protocol.bytes_received

    async def close(self) -> None:
        await _close(self.reactor, self.protocol.transport, self.protocol.lost)


def _open_serial(reactor: Any, line: SerialLine, protocol: Protocol) -> None:
    from twisted.internet.serialport import SerialPort

    if not Path(line.device).exists():
        raise LinkOpenError(
            f"serial device {line.device} does not exist",
            "plug in the RS485 adapter and check the device name (ls /dev/ttyUSB* /dev/serial/by-id)",
        )
    try:
        SerialPort(protocol, line.device, reactor, baudrate=line.baud, parity=line.parity)
    except Exception as exc:  # pyserial's SerialException, termios errors, permissions
        raise LinkOpenError(
            f"cannot open {line.device} at {line.baud} 8{line.parity}1: {exc}",
            "check that no other program (a running daemon?) holds the port, the user may open "
            "it (group dialout), and the adapter supports these settings",
        ) from None


async def _open_tcp(reactor: Any, link: TcpLink, protocol: Protocol, timeout_s: float) -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(reactor, link.host, link.port, timeout=timeout_s)
    try:
        await connectProtocol(endpoint, protocol)
    except error.ConnectionRefusedError:
        raise LinkOpenError(
            f"{link} refused the connection (nothing listens on that port)",
            "check the host and port, and that the Modbus TCP server or gateway is powered",
        ) from None
    except (error.TimeoutError, error.TCPTimedOutError):
        raise LinkOpenError(
            f"no answer from {link} within {timeout_s:g} s",
            "check the address, the network path (ping) and any firewall",
        ) from None
    except error.DNSLookupError:
        raise LinkOpenError(
            f"cannot resolve host {link.host!r}", "check the host name, or give an IP address"
        ) from None
    except error.ConnectError as exc:
        raise LinkOpenError(
            f"cannot connect to {link}: {exc}", "check the address and the network path"
        ) from None


async def open_modbus(
    reactor: Any,
    link: SerialLine | TcpLink,
    *,
    timeout_s: float,
    connect_timeout_s: float = 5.0,
    inter_frame_gap: float | None = None,
) -> ModbusLink:
    """A master on ``link``, as the daemon opens it; :class:`LinkOpenError` says why not."""
    if isinstance(link, SerialLine):
        gap = silent_interval_s(link.baud) if inter_frame_gap is None else inter_frame_gap
        master = ModbusMaster(reactor, Framing.RTU, timeout_s=timeout_s, inter_frame_gap_s=gap)
        protocol = _ProbeLink(master)
        _open_serial(reactor, link, protocol)
        return ModbusLink(reactor, master, protocol, f"modbus-rtu {link}")
    master = ModbusMaster(reactor, Framing.TCP, timeout_s=timeout_s)
    protocol = _ProbeLink(master)
    await _open_tcp(reactor, link, protocol, connect_timeout_s)
    return ModbusLink(reactor, master, protocol, f"modbus-tcp {link}")


# -- identity -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What a meter's identity read says; fields the profile does not have are None."""

    drn: str
    manufacturer_code: int | None = None
    firmware: str | None = None
    supply_group_code: str | None = None
    key_revision_number: int | None = None
    tariff_index: int | None = None
    key_type: str | None = None
    base_date: int | None = None
    encryption_algorithm: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "drn": self.drn,
            "manufacturer_code": self.manufacturer_code,
            "firmware": self.firmware,
            "sts_supply_group_code": self.supply_group_code,
            "sts_key_revision_number": self.key_revision_number,
            "sts_tariff_index": self.tariff_index,
            "sts_key_type": self.key_type,
            "sts_base_date": self.base_date,
            "sts_encryption_algorithm": self.encryption_algorithm,
        }


def identity_points(profile: Profile) -> tuple[Point, ...]:
    """The profile's identity group, or at least its ``drn`` point."""
    try:
        drn = profile.point("drn")
    except KeyError:
        raise ValueError(
            f"profile {profile.name} has no drn point: it cannot identify a meter"
        ) from None
    points = profile.group("identity")
    return points if drn in points else (drn, *points)


def _identity(profile: Profile, values: Mapping[str, object]) -> MeterIdentity:
    def number(name: str) -> int | None:
        value = values.get(name)
        if isinstance(value, int | Decimal | float):
            return int(value)
        return int(value) if isinstance(value, str) and value.isdigit() else None

    drn = number("drn")
    if drn is None:
        raise RemoteProtocolError(f"the DRN registers hold {values.get('drn')!r}, not a number")

    def named(name: str) -> str | None:
        raw = number(name)
        if raw is None:
            return None
        return profile.point(name).values.get(raw, str(raw))

    firmware = number("firmware_version")
    sgc = number("sts_supply_group_code")
    return MeterIdentity(
        drn=drn_text(drn),
        manufacturer_code=number("manufacturer_code"),
        firmware=None if firmware is None else f"{firmware // 100}.{firmware % 100:02d}",
        supply_group_code=None if sgc is None else f"{sgc:06d}",
        key_revision_number=number("sts_key_revision_number"),
        tariff_index=number("sts_tariff_index"),
        key_type=named("sts_key_type"),
        base_date=number("sts_base_date"),
        encryption_algorithm=named("sts_encryption_algorithm"),
    )


async def read_identity(
    master: ModbusMaster, unit_id: int, profile: Profile, timeout_s: float | None = None
) -> MeterIdentity:
    """One identity read (one request for the reference map), never split or retried.

    Raises what the master raises (:class:`MeterTimeout`, :class:`MeterException`,
    :class:`LinkDown`) and :class:`ProtocolError` when the registers are not this profile's.
    """
    points = identity_points(profile)
    values: dict[str, object] = {}
    for block in plan_reads(points, profile_limit=profile.max_registers_per_read):
        request = Request(unit_id, read_function(block.table), block.address, block.count)
        response = await master.execute(request, timeout_s)
        values.update(decode_block(block, list(response.values)))
    return _identity(profile, values)


def _exception_text(code: int) -> str:
    return f"exception {code:02X}, {EXCEPTION_NAMES.get(code, 'unknown')}"


# -- Modbus scan ----------------------------------------------------------------------------------


def parse_unit_ids(text: str) -> tuple[int, ...]:
    """``"1-247"``, ``"5"``, ``"1,3,10-12"`` -> sorted unit ids (1..247; 0 is broadcast)."""
    units: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(
                f"not a unit id or range: {part!r} (use e.g. 1-247 or 1,3,5-9)"
            ) from None
        if not 1 <= low <= high <= 247:
            raise ValueError(f"unit ids are 1..247 (0 is broadcast), low to high: {part!r}")
        units.update(range(low, high + 1))
    if not units:
        raise ValueError("no unit ids given")
    return tuple(sorted(units))


@dataclass(frozen=True, slots=True)
class ScanHit:
    """A unit id that answered: a meter of the profile, or another device (``identity`` None)."""

    unit_id: int
    identity: MeterIdentity | None
    detail: str = ""

    @property
    def is_meter(self) -> bool:
        return self.identity is not None


@dataclass(frozen=True, slots=True)
class ModbusScan:
    where: str
    profile: str
    units: tuple[int, ...]
    hits: tuple[ScanHit, ...]
    elapsed_s: float
    bytes_received: int = 0
    crc_errors: int = 0
    stopped: str = ""  # why the sweep stopped early (the link went down), or ""

    @property
    def meters(self) -> tuple[ScanHit, ...]:
        return tuple(hit for hit in self.hits if hit.is_meter)

    @property
    def others(self) -> tuple[ScanHit, ...]:
        return tuple(hit for hit in self.hits if not hit.is_meter)


async def _probe_unit(link: ModbusLink, unit_id: int, profile: Profile) -> ScanHit | None:
    try:
        identity = await read_identity(link.master, unit_id, profile)
    except MeterTimeout:
        return None
    except MeterException as exc:
        if exc.code in GATEWAY_NO_DEVICE:
            return None  # the TCP gateway's way of saying "nobody at this unit id"
        return ScanHit(unit_id, None, f"answers, not this profile ({_exception_text(exc.code)})")
    except ProtocolError as exc:
        return ScanHit(unit_id, None, f"answers, not this profile ({exc})")
    return ScanHit(unit_id, identity)


async def scan_modbus(
    reactor: Any,
    link: SerialLine | TcpLink,
    units: Sequence[int],
    profile: Profile,
    *,
    timeout_ms: float = 200.0,
    connect_timeout_s: float = 5.0,
) -> ModbusScan:
    """Sweep ``units`` with an identity read each; :class:`LinkOpenError` if the link won't open."""
    started = reactor.seconds()
    identity_points(profile)  # a profile that cannot identify fails before the line is opened
    opened = await open_modbus(
        reactor, link, timeout_s=timeout_ms / 1000, connect_timeout_s=connect_timeout_s
    )
    hits: list[ScanHit] = []
    stopped = ""
    try:
        for unit_id in units:
            try:
                hit = await _probe_unit(opened, unit_id, profile)
            except LinkDown as exc:
                stopped = f"{exc} at unit id {unit_id}"
                break
            if hit is not None:
                hits.append(hit)
    finally:
        await opened.close()
    return ModbusScan(
        where=opened.where,
        profile=profile.name,
        units=tuple(units),
        hits=tuple(hits),
        elapsed_s=reactor.seconds() - started,
        bytes_received=opened.bytes_received,
        crc_errors=opened.master.crc_errors,
        stopped=stopped,
    )


# -- DL/T 645 read address ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dlt645Scan:
    """What a read-address (13H to the wildcard) brought back; ``address`` only if unambiguous."""

    where: str
    address: str | None
    addresses: tuple[str, ...]
    message: str
    garbled_bytes: int = 0
    elapsed_s: float = 0.0


def interpret_read_address(raw: bytes, where: str = "", elapsed_s: float = 0.0) -> Dlt645Scan:
    """Judge the bytes that came back after a 13H request to ``AAAAAAAAAAAA``.

    DL/T 645-2007 (notes §1): 13H "read communication address" is answered with 93H carrying the
    meter's address; it is sent to the wildcard address, so every meter on the line answers.
    Our own request (an RS485 adapter's echo) comes back as a frame with D7 = 0 and is ignored.
    """
    receiver = FrameReceiver()
    receiver.receive_data(raw)
    addresses: list[str] = []
    refusals: list[str] = []
    bad_frames = 0
    while True:
        event = receiver.next_event()
        if event is NEED_DATA:
            break
        if isinstance(event, BadFrame):
            bad_frames += 1  # the receiver drops its first byte and searches on
            continue
        assert isinstance(event, Frame)
        if not event.is_reply:
            continue  # the adapter's echo of our request
        try:
            reply = parse_reply(event)
        except MessageError:
            bad_frames += 1
            continue
        if isinstance(reply, ReadAddressReply):
            if reply.address not in addresses:
                addresses.append(reply.address)
        elif isinstance(reply, ErrorReply):
            refusals.append(f"{event.address} refused it (error {int(reply.error):02X}H)")
    garbled = bad_frames + receiver.skipped_bytes + receiver.buffered
    one_meter = (
        "read address works with one meter on the line: disconnect the others, or take each "
        "meter's address from its nameplate"
    )
    if len(addresses) == 1 and not garbled:
        message = f"meter address {addresses[0]}"
    elif len(addresses) > 1:
        message = f"several meters answered ({', '.join(addresses)}); {one_meter}"
    elif garbled:
        seen = f"a reply from {addresses[0]} and " if addresses else ""
        message = (
            f"{seen}{garbled} garbled bytes: several meters probably answered at once and their "
            f"replies collided ({one_meter}); or the line is noisy"
        )
    elif refusals:
        message = "; ".join(refusals) + ": this meter does not give its address this way"
    else:
        message = (
            "no meter answered: check the wiring (A/B), the baud rate and parity (DL/T 645-2007 "
            "meters default to 2400 8E1) and the meter's power; several meters on one line may "
            "also all stay silent"
        )
    address = addresses[0] if len(addresses) == 1 and not garbled else None
    return Dlt645Scan(where, address, tuple(addresses), message, garbled, elapsed_s)


class _Capture(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 - Twisted's name
        if not self.lost.called:
            self.lost.callback(None)


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    done: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, done.callback, None)
    return done


async def scan_dlt645(reactor: Any, line: SerialLine, *, timeout_ms: float = 1000.0) -> Dlt645Scan:
    """Send 13H to the wildcard address and listen for ``timeout_ms`` (every reply, not the first:
    a second meter's answer is what shows the line has several)."""
    started = reactor.seconds()
    capture = _Capture()
    _open_serial(reactor, line, capture)
    try:
        assert capture.transport is not None
        capture.transport.write(encode_frame(ReadAddressRequest().to_frame()))
        await _sleep(reactor, timeout_ms / 1000)
    finally:
        await _close(reactor, capture.transport, capture.lost)
    return interpret_read_address(
        bytes(capture.received), f"dlt645 {line}", reactor.seconds() - started
    )


# -- writing the scan into a daemon config --------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any] | None:
    """The YAML mapping in ``path`` (None if there is no file); ConfigError if it is unusable."""
    if not path.exists():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return raw


def scanned_bus(
    name: str, link: SerialLine | TcpLink, meters: Iterable[ScanHit], profile: str
) -> dict[str, Any]:
    """A bus entry of the daemon config with the meters found, pinned by DRN (``meter_id``)."""
    entry: dict[str, Any] = {"name": name}
    if isinstance(link, SerialLine):
        device = os.path.abspath(link.device)  # not resolved: keep /dev/serial/by-id names
        entry.update(type="modbus-rtu", device=device, baud=link.baud, parity=link.parity)
    else:
        entry.update(type="modbus-tcp", host=link.host, port=link.port)
    entry["meters"] = [
        {"address": hit.unit_id, "profile": profile, "meter_id": hit.identity.drn}
        for hit in meters
        if hit.identity is not None
    ]
    return entry


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    path: Path
    created: bool
    replaced_bus: bool
    backup: Path | None
    config: ConcentratorConfig


def merge_bus(
    raw: Mapping[str, Any] | None, bus: Mapping[str, Any], gateway_id: str | None
) -> dict[str, Any]:
    """``raw`` with ``bus`` added, or replacing the bus of the same name (its tuning, such as
    ``timeout_ms``, is kept when the type is the same); a minimal config if ``raw`` is None."""
    if raw is None:
        if not gateway_id:
            raise ConfigError(["gateway_id: the file does not exist yet; give --gateway-id"])
        return {"gateway_id": gateway_id, "buses": [dict(bus)]}
    if gateway_id and raw.get("gateway_id") not in (None, gateway_id):
        raise ConfigError(
            [f"gateway_id: the file says {raw.get('gateway_id')!r}, not {gateway_id!r}"]
        )
    merged = dict(raw)
    if gateway_id and "gateway_id" not in merged:
        merged["gateway_id"] = gateway_id
    buses = list(merged.get("buses") or [])
    new = dict(bus)
    for index, old in enumerate(buses):
        if isinstance(old, dict) and old.get("name") == new["name"]:
            if old.get("type") == new["type"]:
                kept = {k: v for k, v in old.items() if k not in new and k != "meters"}
                new = {**new, **kept}
            buses[index] = new
            break
    else:
        buses.append(new)
    merged["buses"] = buses
    return merged


def _same_access(temporary: str, previous: Path | None) -> None:
    """The new file keeps the old one's mode and owner (the daemon's user must still read it);
    a new file gets the usual 0666 less the umask, not mkstemp's 0600."""
    if previous is not None:
        status = previous.stat()
        os.chmod(temporary, stat.S_IMODE(status.st_mode))
        with contextlib.suppress(OSError):  # only root may give a file away
            os.chown(temporary, status.st_uid, status.st_gid)
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)


def write_bus_config(
    path: Path, bus: Mapping[str, Any], gateway_id: str | None = None
) -> ConfigWrite:
    """Add or replace ``bus`` in the config at ``path``, validate, then write (atomically, the
    previous file kept as ``PATH.bak``). ConfigError, and nothing written, if it does not validate.

    The file is rewritten from its data: comments in it are not kept (they are in the backup).
    """
    raw = read_config_file(path)
    names = [b.get("name") for b in (raw or {}).get("buses") or [] if isinstance(b, dict)]
    merged = merge_bus(raw, bus, gateway_id)
    config = parse_config(merged)
    backup = None
    if raw is not None:
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(merged, sort_keys=False, default_flow_style=None, width=100)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        _same_access(temporary, path if raw is not None else None)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return ConfigWrite(path, raw is None, bus["name"] in names, backup, config)


# -- checks ---------------------------------------------------------------------------------------


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not configured, or could not be tried because an earlier check failed


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    status: Status
    reason: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status.value, "reason": self.reason,
                "fix": self.fix}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CheckReport:
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.status is not Status.FAIL for result in self.results)


def _pass(check: str, reason: str) -> CheckResult:
    return CheckResult(check, Status.PASS, reason)


def _fail(check: str, reason: str, fix: str) -> CheckResult:
    return CheckResult(check, Status.FAIL, reason, fix)


def _skip(check: str, reason: str) -> CheckResult:
    return CheckResult(check, Status.SKIP, reason)


@dataclass(frozen=True, slots=True)
class ConfigCheck:
    config: ConcentratorConfig | None
    profiles: Mapping[str, Profile]
    results: tuple[CheckResult, ...]


def check_config(path: Path) -> ConfigCheck:
    """The config validates, and every meter's profile exists and parses (as make_service needs)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        fix = f"correct {path} at that path"
        return ConfigCheck(None, {}, tuple(_fail("config", p, fix) for p in exc.problems))
    directory = config.profiles_dir or DEFAULT_PROFILES
    try:
        profiles = load_profiles(directory)
    except (OSError, yaml.YAMLError, ProfileError) as exc:
        return ConfigCheck(config, {}, (
            _fail("config", f"profiles_dir {directory}: {exc}",
                  "correct or remove the broken profile file"),
        ))  # fmt: skip
    problems = []
    for b, bus in enumerate(config.buses):
        if not isinstance(bus, RtuBusConfig | TcpBusConfig):
            continue  # DL/T 645 meters have no register-map profile
        for m, meter in enumerate(bus.meters):
            if meter.profile not in profiles:
                reason = (
                    f"buses[{b}].meters[{m}].profile: no profile {meter.profile!r} in {directory}"
                )
                fix = f"use one of: {', '.join(sorted(profiles)) or '(none)'}"
                problems.append(_fail("config", reason, fix))
    if problems:
        return ConfigCheck(config, profiles, tuple(problems))
    meters = sum(len(bus.meters) for bus in config.buses)
    return ConfigCheck(config, profiles, (
        _pass("config", f"{path} is valid: gateway {config.gateway_id}, "
              f"{len(config.buses)} bus(es), {meters} meter(s)"),
    ))  # fmt: skip


def _existing_ancestor(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_journal(journal: JournalConfig) -> CheckResult:
    """The journal's folder is writable (a file is created and removed) and has room for the
    quota (free space plus what the journal already holds)."""
    folder = journal.path.absolute().parent
    existing = _existing_ancestor(folder)
    where = str(folder) if existing == folder else f"{folder} (to be created in {existing})"
    if not journal.path.is_absolute():
        where += " (journal.path is relative: to the folder the daemon starts in)"
    if not existing.is_dir():
        return _fail("journal", f"{existing} is not a folder",
                     f"point journal.path at a file in a writable folder, not under {existing}")  # fmt: skip
    try:
        handle, probe = tempfile.mkstemp(prefix=".amr-gw-check-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return _fail("journal", f"{where} is not writable ({exc.strerror})",
                     "give the daemon's user write access, or move journal.path")  # fmt: skip
    if journal.path.exists() and not os.access(journal.path, os.W_OK):
        return _fail("journal", f"{journal.path} exists and is read-only",
                     "fix its owner/permissions (the daemon's user must write it)")  # fmt: skip
    quota = int(journal.quota_mb * 1024 * 1024)
    held = 0  # the journal's database, WAL and shared-memory files count towards the quota
    if folder.is_dir():
        held = sum(p.stat().st_size for p in folder.glob(journal.path.name + "*") if p.is_file())
    free = shutil.disk_usage(existing).free
    mib = 1024 * 1024
    if free + held < quota:
        return _fail(
            "journal",
            f"{where}: {free / mib:.0f} MiB free, the quota is {journal.quota_mb:g} MiB",
            "free disk space, or lower journal.quota_mb",
        )
    return _pass("journal", f"{where} is writable, {free / mib:.0f} MiB free "
                 f"(quota {journal.quota_mb:g} MiB)")  # fmt: skip


def check_public_key(path: Path | None) -> CheckResult:
    """The head-end's public key file, if configured, holds an Ed25519 public key in PEM."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    name = "head-end key"
    if path is None:
        return _skip(name, "headend_public_key_file is not configured: relay and tariff commands "
                     "will be refused")  # fmt: skip
    fix = "copy the head-end's Ed25519 public key (PEM, from the head-end operator) to that path"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _fail(name, f"{path}: cannot read ({exc.strerror})", fix)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        return _fail(name, f"{path} is not a PEM public key", fix)
    if not isinstance(key, Ed25519PublicKey):
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        return _fail(name, f"{path} holds a {kind} key, not Ed25519", fix)
    return _pass(name, f"{path} is an Ed25519 public key")


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    raise _EncryptedKey  # the daemon gives no passphrase: OpenSSL would prompt on the console


def _tls_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """The client context the daemon's paho gets from ``tls_set`` (verify the broker, hostname)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None,
                                password=_no_passphrase)  # fmt: skip
    return context


def check_mqtt_files(mqtt: MqttConfig, now_s: float) -> list[CheckResult]:
    """TLS files (CA loads; client certificate and key load together and are in date) and the
    password file, when configured."""
    results: list[CheckResult] = []
    tls = mqtt.tls
    if tls is None:
        results.append(_skip("tls", "mqtt.tls is not configured: the uplink is not encrypted"))
    else:
        missing = [p for p in (tls.ca_file, tls.cert_file, tls.key_file) if p and not p.is_file()]
        if missing:
            results.append(_fail("tls", f"missing: {', '.join(map(str, missing))}",
                                 "install the files, or correct mqtt.tls"))  # fmt: skip
        else:
            results.append(_check_tls_files(tls.ca_file, tls.cert_file, tls.key_file, now_s))
    if mqtt.password_file is not None:
        if not mqtt.username:
            results.append(_fail("mqtt password", "mqtt.password_file is set but mqtt.username is "
                                 "not: the daemon sends no credentials",
                                 "set mqtt.username, or remove mqtt.password_file"))  # fmt: skip
        else:
            try:
                secret = mqtt.password_file.read_text().strip()
            except OSError as exc:
                results.append(_fail("mqtt password", f"{mqtt.password_file}: cannot read "
                                     f"({exc.strerror})", "install the password file"))  # fmt: skip
            else:
                if not secret:
                    results.append(_fail("mqtt password", f"{mqtt.password_file} is empty",
                                         "write the broker password into it"))  # fmt: skip
                else:
                    results.append(_pass("mqtt password", f"{mqtt.password_file} is readable"))
    return results


def _check_tls_files(
    ca_file: Path, cert_file: Path | None, key_file: Path | None, now_s: float
) -> CheckResult:
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        return _fail("tls", f"CA file {ca_file} does not load ({exc})",
                     "install the broker's CA certificate (PEM) there")  # fmt: skip
    if cert_file is None:
        return _pass("tls", f"CA {ca_file} loads (no client certificate configured)")
    try:
        _tls_context(ca_file, cert_file, key_file)
    except _EncryptedKey:
        return _fail("tls", f"{key_file or cert_file}: the private key is encrypted; the daemon "
                     "cannot give a passphrase (it would wait for one on the console)",
                     "install the key without a passphrase, readable only by the daemon's user")  # fmt: skip
    except (ssl.SSLError, OSError) as exc:
        return _fail("tls", f"client certificate {cert_file} and key {key_file} do not load "
                     f"together ({exc})", "install the matching certificate and key")  # fmt: skip
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError as exc:
        return _fail("tls", f"{cert_file}: {exc}", "install the certificate as PEM")
    now = datetime.fromtimestamp(now_s, UTC)
    if now < certificate.not_valid_before_utc:
        return _fail("tls", f"client certificate {cert_file} is valid only from "
                     f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                     "check the gateway clock (is it behind?), or wait")  # fmt: skip
    if now > certificate.not_valid_after_utc:
        return _fail("tls", f"client certificate {cert_file} expired on "
                     f"{certificate.not_valid_after_utc:%Y-%m-%d} UTC",
                     "install a renewed certificate (or check the gateway clock)")  # fmt: skip
    return _pass("tls", f"CA {ca_file} loads; client certificate valid until "
                 f"{certificate.not_valid_after_utc:%Y-%m-%d}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """What the MQTT probe needs, read from the config in the reactor thread."""

    host: str
    port: int
    client_id: str
    keepalive_s: int = 10
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BrokerProbe:
    """``outcome``: accepted, refused, timeout, tls, dns, unreachable, rejected, no-connack."""

    outcome: str
    detail: str = ""


def thd_probe_broker(settings: BrokerSettings, timeout_s: float) -> BrokerProbe:
    """One MQTT v5 CONNECT with a clean start, then DISCONNECT (runs in a thread: it blocks)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5
    )
    client.connect_timeout = timeout_s
    if settings.ca_file is not None:
        try:
            context = _tls_context(settings.ca_file, settings.cert_file, settings.key_file)
        except (_EncryptedKey, ssl.SSLError, OSError) as exc:
            return BrokerProbe("tls", f"TLS files do not load ({exc or 'encrypted key'})")
        client.tls_set_context(context)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    answers: list[Any] = []
    client.on_connect = lambda c, userdata, flags, reason, props: answers.append(reason)
    try:
        client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=True)
    except ConnectionRefusedError:
        return BrokerProbe("refused")
    except ssl.SSLCertVerificationError as exc:
        return BrokerProbe("tls", f"certificate verify failed: {exc.verify_message}")
    except (ssl.SSLEOFError, ConnectionResetError) as exc:
        if settings.ca_file is None:
            return BrokerProbe("unreachable", str(exc.strerror or exc))
        return BrokerProbe("tls", "the server closed the connection during the TLS handshake "
                           "(is mqtt.port the broker's TLS port?)")  # fmt: skip
    except ssl.SSLError as exc:
        return BrokerProbe("tls", str(exc))
    except TimeoutError:
        return BrokerProbe("timeout")
    except socket.gaierror as exc:
        return BrokerProbe("dns", str(exc.strerror or exc))
    except OSError as exc:
        return BrokerProbe("unreachable", str(exc.strerror or exc))
    try:
        # a thread's own deadline: this function blocks by design and never sees the reactor
        deadline = time.monotonic() + timeout_s
        closed = False
        while not answers and not closed and time.monotonic() < deadline:
            closed = client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS
        if not answers and closed:
            return BrokerProbe("no-connack", "the server closed the connection")
        if not answers:
            return BrokerProbe("no-connack", f"no CONNACK within {timeout_s:g} s")
        reason = answers[0]
        if reason.is_failure:
            return BrokerProbe("rejected", str(reason))
        client.disconnect()
        client.loop(timeout=0.05)
        return BrokerProbe("accepted")
    finally:
        with contextlib.suppress(Exception):
            sock = client.socket()
            if sock is not None:
                sock.close()


def broker_settings(config: ConcentratorConfig) -> BrokerSettings:
    """The probe's settings from the daemon config (reads the password file)."""
    mqtt = config.mqtt
    tls = mqtt.tls
    password = None
    if mqtt.username and mqtt.password_file is not None:
        with contextlib.suppress(OSError):
            password = mqtt.password_file.read_text().strip()
    return BrokerSettings(
        host=mqtt.host,
        port=mqtt.port,
        client_id=f"gw-{config.gateway_id}-check",
        ca_file=tls.ca_file if tls else None,
        cert_file=tls.cert_file if tls else None,
        key_file=tls.key_file if tls else None,
        username=mqtt.username,
        password=password,
    )


_BROKER_FIXES = {
    "refused": "check mqtt.host and mqtt.port, and that the broker runs there",
    "timeout": "check mqtt.host, the network path (APN, routes) and firewalls on the way",
    "tls": "check mqtt.tls files, the broker's certificate and host name, and the gateway clock",
    "dns": "check mqtt.host and the gateway's DNS settings, or use an IP address",
    "unreachable": "check the network connection (modem, APN, routes)",
    "rejected": "check mqtt.username / mqtt.password_file and the broker's ACL for this gateway",
    "no-connack": "check that mqtt.port is an MQTT v5 broker's port (TLS port for TLS)",
}


async def check_broker(
    reactor: Any, config: ConcentratorConfig, timeout_s: float = 5.0
) -> CheckResult:
    """The broker accepts an MQTT v5 connection within ``timeout_s``."""
    from twisted.internet.threads import deferToThreadPool

    settings = broker_settings(config)
    where = f"{settings.host}:{settings.port}" + (" (TLS)" if settings.ca_file else "")
    probe: BrokerProbe = await deferToThreadPool(
        reactor, reactor.getThreadPool(), thd_probe_broker, settings, timeout_s
    )
    name = "mqtt broker"
    if probe.outcome == "accepted":
        return _pass(name, f"{where} accepted an MQTT v5 connection as {settings.client_id}")
    reasons = {
        "refused": f"{where} refused the TCP connection (nothing listens on that port)",
        "timeout": f"no answer from {where} within {timeout_s:g} s",
        "tls": f"TLS with {where} failed: {probe.detail}",
        "dns": f"cannot resolve {settings.host!r}: {probe.detail}",
        "unreachable": f"{where} is unreachable: {probe.detail}",
        "rejected": f"{where} refused the MQTT connection: {probe.detail}",
        "no-connack": f"{where} connected but gave no MQTT v5 CONNACK ({probe.detail})",
    }
    return _fail(
        name, reasons.get(probe.outcome, probe.detail), _BROKER_FIXES.get(probe.outcome, "")
    )


def check_clock(now_s: float, broker_reachable: bool, tls: bool = False) -> CheckResult:
    """The clock reads a plausible year; it cannot be checked against the head-end from here."""
    now = datetime.fromtimestamp(now_s, UTC)
    shown = f"{now:%Y-%m-%d %H:%M:%S} UTC"
    if now.year < MIN_YEAR:
        return _fail("clock", f"the gateway clock reads {shown}: it has lost the time",
                     "set the clock (NTP, or date -s) before starting the daemon: readings and "
                     "token times would be stamped wrong and TLS certificates fail")  # fmt: skip
    agrees = " (TLS with the broker worked: it is within the certificates' dates)" if (
        broker_reachable and tls) else ""  # fmt: skip
    return _pass("clock", f"the gateway clock reads {shown}{agrees}; it cannot be verified "
                 "against the head-end here")  # fmt: skip


async def check_meter(
    master: ModbusMaster, bus: str, meter: MeterConfig, profile: Profile, timeout_ms: float
) -> CheckResult:
    """The meter answers an identity read; its DRN is the configured ``meter_id``, if any."""
    name = f"meter {bus}/{meter.address}"
    where = f"unit id {meter.address}"
    scan_hint = "run amr gw scan on this bus to see who answers where"
    identity = None
    for attempt in range(1, METER_ATTEMPTS + 1):
        try:
            identity = await read_identity(master, meter.address, profile)
            break
        except MeterTimeout:
            if attempt == METER_ATTEMPTS:
                return _fail(name, f"no answer at {where} ({METER_ATTEMPTS} identity reads, "
                             f"{timeout_ms:g} ms each)",
                             "check the meter's power, its unit id, the wiring (A/B) and the "
                             f"bus's baud rate and parity; {scan_hint}")  # fmt: skip
        except MeterException as exc:
            if exc.code in GATEWAY_NO_DEVICE:
                return _fail(name, f"the TCP gateway says there is no device at {where} "
                             f"({_exception_text(exc.code)})",
                             f"check the meter behind the gateway and its unit id; {scan_hint}")  # fmt: skip
            return _fail(name, f"{where} answered the identity read with "
                         f"{_exception_text(exc.code)}: not a {profile.name} meter?",
                         f"check the meter's profile in the config and its unit id; {scan_hint}")  # fmt: skip
        except ProtocolError as exc:
            return _fail(name, f"{where} answered, but not as a {profile.name} meter ({exc})",
                         f"check the meter's profile in the config; {scan_hint}")  # fmt: skip
        except LinkDown as exc:
            return _fail(name, f"{exc} while reading {where}",
                         "check the adapter / network connection")  # fmt: skip
    assert identity is not None
    if meter.meter_id is None:
        return _pass(name, f"DRN {identity.drn} answers at {where} (no meter_id configured: "
                     "the daemon will use this DRN)")  # fmt: skip
    if identity.drn != meter.meter_id:
        return _fail(name, f"{where} is DRN {identity.drn}, but meter_id is {meter.meter_id}",
                     "another meter answers at this unit id: correct meter_id or the meter's "
                     f"unit id; {scan_hint}")  # fmt: skip
    return _pass(name, f"DRN {identity.drn} answers at {where} and matches meter_id")


async def check_bus(
    reactor: Any,
    bus: RtuBusConfig | TcpBusConfig,
    profiles: Mapping[str, Profile],
    connect_timeout_s: float = 5.0,
) -> list[CheckResult]:
    """The bus opens as the daemon opens it, then every meter on it is checked."""
    name = f"bus {bus.name}"
    link: SerialLine | TcpLink
    gap = None
    if isinstance(bus, RtuBusConfig):
        link = SerialLine(bus.device, bus.baud, bus.parity)
        if bus.inter_frame_gap_ms is not None:
            gap = bus.inter_frame_gap_ms / 1000
    else:
        link = TcpLink(bus.host, bus.port)
    try:
        opened = await open_modbus(reactor, link, timeout_s=bus.timeout_ms / 1000,
                                   connect_timeout_s=connect_timeout_s, inter_frame_gap=gap)  # fmt: skip
    except LinkOpenError as exc:
        return [_fail(name, exc.reason, exc.fix)] + [
            _skip(f"meter {bus.name}/{m.address}", f"bus {bus.name} did not open")
            for m in bus.meters
        ]
    results = [_pass(name, f"{opened.where} opened")]
    try:
        for meter in bus.meters:
            results.append(await check_meter(opened.master, bus.name, meter,
                                             profiles[meter.profile], bus.timeout_ms))  # fmt: skip
    finally:
        await opened.close()
    return results


class _Dlt645Probe(Protocol):
    """Asks one DL/T 645 meter at a time and waits for its reply (or silence)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.receiver = FrameReceiver()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiting: tuple[str, defer.Deferred[Frame | None]] | None = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.receiver.receive_data(data)
        while True:
            event = self.receiver.next_event()
            if event is NEED_DATA:
                return
            if not isinstance(event, Frame) or not event.is_reply or self._waiting is None:
                continue
            address, done = self._waiting
            if event.address == address:
                self._waiting = None
                done.callback(event)

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 - Twisted's name
        if not self.lost.called:
            self.lost.callback(None)

    async def ask(self, address: str, di: str, timeout_s: float) -> Frame | None:
        from protocols.dlt645 import ReadRequest

        done: defer.Deferred[Frame | None] = defer.Deferred()
        self._waiting = (address, done)
        assert self.transport is not None
        self.transport.write(encode_frame(ReadRequest(address, di).to_frame()))

        def silent() -> None:
            if not done.called:
                self._waiting = None
                done.callback(None)

        timer = self.clock.callLater(timeout_s, silent)
        reply = await done
        if timer.active():
            timer.cancel()
        return reply


async def check_serial_bus(reactor: Any, bus: Any) -> list[CheckResult]:
    """A DL/T 645 line or PLC module bus: the serial device opens; a DL/T 645 meter answers a
    read of its communication address (DI 04000401) at its address. Meters behind a PLC module
    are not tried (their replies take a routing round of up to a minute)."""
    name = f"bus {bus.name}"
    kind = str(getattr(bus, "type", "serial"))
    line = SerialLine(bus.device, bus.baud, bus.parity)
    probe = _Dlt645Probe(reactor)
    try:
        _open_serial(reactor, line, probe)
    except LinkOpenError as exc:
        return [_fail(name, exc.reason, exc.fix)] + [
            _skip(f"meter {bus.name}/{m.address}", f"bus {bus.name} did not open")
            for m in bus.meters
        ]
    results = [_pass(name, f"{kind} {line} opened")]
    try:
        for meter in bus.meters:
            check = f"meter {bus.name}/{meter.address}"
            if kind != "dlt645":
                results.append(_skip(check, f"meters behind a {kind} module are not tried here"))
                continue
            frame = await probe.ask(meter.address, "04000401", float(bus.timeout_ms) / 1000)
            if frame is None:
                results.append(_fail(check, f"no answer at address {meter.address} within "
                                     f"{bus.timeout_ms:g} ms",
                                     "check the meter's power and address (nameplate), the wiring "
                                     "(A/B), baud rate and parity; with one meter on the line, "
                                     "amr gw scan --bus-type dlt645 reads its address"))  # fmt: skip
            elif frame.is_abnormal:
                results.append(_pass(check, f"answers at address {meter.address} (it refuses "
                                     "to read its communication address)"))  # fmt: skip
            else:
                results.append(_pass(check, f"answers at address {meter.address}"))
    finally:
        await _close(reactor, probe.transport, probe.lost)
    return results


async def check_gateway(
    reactor: Any,
    config_path: Path,
    *,
    broker_timeout_s: float = 5.0,
    connect_timeout_s: float = 5.0,
) -> CheckReport:
    """Every check, in the order a technician fixes things; the buses are checked while the
    broker probe runs."""
    checked = check_config(config_path)
    results = list(checked.results)
    config = checked.config
    if config is None or any(r.status is Status.FAIL for r in results):
        return CheckReport(tuple(results))
    now_s = reactor.seconds()
    results.append(check_journal(config.journal))
    results.append(check_public_key(config.headend_public_key_file))
    files = check_mqtt_files(config.mqtt, now_s)
    results += files
    tls_broken = any(r.check == "tls" and r.status is Status.FAIL for r in files)
    broker: defer.Deferred[CheckResult] | None = None
    if not tls_broken:
        broker = defer.ensureDeferred(check_broker(reactor, config, broker_timeout_s))
    buses: list[CheckResult] = []
    try:
        for bus in config.buses:
            if isinstance(bus, RtuBusConfig | TcpBusConfig):
                buses += await check_bus(reactor, bus, checked.profiles, connect_timeout_s)
            else:
                buses += await check_serial_bus(reactor, bus)
    finally:
        broker_result = (
            await broker
            if broker is not None
            else _skip("mqtt broker", "not tried: the TLS files above do not load")
        )
    results.append(broker_result)
    results.append(
        check_clock(now_s, broker_result.status is Status.PASS, config.mqtt.tls is not None)
    )
    results += buses
    return CheckReport(tuple(results))
