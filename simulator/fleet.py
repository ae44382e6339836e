"""A fleet of virtual meters on their buses, as one Twisted service (the composition root of
``amr sim``): :func:`build_fleet` makes the meters and buses from a config, and
:class:`SimulatorService` opens the transports, runs the simulated clock and serves the control API.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger

from protocols.modbus import Profile, parse_profile
from protocols.sts import DecoderKeyInputs, MeterPan, derive_decoder_key, luhn_check_digit

from .config import RtuBusConfig, SimConfig, TcpBusConfig
from .load import LoadProfile
from .meter import MeterIdentity, VirtualMeter
from .modbus_bus import ModbusBus, RtuBusProtocol, TcpBusFactory
from .registers import RegisterMap

__all__ = ["Fleet", "SimClock", "SimulatorService", "build_fleet", "load_profile_file"]

log = Logger()

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"


def load_profile_file(name: str, directory: Path = PROFILE_DIR) -> Profile:
    """The profile ``name`` from ``config/profiles/NAME.yaml``."""
    path = directory / f"{name}.yaml"
    return parse_profile(yaml.safe_load(path.read_text()), str(path))


@dataclass(slots=True)
class SimClock:
    """Simulated UTC seconds: ``start`` plus real time elapsed times ``speed``."""

    reactor: IReactorTime
    start_s: float
    speed: float = 1.0
    _origin: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._origin = self.reactor.seconds()

    def now(self) -> float:
        return self.start_s + (self.reactor.seconds() - self._origin) * self.speed


@dataclass(slots=True)
class BusEntry:
    config: RtuBusConfig | TcpBusConfig
    bus: ModbusBus
    where: str = ""


@dataclass(slots=True)
class Fleet:
    config: SimConfig
    clock: SimClock
    buses: list[BusEntry]
    meters_by_drn: dict[str, tuple[str, int, VirtualMeter]]

    def meters(self) -> list[VirtualMeter]:
        return [meter for _, _, meter in self.meters_by_drn.values()]


def make_drn(manufacturer_code: int, serial: int, digits: int = 11) -> str:
    """A DRN: manufacturer code, serial number, Luhn check digit (IEC 62055-41 6.1.2)."""
    body = (
        f"{manufacturer_code:02d}{serial:08d}"
        if digits == 11
        else f"{manufacturer_code:04d}{serial:08d}"
    )
    return body + str(luhn_check_digit(body))


def build_fleet(config: SimConfig, reactor: IReactorTime) -> Fleet:
    sts = config.sts
    vending_key = sts.vending_key()
    start = config.clock.start or datetime.now(UTC)
    start_s = float(calendar.timegm(start.utctimetuple()))
    clock = SimClock(reactor, start_s, config.clock.speed)
    rng = random.Random(config.seed)
    buses: list[BusEntry] = []
    meters_by_drn: dict[str, tuple[str, int, VirtualMeter]] = {}
    serial = 0
    for bus_config in config.buses:
        register_map = RegisterMap(load_profile_file(bus_config.profile))
        meters: dict[int, VirtualMeter] = {}
        spec = bus_config.meters
        for index in range(spec.count):
            address = spec.first_address + index
            serial = max(serial + 1, spec.first_serial + index)
            drn = make_drn(sts.manufacturer_code, serial, 11 if len(sts.iin) == 6 else 13)
            inputs = DecoderKeyInputs(
                pan=MeterPan(sts.iin, drn),
                supply_group_code=sts.supply_group_code,
                tariff_index=f"{sts.tariff_index:02d}",
                key_revision_number=sts.key_revision_number,
                key_type=sts.kt,
                base_date=sts.base,
                algorithm=sts.algorithm,
                dkga=sts.dkga,
            )
            scale = rng.uniform(0.6, 1.4)
            meter = VirtualMeter(
                MeterIdentity(
                    drn=drn,
                    manufacturer_code=sts.manufacturer_code,
                    supply_group_code=sts.supply_group_code,
                    tariff_index=sts.tariff_index,
                    key_revision_number=sts.key_revision_number,
                    key_type=sts.kt,
                    base_date=sts.base,
                    algorithm=sts.algorithm,
                ),
                derive_decoder_key(vending_key, inputs),
                load=LoadProfile(base_w=spec.base_load_w * scale, peak_w=spec.peak_load_w * scale),
                seed=rng.randrange(2**32),
                credit_wh=spec.initial_credit_kwh * 1000,
                now_s=start_s,
                utc_offset_min=config.clock.utc_offset_minutes,
            )
            meters[address] = meter
            meters_by_drn[drn] = (bus_config.name, address, meter)
        bus = ModbusBus(
            name=bus_config.name,
            meters=meters,
            register_map=register_map,
            clock=reactor,
            now_s=clock.now,
            baud=bus_config.baud if isinstance(bus_config, RtuBusConfig) else 0,
            turnaround_ms=bus_config.turnaround_ms,
            seed=rng.randrange(2**32),
        )
        buses.append(BusEntry(bus_config, bus))
    return Fleet(config, clock, buses, meters_by_drn)


class SimulatorService(Service):
    """Opens every bus, advances every meter once a (real) second, serves the control API."""

    def __init__(self, fleet: Fleet, reactor: Any) -> None:
        self.fleet = fleet
        self.reactor = reactor
        self._ports: list[IListeningPort] = []
        self._lines: list[Any] = []
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor
        self.control_url: str | None = None

    def _tick(self) -> None:
        now = self.fleet.clock.now()
        for meter in self.fleet.meters():
            try:
                meter.advance(now)
            except Exception:  # one broken meter must not stop the fleet's clock
                log.failure("Advancing meter {drn} failed", drn=meter.identity.drn)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        from twisted.internet.serialport import SerialPort

        from .pty import PtyLine

        run_dir = self.fleet.config.run_dir
        for entry in self.fleet.buses:
            config = entry.config
            units = sorted(entry.bus.meters)
            span = f"{len(units)} meters, unit ids {units[0]}-{units[-1]}"
            if isinstance(config, TcpBusConfig):
                port = self.reactor.listenTCP(
                    config.port, TcpBusFactory(entry.bus), interface=config.host
                )
                self._ports.append(port)
                entry.where = f"modbus-tcp {config.host}:{port.getHost().port}"
            elif config.pty:
                line = PtyLine(RtuBusProtocol(entry.bus), self.reactor, run_dir / config.name)
                self._lines.append(line)
                line_format = f"{config.baud} 8{config.parity}1"
                entry.where = f"modbus-rtu {line_format} on {line.device} (link {line.link})"
            else:
                parity = {"N": "N", "E": "E", "O": "O"}[config.parity]
                port_line = SerialPort(
                    RtuBusProtocol(entry.bus), config.device, self.reactor,
                    baudrate=config.baud, parity=parity,
                )  # fmt: skip
                self._lines.append(port_line)
                entry.where = f"modbus-rtu {config.baud} 8{config.parity}1 on {config.device}"
            log.info("Bus {bus}: {where}, {span}", bus=config.name, where=entry.where, span=span)
        if self.fleet.config.control is not None:
            from twisted.web.server import Site

            from .control import ControlResource

            control = self.fleet.config.control
            site = Site(ControlResource(self.fleet))
            site.noisy = False
            port = self.reactor.listenTCP(control.port, site, interface=control.host)
            self._ports.append(port)
            self.control_url = f"http://{control.host}:{port.getHost().port}"
        self._ticker.start(1.0, now=True)

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        super().stopService()
        if self._ticker.running:
            self._ticker.stop()
        for line in self._lines:
            line.loseConnection()
        self._lines.clear()
        from twisted.internet import defer

        stopping = [defer.maybeDeferred(port.stopListening) for port in self._ports]
        self._ports.clear()
        return defer.gatherResults(stopping)
