"""The concentrator daemon's composition root: :func:`make_service` wires every part from the
config, explicitly; :class:`ConcentratorService` starts and stops them in order.

    buses (RTU serial ports reopened when they vanish; TCP with reconnect) -> masters -> bus actors
    pollers (poll groups on the clock) -> recorder -> journal -> uplink (MQTT) -> head-end
    head-end -> cmd -> command processor -> bus actors (COMMAND priority) -> statuses -> journal
    health: every health_interval_s a health message (not journaled: only the current one matters)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from headend.mqtt import ReactorMqtt
from protocols.link import Health, Topic, encode_message, gateway_topic
from protocols.modbus import Profile
from protocols.modbus.adapter import Framing
from protocols.modbus.profiles import PROFILE_DIR
from protocols.modbus.timing import silent_interval_s

from . import __version__
from .access import MeterAccess, ModbusAccess
from .bus import BusActor
from .commands import CommandProcessor
from .config import (
    ConcentratorConfig,
    Dlt645BusConfig,
    PlcBusConfig,
    RtuBusConfig,
    TcpBusConfig,
)
from .dlt645_driver import Dlt645Access
from .dlt645_link import Dlt645Line, LineProtocol, PlcModuleLink
from .journal import JournalStore
from .modbus_driver import ModbusMeter, load_profiles
from .modbus_master import ModbusLinkProtocol, ModbusMaster
from .polling import AlarmTracker, BusPoller, PollGroup, Recorder
from .uplink import Journal, Uplink

__all__ = ["ConcentratorService", "make_service"]

log = Logger()

DEFAULT_PROFILES = PROFILE_DIR
REOPEN_S = 2.0
WILL_DELAY_S = 10  # seconds the broker waits before it says a lost gateway is offline
SNAPSHOT_INTERVAL_S = 5.0


@dataclass(slots=True)
class BusRuntime:
    config: RtuBusConfig | TcpBusConfig | Dlt645BusConfig | PlcBusConfig
    master: ModbusMaster | Dlt645Line | PlcModuleLink
    actor: BusActor
    poller: BusPoller
    connector: Any = None
    open_errors: int = 0


@dataclass(slots=True)
class Runtime:
    config: ConcentratorConfig
    journal: Journal
    mqtt: ReactorMqtt
    uplink: Uplink
    recorder: Recorder
    commands: CommandProcessor
    buses: list[BusRuntime] = field(default_factory=list)


def _profiles(config: ConcentratorConfig) -> dict[str, Profile]:
    return load_profiles(config.profiles_dir or DEFAULT_PROFILES)


def _public_key(config: ConcentratorConfig) -> Ed25519PublicKey | None:
    if config.headend_public_key_file is None:
        return None
    key = load_pem_public_key(config.headend_public_key_file.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{config.headend_public_key_file}: not an Ed25519 public key")
    return key


def make_service(config: ConcentratorConfig, reactor: Any) -> ConcentratorService:
    """Every part of the daemon, wired from the config; nothing starts until startService."""
    profiles = _profiles(config)
    journal = Journal(
        JournalStore(config.journal.path, int(config.journal.quota_mb * 1024 * 1024)), reactor
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{config.gateway_id}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(50)
    if config.mqtt.tls is not None:
        tls = config.mqtt.tls
        client.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file) if tls.cert_file else None,
                       keyfile=str(tls.key_file) if tls.key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
    if config.mqtt.username:
        password = (
            config.mqtt.password_file.read_text().strip() if config.mqtt.password_file else None
        )
        client.username_pw_set(config.mqtt.username, password)
    reactor_mqtt = ReactorMqtt(reactor, client)
    runtime_buses: list[BusRuntime] = []

    def meters() -> tuple[str, ...]:
        return tuple(
            sorted(m.meter_id for b in runtime_buses for m in b.poller.meters if m.meter_id)
        )

    holder: dict[str, Any] = {}

    def kick() -> None:
        holder["uplink"].kick()

    recorder = Recorder(journal, config.gateway_id, reactor, kick, config.batch.max_readings,
                        config.batch.max_delay_s)  # fmt: skip
    alarms = AlarmTracker()

    def find_meter(meter_id: str) -> tuple[BusPoller, MeterAccess] | None:
        for bus in runtime_buses:
            for meter in bus.poller.meters:
                if meter.meter_id == meter_id:
                    return bus.poller, meter
        return None

    def headend_now() -> float:
        offset: float = holder["uplink"].headend_offset_s
        return float(reactor.seconds()) + offset

    commands = CommandProcessor(journal, config.gateway_id, reactor, find_meter,
                                _public_key(config), kick, headend_now)  # fmt: skip
    uplink = Uplink(reactor, reactor_mqtt, journal, config.gateway_id, on_command=commands.receive,
                    version=__version__, meters=meters,
                    ack_timeout_s=config.mqtt.ack_timeout_s)  # fmt: skip
    holder["uplink"] = uplink
    journal.on_written = kick
    will_topic, will_payload = uplink.last_will()
    # A will delay: when a dead link is noticed late, the gateway's new connection takes over
    # the session before the broker drops the old one; without a delay the broker then
    # publishes the old connection's "offline" after the new "online", and the head-end would
    # show a connected gateway as offline. A new connection within the delay cancels the will.
    will_properties = Properties(PacketTypes.WILLMESSAGE)
    will_properties.WillDelayInterval = WILL_DELAY_S
    client.will_set(will_topic, will_payload, qos=1, retain=True, properties=will_properties)
    groups = {
        name: PollGroup(name, g.interval_s, g.offset_s, g.alarm)
        for name, g in config.poll_groups.items()
    }
    for bus_config in config.buses:
        if isinstance(bus_config, Dlt645BusConfig | PlcBusConfig):
            timeout_s = bus_config.timeout_ms / 1000
            link: Dlt645Line | PlcModuleLink = (
                Dlt645Line(reactor, timeout_s)
                if isinstance(bus_config, Dlt645BusConfig)
                else PlcModuleLink(reactor, bus_config.master_address, timeout_s)
            )
            password = "123456"
            if bus_config.relay_password_file is not None:
                password = bus_config.relay_password_file.read_text().strip()
            dlt_meters: list[MeterAccess] = [
                Dlt645Access(link, m.address, m.meter_id or m.address, relay_password=password)
                for m in bus_config.meters
            ]
            actor = BusActor(bus_config.name, reactor)
            poller = BusPoller(actor, dlt_meters, groups, recorder, alarms, reactor)
            runtime_buses.append(BusRuntime(bus_config, link, actor, poller))
            continue
        if isinstance(bus_config, RtuBusConfig):
            gap = (
                bus_config.inter_frame_gap_ms / 1000
                if bus_config.inter_frame_gap_ms is not None
                else silent_interval_s(bus_config.baud)
            )
            master = ModbusMaster(reactor, Framing.RTU, timeout_s=bus_config.timeout_ms / 1000,
                                  inter_frame_gap_s=gap, retries=bus_config.retries)  # fmt: skip
        else:
            master = ModbusMaster(
                reactor,
                Framing.TCP,
                timeout_s=bus_config.timeout_ms / 1000,
                retries=bus_config.retries,
            )
        bus_meters: list[MeterAccess] = []
        for meter_config in bus_config.meters:
            if meter_config.profile not in profiles:
                raise ValueError(f"buses.{bus_config.name}: no profile {meter_config.profile!r}")
            modbus_meter = ModbusMeter(meter_config.meter_id or "", meter_config.address,
                                       profiles[meter_config.profile])  # fmt: skip
            bus_meters.append(ModbusAccess(master, modbus_meter))
        actor = BusActor(bus_config.name, reactor)
        poller = BusPoller(actor, bus_meters, groups, recorder, alarms, reactor)
        runtime_buses.append(BusRuntime(bus_config, master, actor, poller))
    runtime = Runtime(config, journal, reactor_mqtt, uplink, recorder, commands, runtime_buses)
    return ConcentratorService(runtime, reactor)


class _LinkFactory(Factory):
    def __init__(self, master: ModbusMaster) -> None:
        self.master = master

    def buildProtocol(self, addr: object) -> Protocol:  # noqa: N802 - Twisted's name
        return ModbusLinkProtocol(self.master)


class ConcentratorService(Service):
    def __init__(self, runtime: Runtime, reactor: Any) -> None:
        self.runtime = runtime
        self.reactor = reactor
        self._health = task.LoopingCall(self._publish_health)
        self._health.clock = reactor
        self._snapshot_call = task.LoopingCall(self._refresh_snapshot)
        self._snapshot_call.clock = reactor
        self.snapshot: dict[str, Any] = {
            "gateway": runtime.config.gateway_id,
            "metrics": {},
            "meters": [],
        }
        self.status_port: Any = None

    # -- buses ----------------------------------------------------------------------------------

    def _open_serial(self, bus: BusRuntime) -> None:
        from twisted.internet.serialport import SerialPort

        config = bus.config
        assert not isinstance(config, TcpBusConfig)
        if not self.running:
            return

        def lost(reason: str) -> None:
            log.warn("Bus {bus}: serial port {device} lost ({reason}); reopening",
                     bus=config.name, device=config.device, reason=reason)  # fmt: skip
            if self.running:
                self.reactor.callLater(REOPEN_S, self._open_serial, bus)

        protocol: Protocol = (
            ModbusLinkProtocol(bus.master, on_lost=lost)
            if isinstance(bus.master, ModbusMaster)
            else LineProtocol(bus.master, on_lost=lost)
        )
        try:
            bus.connector = SerialPort(protocol, config.device, self.reactor, baudrate=config.baud,
                                       parity=config.parity)  # fmt: skip
        except Exception as exc:  # the USB adapter is unplugged: keep trying, never crash
            bus.open_errors += 1
            if bus.open_errors in (1, 10) or bus.open_errors % 100 == 0:
                log.warn("Bus {bus}: cannot open {device} ({error}); retrying",
                         bus=config.name, device=config.device, error=str(exc))  # fmt: skip
            self.reactor.callLater(REOPEN_S, self._open_serial, bus)
            return
        bus.open_errors = 0

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        runtime = self.runtime
        runtime.journal.start()
        for bus in runtime.buses:
            if isinstance(bus.config, TcpBusConfig):
                endpoint = TCP4ClientEndpoint(
                    self.reactor, bus.config.host, bus.config.port, timeout=10
                )
                assert isinstance(bus.master, ModbusMaster)
                service = ClientService(endpoint, _LinkFactory(bus.master),
                                        retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=30.0),
                                        clock=self.reactor)  # fmt: skip
                service.startService()
                bus.connector = service
            else:
                self._open_serial(bus)
            bus.poller.start()
        config = runtime.config.mqtt
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = config.session_expiry_s
        runtime.uplink.start()
        runtime.mqtt.start(config.host, config.port, keepalive=config.keepalive_s,
                           clean_start=False, properties=properties)  # fmt: skip
        self._health.start(runtime.config.health_interval_s, now=False)
        self._snapshot_call.start(SNAPSHOT_INTERVAL_S, now=True)
        if runtime.config.status_http is not None:
            from twisted.web.server import Site

            from .status import StatusResource

            site = Site(StatusResource(lambda: self.snapshot))
            site.noisy = False
            self.status_port = self.reactor.listenTCP(
                runtime.config.status_http, site, interface=runtime.config.status_http_host
            )

    @defer.inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        super().stopService()
        runtime = self.runtime
        if self._health.running:
            self._health.stop()
        if self._snapshot_call.running:
            self._snapshot_call.stop()
        if self.status_port is not None:
            yield self.status_port.stopListening()
        for bus in runtime.buses:
            bus.poller.stop()
            bus.actor.stop()
        yield runtime.recorder.flush()
        runtime.uplink.stop()
        yield runtime.mqtt.stop().addTimeout(5, self.reactor).addErrback(lambda _: None)
        for bus in runtime.buses:
            connector = bus.connector
            if isinstance(connector, ClientService):
                yield connector.stopService()
            elif connector is not None:
                connector.loseConnection()
        runtime.journal.stop()

    # -- health ---------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        runtime = self.runtime
        stats = await runtime.journal.stats()
        metrics: dict[str, Any] = {
            "journal.entries": stats.entries,
            "journal.bytes": stats.bytes,
            "journal.oldest_age_s": round(self.reactor.seconds() - stats.oldest_created, 1)
            if stats.oldest_created
            else 0,
            "journal.evicted": stats.evicted,
            "journal.write_failures": runtime.journal.write_failures,
            "journal.held": len(runtime.journal.held),
            **{f"journal.dropped.{kind}": n for kind, n in runtime.journal.dropped.items()},
            "mqtt.connected": runtime.mqtt.connected,
            "mqtt.reconnects": runtime.mqtt.reconnects,
            "clock.headend_offset_s": round(runtime.uplink.headend_offset_s, 1),
            "uplink.unacknowledged": runtime.uplink.unacknowledged,
            "uplink.resent": runtime.uplink.resent,
            "commands.malformed": runtime.commands.malformed,
            "commands.rejected": runtime.commands.rejected,
            "commands.signature_refused": runtime.commands.signature_refused,
            "commands.expired": runtime.commands.expired,
            "commands.repeated": runtime.commands.repeated,
        }
        for bus in runtime.buses:
            prefix = f"bus.{bus.config.name}"
            actor = bus.actor
            metrics.update({
                f"{prefix}.connected": bus.master.connected,
                f"{prefix}.utilisation": round(actor.utilisation(), 3),
                f"{prefix}.requests": actor.stats.requests,
                f"{prefix}.timeouts": actor.stats.timeouts,
                f"{prefix}.failures": actor.stats.failures,
                f"{prefix}.crc_errors": bus.master.crc_errors
                if isinstance(bus.master, ModbusMaster)
                else bus.master.bad_frames,
                f"{prefix}.queue_depth": actor.queue_depth,
                f"{prefix}.polls_skipped": bus.poller.skipped,
                f"{prefix}.retries": bus.master.retried if isinstance(bus.master, ModbusMaster) else 0,
                f"{prefix}.open_breakers": sum(1 for b in actor.breakers.values() if b.is_open),
            })  # fmt: skip
        return metrics

    def meters_status(self) -> list[dict[str, Any]]:
        now = self.reactor.seconds()
        rows = []
        for bus in self.runtime.buses:
            poller = bus.poller
            for meter in poller.meters:
                key = meter.key
                last = poller.last_good.get(key)
                rows.append({"meter": key, "bus": bus.config.name, "address": meter.label,
                             "last_good_age_s": None if last is None else round(now - last, 1),
                             "error_streak": poller.error_streak.get(key, 0),
                             "alarms": sorted(poller.alarms.active(key))})  # fmt: skip
        return rows

    def _refresh_snapshot(self) -> defer.Deferred[None]:
        async def refresh() -> None:
            metrics = await self.health()
            self.snapshot = {"gateway": self.runtime.config.gateway_id, "time": self.reactor.seconds(),
                             "metrics": metrics, "meters": self.meters_status()}  # fmt: skip

        done = defer.ensureDeferred(refresh())
        done.addErrback(lambda failure: log.failure("Status snapshot failed", failure))
        return done

    def _publish_health(self) -> defer.Deferred[None]:
        async def publish() -> None:
            metrics = await self.health()
            runtime = self.runtime
            _, payload = encode_message(
                Health(runtime.config.gateway_id, 0, self.reactor.seconds(), metrics)
            )
            if runtime.mqtt.connected:
                runtime.mqtt.publish(
                    gateway_topic(runtime.config.gateway_id, Topic.HEALTH), payload, qos=0
                )

        done = defer.ensureDeferred(publish())
        done.addErrback(lambda failure: log.failure("Health report failed", failure))
        return done
