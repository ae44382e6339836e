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
from protocols.modbus.profiles import PROFILE_DIR
from protocols.sts import (
    DecoderKeyInputs,
    MeterPan,
    VendingKey,
    derive_decoder_key,
    luhn_check_digit,
)

from .config import (
    Dlt645BusConfig,
    Dlt645MetersConfig,
    MetersConfig,
    PlcBusConfig,
    RtuBusConfig,
    SimConfig,
    TcpBusConfig,
)
from .dlt645_bus import Dlt645Bus, Dlt645BusProtocol, Dlt645Meter, address_from_drn
from .load import LoadProfile
from .meter import MeterIdentity, VirtualMeter
from .modbus_bus import ModbusBus, RtuBusProtocol, TcpBusFactory
from .plc_module import PlcModule, PlcModuleProtocol
from .registers import RegisterMap

__all__ = ["Bus", "Fleet", "SimClock", "SimulatorService", "build_fleet", "load_profile_file"]

BusConfigModel = RtuBusConfig | TcpBusConfig | Dlt645BusConfig | PlcBusConfig

log = Logger()


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


Bus = ModbusBus | Dlt645Bus | PlcModule


@dataclass(slots=True)
class BusEntry:
    config: BusConfigModel
    bus: Bus
    where: str = ""


@dataclass(slots=True)
class Fleet:
    config: SimConfig
    clock: SimClock
    buses: list[BusEntry]
    # DRN -> (bus name, address on the bus: Modbus unit id or DL/T 645 address, meter)
    meters_by_drn: dict[str, tuple[str, int | str, VirtualMeter]]

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


@dataclass(slots=True)
class _MeterMaker:
    """Makes the fleet's meters in order: DRNs, decoder keys, load profiles, seeds."""

    config: SimConfig
    start_s: float
    rng: random.Random
    vending_key: VendingKey
    serial: int = 0

    def make(self, spec: MetersConfig | Dlt645MetersConfig, index: int) -> VirtualMeter:
        sts = self.config.sts
        self.serial = max(self.serial + 1, spec.first_serial + index)
        drn = make_drn(sts.manufacturer_code, self.serial, 11 if len(sts.iin) == 6 else 13)
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
        scale = self.rng.uniform(0.6, 1.4)
        return VirtualMeter(
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
            derive_decoder_key(self.vending_key, inputs),
            load=LoadProfile(base_w=spec.base_load_w * scale, peak_w=spec.peak_load_w * scale),
            seed=self.rng.randrange(2**32),
            credit_wh=spec.initial_credit_kwh * 1000,
            now_s=self.start_s,
            utc_offset_min=self.config.clock.utc_offset_minutes,
        )


def _dlt645_meters(
    bus_config: Dlt645BusConfig | PlcBusConfig, maker: _MeterMaker
) -> dict[str, Dlt645Meter]:
    meters: dict[str, Dlt645Meter] = {}
    first = bus_config.first_address
    for index in range(bus_config.meters.count):
        meter = maker.make(bus_config.meters, index)
        address = (
            f"{int(first) + index:012d}"
            if first is not None
            else address_from_drn(meter.identity.drn)
        )
        meters[address] = Dlt645Meter(address, meter, relay_password=bus_config.relay_password)
    return meters


def build_fleet(config: SimConfig, reactor: IReactorTime) -> Fleet:
    start = config.clock.start or datetime.now(UTC)
    start_s = float(calendar.timegm(start.utctimetuple()))
    clock = SimClock(reactor, start_s, config.clock.speed)
    rng = random.Random(config.seed)
    maker = _MeterMaker(config, start_s, rng, config.sts.vending_key())
    buses: list[BusEntry] = []
    meters_by_drn: dict[str, tuple[str, int | str, VirtualMeter]] = {}
    for bus_config in config.buses:
        bus: Bus
        if isinstance(bus_config, Dlt645BusConfig | PlcBusConfig):
            dlt645_meters = _dlt645_meters(bus_config, maker)
            for address, dlt645_meter in dlt645_meters.items():
                meter = dlt645_meter.meter
                meters_by_drn[meter.identity.drn] = (bus_config.name, address, meter)
            if isinstance(bus_config, Dlt645BusConfig):
                bus = Dlt645Bus(
                    name=bus_config.name,
                    meters=dlt645_meters,
                    clock=reactor,
                    now_s=clock.now,
                    baud=bus_config.baud,
                    turnaround_ms=bus_config.turnaround_ms,
                    seed=rng.randrange(2**32),
                )
            else:
                bus = PlcModule(
                    name=bus_config.name,
                    meters=dlt645_meters,
                    clock=reactor,
                    now_s=clock.now,
                    master_address=bus_config.master_address,
                    baud=bus_config.baud,
                    delay_s=bus_config.delay_s,
                    delay_jitter_s=bus_config.delay_jitter_s,
                    loss=bus_config.loss,
                    seed=rng.randrange(2**32),
                )
            buses.append(BusEntry(bus_config, bus))
            continue
        register_map = RegisterMap(load_profile_file(bus_config.profile))
        meters: dict[int, VirtualMeter] = {}
        spec = bus_config.meters
        for index in range(spec.count):
            unit_id = spec.first_address + index
            meter = maker.make(spec, index)
            meters[unit_id] = meter
            meters_by_drn[meter.identity.drn] = (bus_config.name, unit_id, meter)
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
        for entry in self.fleet.buses:
            config = entry.config
            bus = entry.bus
            if isinstance(bus, ModbusBus):
                units = sorted(bus.meters)
                span = f"{len(units)} meters, unit ids {units[0]}-{units[-1]}"
            else:
                addresses = sorted(bus.meters)
                span = f"{len(addresses)} meters, addresses {addresses[0]}-{addresses[-1]}"
            if isinstance(bus, ModbusBus) and isinstance(config, TcpBusConfig):
                port = self.reactor.listenTCP(
                    config.port, TcpBusFactory(bus), interface=config.host
                )
                self._ports.append(port)
                entry.where = f"modbus-tcp {config.host}:{port.getHost().port}"
            elif isinstance(bus, ModbusBus):
                assert isinstance(config, RtuBusConfig)
                entry.where = "modbus-rtu " + self._open_line(RtuBusProtocol(bus), config)
            elif isinstance(bus, Dlt645Bus):
                assert isinstance(config, Dlt645BusConfig)
                entry.where = "dlt645 " + self._open_line(Dlt645BusProtocol(bus), config)
            else:
                assert isinstance(config, PlcBusConfig)
                longest = bus.delay_s + bus.delay_jitter_s
                delay = f"{bus.delay_s:g}-{longest:g}" if bus.delay_jitter_s else f"{bus.delay_s:g}"
                entry.where = (
                    "qgdw1376.2 "
                    + self._open_line(PlcModuleProtocol(bus), config)
                    + f", master {bus.master_address}, PLC delay {delay} s"
                )
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

    def _open_line(
        self, protocol: Any, config: RtuBusConfig | Dlt645BusConfig | PlcBusConfig
    ) -> str:
        """Attach ``protocol`` to the bus's pty or serial device; says where, for the user."""
        line_format = f"{config.baud} 8{config.parity}1"
        if config.pty:
            from .pty import PtyLine

            line = PtyLine(protocol, self.reactor, self.fleet.config.run_dir / config.name)
            self._lines.append(line)
            return f"{line_format} on {line.device} (link {line.link})"
        from twisted.internet.serialport import SerialPort

        port_line = SerialPort(
            protocol, config.device, self.reactor, baudrate=config.baud, parity=config.parity
        )
        self._lines.append(port_line)
        return f"{line_format} on {config.device}"

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
