"""An embedded MQTT 3.1.1 + 5.0 broker on Twisted, so that ``amr demo`` and tests need no Mosquitto.

It serves a loopback demo and the test suite; production uses Mosquitto (deploy/). It speaks to
the project's gateways and head-end as Mosquitto does for what they use, from the OASIS standards
(MQTT 3.1.1, 2014; MQTT 5.0, 2019), on the pure codec in :mod:`protocols.mqtt`.

Usage::

    broker = EmbeddedBroker(reactor)            # host="127.0.0.1", port=0: a free port
    broker.startService()                       # listening once this returns
    connect_to("127.0.0.1", broker.port)
    ...
    await broker.stopService()                  # listener and every connection closed

Supported:

* MQTT 3.1.1 and 5.0 clients on the same broker (3.1.1 subscribers get 5.0 messages without their
  properties). Anonymous access only: a user name and password are accepted and ignored. TCP
  only (no TLS, no WebSockets); binds to 127.0.0.1 unless told otherwise.
* QoS 0 and 1 both ways. QoS 2 from a publisher: the full PUBREC/PUBREL/PUBCOMP handshake, with
  exactly-once routing (a PUBLISH resent before PUBREL is not routed twice; the packet
  identifiers awaiting PUBREL are session state and survive a reconnect). Delivery to subscribers
  is at most QoS 1: a QoS 2 subscription is granted QoS 1 in the SUBACK, which 5.0 §3.8.4 allows
  ("The Server might grant a lower Maximum QoS than the subscriber requested").
* Retained messages (a retained empty payload deletes; 5.0 Retain Handling 0/1/2 and Retain As
  Published; No Local). Retained messages are not sent to shared subscriptions (5.0 §3.3.1.3:
  they are sent "When a new Non-shared Subscription is made").
* Will messages: published when the connection ends without DISCONNECT (peer closed, keep-alive
  timeout, protocol error, takeover) and on a 5.0 DISCONNECT with reason 0x04; never after a
  normal DISCONNECT. The 5.0 Will Delay Interval is honoured (a reconnect within it cancels the
  will; the end of the session publishes it early).
* Sessions in memory: 5.0 Clean Start 0 with a Session Expiry Interval > 0 (0xFFFFFFFF: never),
  3.1.1 CleanSession 0 (kept until the broker stops: 3.1.1 has no expiry). An offline session
  keeps its subscriptions and queues QoS 1 messages (``max_queued_messages`` per session, 100 000
  by default; further messages are dropped and counted in :attr:`EmbeddedBroker.dropped_messages`).
  QoS 0 messages are not queued for an offline session. Unacknowledged QoS 1 messages are resent
  with DUP=1 and their packet identifiers on reconnect; CONNACK's session present flag is set
  when a session was resumed. A 5.0 DISCONNECT may change the expiry interval.
* Takeover: a second connection with the same client identifier closes the first (5.0: DISCONNECT
  with reason 0x8E first). An empty client identifier gets a generated one (5.0: returned as
  Assigned Client Identifier; 3.1.1 allows it with CleanSession 1 only).
* Shared subscriptions ``$share/{group}/{filter}``, for 5.0 and, as Mosquitto does, 3.1.1 clients:
  each message goes to exactly one member, round robin among connected members; if none is
  connected, round robin among the (persistent) offline members, where it is queued. When a
  member's session ends, its queued and unacknowledged messages of that group go to the others.
* Flow control: at most ``min(client Receive Maximum, max_inflight)`` unacknowledged QoS 1
  messages per client (``max_inflight`` = 100 by default), the rest waits in the session queue.
  A message larger than the client's 5.0 Maximum Packet Size is dropped for that client
  (5.0 §3.1.2.11.4).
* Keep alive: a client silent for 1.5 times its keep alive is disconnected (5.0: reason 0x8D); a
  connection that sends no CONNECT within ``connect_timeout_s`` is closed.
* 5.0 message expiry (expired messages are not sent; the interval is counted down when
  forwarded), and payload format, content type, response topic, correlation data and user
  properties are passed through.
* CONNACK (5.0) announces Maximum Packet Size, Wildcard Subscription Available = 1, Shared
  Subscription Available = 1 and Subscription Identifiers Available = 0.
* Bad input never takes the broker down: a malformed packet or protocol error is logged, counted
  in :attr:`EmbeddedBroker.malformed_packets` and closes that connection only (5.0: after a
  DISCONNECT with the reason code, 0x81 malformed, 0x82 protocol error, 0x95 too large, ...).

Not supported: enhanced authentication (AUTH; a CONNECT with an Authentication Method is refused
with 0x8C), topic aliases (Topic Alias Maximum is 0: a client using one is disconnected with
0x94), subscription identifiers (refused with 0xA1), QoS 2 delivery to subscribers, persistence
across a broker restart, ``$SYS`` topics, bridges, access control, and the 5.0 server-side
options (Server Keep Alive, Response Information, Server Reference). It is not tuned for many
thousands of clients: routing tries every distinct topic filter per message.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from protocols.mqtt import (
    DEFAULT_MAX_PACKET_SIZE,
    MQTT_3_1_1,
    MQTT_5,
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    MqttError,
    NeedData,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    ServerConnection,
    State,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    encode,
    filter_matches,
    parse_shared,
    split_levels,
    topic_filter_problem,
)

__all__ = [
    "DEFAULT_MAX_INFLIGHT",
    "DEFAULT_MAX_QUEUED_MESSAGES",
    "NEVER_EXPIRES",
    "EmbeddedBroker",
]

log = Logger()

NEVER_EXPIRES: Final = 0xFFFF_FFFF  # 5.0 §3.1.2.11.2: "the Session does not expire"
DEFAULT_MAX_INFLIGHT: Final = 100
DEFAULT_MAX_QUEUED_MESSAGES: Final = 100_000
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
CLOSE_GRACE_S: Final = 5.0  # a peer that does not read our last bytes is aborted after this
MAX_RECEIVE_MAXIMUM: Final = 65_535  # 5.0 §3.1.2.11.3: the default when absent
MAX_REASON_STRING: Final = 200


# -- state: messages, subscriptions, sessions ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Message:
    """An application message as routed: what every subscriber's copy shares."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties  # the ones forwarded; message expiry is recomputed per copy
    expires_at: float | None  # reactor seconds (5.0 Message Expiry Interval), None: never
    sender: str | None  # client identifier, for No Local


@dataclass(slots=True)
class _Delivery:
    """One session's copy of a message: its QoS, RETAIN flag and, once sent, packet identifier."""

    message: _Message
    qos: int
    retain: bool
    group: _SharedGroup | None = None
    packet_id: int = 0


@dataclass(frozen=True, slots=True)
class _Subscription:
    topic_filter: str  # as subscribed, "$share/..." included
    levels: tuple[str, ...]  # of the filter proper
    qos: int  # granted
    no_local: bool
    retain_as_published: bool
    group_key: tuple[str, str] | None  # (share name, filter) of a shared subscription


@dataclass(slots=True)
class _FilterEntry:
    levels: tuple[str, ...]
    subscribers: dict[str, _Subscription] = field(default_factory=dict)


@dataclass(slots=True)
class _SharedGroup:
    key: tuple[str, str]
    levels: tuple[str, ...]
    members: dict[str, _Subscription] = field(default_factory=dict)
    cursor: int = 0

    def pick(self, sessions: dict[str, _Session]) -> str | None:
        """Round robin over connected members; over the offline ones if none is connected."""
        member_ids = list(self.members)
        if not member_ids:
            return None
        count = len(member_ids)
        for step in range(count):
            candidate = member_ids[(self.cursor + step) % count]
            if sessions[candidate].connection is not None:
                self.cursor = (self.cursor + step + 1) % count
                return candidate
        candidate = member_ids[self.cursor % count]
        self.cursor = (self.cursor + 1) % count
        return candidate


@dataclass(slots=True)
class _Session:
    """5.0 §4.1 Session State, server side: subscriptions, queued and in-flight messages."""

    client_id: str
    protocol_level: int = MQTT_5
    expiry_s: int = 0
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    pending: deque[_Delivery] = field(default_factory=deque)
    inflight: dict[int, _Delivery] = field(default_factory=dict)  # sent, not acknowledged
    awaiting_pubrel: set[int] = field(default_factory=set)  # QoS 2 from the client
    next_packet_id: int = 1
    connection: _BrokerProtocol | None = None
    expiry_call: IDelayedCall | None = None
    pending_will: Will | None = None
    will_call: IDelayedCall | None = None
    dropped: int = 0

    def allocate_packet_id(self) -> int:
        packet_id = self.next_packet_id
        while packet_id in self.inflight:
            packet_id = packet_id % 0xFFFF + 1
        self.next_packet_id = packet_id % 0xFFFF + 1
        return packet_id

    def cancel_timers(self) -> None:
        for call in (self.expiry_call, self.will_call):
            if call is not None and call.active():
                call.cancel()
        self.expiry_call = None
        self.will_call = None


# -- the protocol: a thin adapter between a TCP connection and the broker ------------------------


class _BrokerProtocol(Protocol):
    """Feeds bytes to the codec and hands each packet to the broker; owns the connection timers."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.broker = broker
        self.codec = ServerConnection(max_packet_size=broker.max_packet_size)
        self.session: _Session | None = None
        self.client_id = ""
        self.will: Will | None = None
        self.keep_alive_s = 0
        self.send_quota = broker.max_inflight
        self.max_outgoing_size: int | None = None
        self.accepted = False
        self.closing = False
        self.peer = "?"
        self.last_packet_at = 0.0
        self._timer: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._lost_waiters: list[defer.Deferred[None]] = []
        self._lost = False

    @property
    def protocol_level(self) -> int:
        return self.codec.protocol_level or MQTT_3_1_1

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        assert self.transport is not None
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"
        self.last_packet_at = self.broker.clock.seconds()
        self.broker._connections.add(self)
        self._timer = self.broker.clock.callLater(
            self.broker.connect_timeout_s, self._on_connect_timeout
        )

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self.closing:
            return
        self.codec.receive_data(data)
        try:
            while not self.closing:
                packet = self.codec.next_event()
                if isinstance(packet, NeedData):
                    break
                self.last_packet_at = self.broker.clock.seconds()
                self.broker._on_packet(self, packet)
        except MqttError as exc:
            self.broker._on_bad_input(self, exc)
        except Exception:
            self.broker.internal_errors += 1
            log.failure(
                "Embedded MQTT broker: internal error on a packet from {client_id} at {peer}",
                client_id=self.client_id,
                peer=self.peer,
            )
            self.broker._close(self, publish_will=True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._cancel_timers()
        self.broker._connections.discard(self)
        if not self.closing:
            self.closing = True
            self.broker._end_connection(self, publish_will=True, reason=reason.getErrorMessage())
        self._lost = True
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_lost(self) -> defer.Deferred[None]:
        if self._lost:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    # -- sending --------------------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        if self.closing or self.transport is None:
            return
        self.transport.write(self.codec.send(packet))

    def write(self, data: bytes) -> None:
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def can_send_disconnect(self) -> bool:
        """5.0 §4.13: a DISCONNECT only after an accepting CONNACK, and only in MQTT 5.0."""
        return (
            self.accepted
            and not self.closing
            and self.protocol_level == MQTT_5
            and self.codec.state in (State.CONNECTED, State.ERROR)
        )

    def close(self) -> None:
        """Flush what was written, close; abort if the peer does not let us within the grace."""
        if self.closing:
            return
        self.closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.transport is not None:
            self.transport.loseConnection()
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                self._abort_call = self.broker.clock.callLater(CLOSE_GRACE_S, abort)

    # -- timers ---------------------------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for call in (self._timer, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = None
        self._abort_call = None

    def _on_connect_timeout(self) -> None:
        self._timer = None
        if self.closing or self.accepted:
            return
        log.info(
            "Embedded MQTT broker: no CONNECT from {peer} within {timeout_s}s; closing",
            peer=self.peer,
            timeout_s=self.broker.connect_timeout_s,
        )
        self.broker._close(self, publish_will=False)

    def start_keep_alive(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.keep_alive_s:
            self._timer = self.broker.clock.callLater(1.5 * self.keep_alive_s, self._on_keep_alive)

    def _on_keep_alive(self) -> None:
        """5.0 §3.1.2.10: silent for 1.5 times Keep Alive: disconnect "as if the network had failed"."""
        self._timer = None
        if self.closing:
            return
        limit_s = 1.5 * self.keep_alive_s
        idle_s = self.broker.clock.seconds() - self.last_packet_at
        if idle_s < limit_s:
            self._timer = self.broker.clock.callLater(limit_s - idle_s, self._on_keep_alive)
            return
        log.info(
            "Embedded MQTT broker: {client_id} at {peer} silent for {idle_s:.1f}s "
            "(keep alive {keep_alive_s}s); closing",
            client_id=self.client_id,
            peer=self.peer,
            idle_s=idle_s,
            keep_alive_s=self.keep_alive_s,
        )
        if self.can_send_disconnect():
            self.send(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))
        self.broker._close(self, publish_will=True)


class _BrokerFactory(Factory):
    noisy = False  # the broker logs its own listening and connections

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.broker = broker

    def buildProtocol(self, addr: IAddress | None) -> _BrokerProtocol:  # noqa: N802
        return _BrokerProtocol(self.broker)


# -- the broker ----------------------------------------------------------------------------------


class EmbeddedBroker(Service):
    """An MQTT 3.1.1 + 5.0 broker listening on ``host:port`` (see the module docstring).

    ``reactor`` provides IReactorTCP and IReactorTime. After :meth:`startService`, :attr:`port`
    is the port actually bound (``port=0`` picks a free one). :meth:`stopService` returns a
    Deferred that fires once the listener and every client connection are closed.
    """

    def __init__(
        self,
        reactor: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        if not 1 <= max_inflight <= MAX_RECEIVE_MAXIMUM:
            raise ValueError(f"max_inflight must be in 1..{MAX_RECEIVE_MAXIMUM}")
        if max_queued_messages < 0:
            raise ValueError("max_queued_messages must be >= 0")
        ServerConnection(max_packet_size=max_packet_size)  # checks the value
        self.reactor = reactor
        self.clock = reactor
        self.host = host
        self.requested_port = port
        self.port = 0
        self.max_packet_size = max_packet_size
        self.max_inflight = max_inflight
        self.max_queued_messages = max_queued_messages
        self.connect_timeout_s = connect_timeout_s
        self.malformed_packets = 0
        self.dropped_messages = 0
        self.internal_errors = 0
        self._listener: Any = None
        self._connections: set[_BrokerProtocol] = set()
        self._sessions: dict[str, _Session] = {}
        self._filters: dict[str, _FilterEntry] = {}
        self._groups: dict[tuple[str, str], _SharedGroup] = {}
        self._retained: dict[str, _Message] = {}
        self._client_numbers = itertools.count(1)

    # -- service --------------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        self._listener = self.reactor.listenTCP(
            self.requested_port, _BrokerFactory(self), interface=self.host
        )
        self.port = int(self._listener.getHost().port)
        Service.startService(self)
        log.info("Embedded MQTT broker listening on {host}:{port}", host=self.host, port=self.port)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 - Twisted's name
        Service.stopService(self)
        waits: list[defer.Deferred[Any]] = []
        listener, self._listener = self._listener, None
        if listener is not None:
            waits.append(defer.maybeDeferred(listener.stopListening))
        for connection in list(self._connections):
            if connection.can_send_disconnect():
                connection.send(Disconnect(ReasonCode.SERVER_SHUTTING_DOWN))
            self._close(connection, publish_will=False)
            waits.append(connection.when_lost())
        for session in self._sessions.values():
            session.cancel_timers()
            session.pending_will = None
        self._sessions.clear()
        self._filters.clear()
        self._groups.clear()
        self._retained.clear()
        done = defer.gatherResults(waits, consumeErrors=True)
        done.addCallback(lambda _: log.info("Embedded MQTT broker stopped"))
        return done.addCallback(lambda _: None)

    # -- introspection (tests, the demo's status) -----------------------------------------------

    @property
    def connected_clients(self) -> list[str]:
        return sorted(s.client_id for s in self._sessions.values() if s.connection is not None)

    def session_exists(self, client_id: str) -> bool:
        return client_id in self._sessions

    def queued_messages(self, client_id: str) -> int:
        session = self._sessions.get(client_id)
        return 0 if session is None else len(session.pending) + len(session.inflight)

    @property
    def retained_topics(self) -> list[str]:
        return sorted(self._retained)

    # -- connection events ----------------------------------------------------------------------

    def _on_packet(self, connection: _BrokerProtocol, packet: Packet) -> None:
        if isinstance(packet, Connect):
            self._on_connect(connection, packet)
        elif isinstance(packet, Publish):
            self._on_publish(connection, packet)
        elif isinstance(packet, PubAck):
            self._on_puback(connection, packet)
        elif isinstance(packet, PubRel):
            self._on_pubrel(connection, packet)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(connection, packet)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(connection, packet)
        elif isinstance(packet, PingReq):
            connection.send(PingResp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(connection, packet)
        elif isinstance(packet, PubRec | PubComp):
            # we never send QoS 2, so nothing can be acknowledged with these
            self._protocol_error(
                connection, ReasonCode.PROTOCOL_ERROR, f"unexpected {packet.packet_type.name}"
            )
        elif isinstance(packet, Auth):
            self._protocol_error(
                connection,
                ReasonCode.PROTOCOL_ERROR,
                "AUTH without an Authentication Method in CONNECT (5.0 §4.12)",
            )
        else:  # server-to-client packets never get here: the codec refuses them
            self._protocol_error(
                connection, ReasonCode.PROTOCOL_ERROR, f"unexpected {type(packet).__name__}"
            )

    def _on_bad_input(self, connection: _BrokerProtocol, error: MqttError) -> None:
        """Malformed bytes or a protocol error from the codec: count, log, refuse, close."""
        self.malformed_packets += 1
        log.warn(
            "Embedded MQTT broker: bad input from {client_id} at {peer}: {error}; closing",
            client_id=connection.client_id or "(no CONNECT yet)",
            peer=connection.peer,
            error=str(error),
        )
        if isinstance(error, UnsupportedProtocolVersion) and not connection.accepted:
            # 3.1.1 §3.1.2.2 [MQTT-3.1.2-2]: CONNACK 0x01 in the 3.1.1 layout; 5.0: 0x84
            if error.protocol_level == MQTT_5:
                refusal = encode(ConnAck(False, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION), MQTT_5)
            else:
                refusal = encode(
                    ConnAck(False, ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION), MQTT_3_1_1
                )
            connection.write(refusal)
        elif connection.can_send_disconnect():
            connection.send(self._disconnect_packet(connection, error.reason_code, str(error)))
        self._close(connection, publish_will=True)

    def _protocol_error(self, connection: _BrokerProtocol, reason_code: int, problem: str) -> None:
        """A well-formed packet the broker refuses: 5.0 DISCONNECT with the reason, then close."""
        self.malformed_packets += 1
        log.warn(
            "Embedded MQTT broker: protocol error from {client_id} at {peer}: {error}; closing",
            client_id=connection.client_id,
            peer=connection.peer,
            error=problem,
        )
        if connection.can_send_disconnect():
            connection.send(self._disconnect_packet(connection, reason_code, problem))
        self._close(connection, publish_will=True)

    @staticmethod
    def _disconnect_packet(connection: _BrokerProtocol, reason_code: int, text: str) -> Disconnect:
        limit = connection.max_outgoing_size
        if limit is not None and limit < 2 * MAX_REASON_STRING:
            return Disconnect(reason_code)  # a reason string must not make it too large
        return Disconnect(reason_code, Properties(reason_string=text[:MAX_REASON_STRING]))

    def _close(self, connection: _BrokerProtocol, publish_will: bool) -> None:
        """Close a connection and detach its session now (not when TCP is finally down)."""
        if connection.closing:
            return
        connection.close()
        self._end_connection(connection, publish_will=publish_will, reason="closed by the broker")

    def _end_connection(self, connection: _BrokerProtocol, publish_will: bool, reason: str) -> None:
        """The session's side of a connection ending: will, then expiry or the end of it."""
        session, will = connection.session, connection.will
        connection.session = None
        connection.will = None
        if session is None or session.connection is not connection:
            return
        session.connection = None
        log.info(
            "Embedded MQTT broker: {client_id} at {peer} disconnected ({reason})",
            client_id=session.client_id,
            peer=connection.peer,
            reason=reason,
        )
        if publish_will and will is not None:
            delay_s = will.properties.will_delay_interval or 0
            if delay_s == 0 or session.expiry_s == 0:
                self._publish_will(will, session.client_id)
            else:  # 5.0 §3.1.3.2.2: on the earlier of the delay and the end of the session
                session.pending_will = will
                session.will_call = self.clock.callLater(delay_s, self._on_will_delay, session)
        if session.expiry_s == 0:
            self._end_session(session)
        elif session.expiry_s != NEVER_EXPIRES:
            session.expiry_call = self.clock.callLater(
                session.expiry_s, self._on_session_expired, session
            )

    def _on_will_delay(self, session: _Session) -> None:
        session.will_call = None
        will, session.pending_will = session.pending_will, None
        if will is not None:
            self._publish_will(will, session.client_id)

    def _on_session_expired(self, session: _Session) -> None:
        session.expiry_call = None
        if session.connection is None:
            log.info(
                "Embedded MQTT broker: session {client_id} expired", client_id=session.client_id
            )
            self._end_session(session)

    def _end_session(self, session: _Session) -> None:
        """Forget a session; its pending will goes out, its shared-group messages go elsewhere."""
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        session.cancel_timers()
        for topic_filter in list(session.subscriptions):
            self._remove_subscription(session, topic_filter)
        leftovers = [d for d in (*session.inflight.values(), *session.pending) if d.group]
        session.inflight.clear()
        session.pending.clear()
        session.awaiting_pubrel.clear()
        will, session.pending_will = session.pending_will, None
        if will is not None:  # routed once the session is gone from every subscription
            self._publish_will(will, session.client_id)
        for delivery in leftovers:
            assert delivery.group is not None
            if self._groups.get(delivery.group.key) is delivery.group:
                self._deliver_shared(delivery.group, delivery.message)

    # -- CONNECT --------------------------------------------------------------------------------

    def _on_connect(self, connection: _BrokerProtocol, connect: Connect) -> None:
        level = connect.protocol_level
        properties = connect.properties
        if properties.authentication_method is not None:
            self._refuse(connection, ReasonCode.BAD_AUTHENTICATION_METHOD, "no enhanced auth")
            return
        client_id = connect.client_id
        assigned = None
        if not client_id:
            if level == MQTT_3_1_1 and not connect.clean_start:
                # 3.1.1 §3.1.3.1 [MQTT-3.1.3-8]: a zero-byte ClientId needs CleanSession 1
                self._refuse(
                    connection, ConnectReturnCode.IDENTIFIER_REJECTED, "empty id, CleanSession 0"
                )
                return
            client_id = assigned = self._new_client_id()
        existing = self._sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            self._take_over(existing.connection, connection)
            existing = self._sessions.get(client_id)  # gone if it ended with that connection
        if existing is not None and connect.clean_start:
            self._end_session(existing)
            existing = None
        if existing is None:
            session = _Session(client_id)
            self._sessions[client_id] = session
            session_present = False
        else:
            session = existing
            session.cancel_timers()
            session.pending_will = None  # 5.0 §3.1.3.2.2: a reconnect within the delay cancels it
            session_present = True
        session.protocol_level = level
        if level == MQTT_5:
            session.expiry_s = properties.session_expiry_interval or 0
        else:
            session.expiry_s = 0 if connect.clean_start else NEVER_EXPIRES
        session.connection = connection
        connection.session = session
        connection.client_id = client_id
        connection.will = connect.will
        connection.keep_alive_s = connect.keep_alive_s
        connection.accepted = True
        if level == MQTT_5:
            receive_maximum = properties.receive_maximum or MAX_RECEIVE_MAXIMUM
            connection.send_quota = min(receive_maximum, self.max_inflight)
            connection.max_outgoing_size = properties.maximum_packet_size
            connack_properties = Properties(
                assigned_client_identifier=assigned,
                maximum_packet_size=self.max_packet_size,
                wildcard_subscription_available=1,
                subscription_identifier_available=0,
                shared_subscription_available=1,
            )
        else:
            connection.send_quota = self.max_inflight
            connack_properties = NO_PROPERTIES
        connection.send(ConnAck(session_present, ReasonCode.SUCCESS, connack_properties))
        connection.start_keep_alive()
        log.info(
            "Embedded MQTT broker: {client_id} connected from {peer} "
            "(MQTT {version}, session present: {session_present})",
            client_id=client_id,
            peer=connection.peer,
            version="5.0" if level == MQTT_5 else "3.1.1",
            session_present=session_present,
        )
        # 5.0 §4.4 [MQTT-4.4.0-1]: resend unacknowledged PUBLISH, original ids, DUP set
        for delivery in list(session.inflight.values()):
            if not self._send_publish(connection, delivery, dup=True):
                del session.inflight[delivery.packet_id]  # too large for this client now
        self._pump(session)

    def _refuse(self, connection: _BrokerProtocol, reason_code: int, problem: str) -> None:
        log.warn(
            "Embedded MQTT broker: refused CONNECT from {peer}: {error}",
            peer=connection.peer,
            error=problem,
        )
        connection.send(ConnAck(False, reason_code))
        self._close(connection, publish_will=False)

    def _take_over(self, old: _BrokerProtocol, new: _BrokerProtocol) -> None:
        """5.0 §3.1.4 [MQTT-3.1.4-3]: DISCONNECT 0x8E to the existing client, then close it."""
        log.info(
            "Embedded MQTT broker: {client_id} at {peer} taken over by {new_peer}",
            client_id=old.client_id,
            peer=old.peer,
            new_peer=new.peer,
        )
        if old.can_send_disconnect():
            old.send(Disconnect(ReasonCode.SESSION_TAKEN_OVER))
        self._close(old, publish_will=True)

    def _new_client_id(self) -> str:
        while True:
            candidate = f"amr-broker-{next(self._client_numbers)}"
            if candidate not in self._sessions:
                return candidate

    def _on_disconnect(self, connection: _BrokerProtocol, disconnect: Disconnect) -> None:
        session = connection.session
        assert session is not None
        new_expiry = disconnect.properties.session_expiry_interval
        if new_expiry is not None:  # the codec refused a non-zero one after 0 [MQTT-3.14.2-2]
            session.expiry_s = new_expiry
        with_will = disconnect.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
        connection.close()
        self._end_connection(
            connection,
            publish_will=with_will,
            reason=f"DISCONNECT 0x{disconnect.reason_code:02X}",
        )

    # -- PUBLISH in -----------------------------------------------------------------------------

    def _on_publish(self, connection: _BrokerProtocol, publish: Publish) -> None:
        session = connection.session
        assert session is not None
        properties = publish.properties
        if properties.topic_alias is not None:
            self._protocol_error(
                connection, ReasonCode.TOPIC_ALIAS_INVALID, "topic aliases are not supported"
            )
            return
        if properties.subscription_identifiers:
            self._protocol_error(
                connection, ReasonCode.PROTOCOL_ERROR, "a client sent a Subscription Identifier"
            )
            return
        expiry_s = properties.message_expiry_interval
        message = _Message(
            topic=publish.topic,
            payload=publish.payload,
            qos=publish.qos,
            retain=publish.retain,
            properties=_forwarded(properties),
            expires_at=None if expiry_s is None else self.clock.seconds() + expiry_s,
            sender=session.client_id,
        )
        packet_id = publish.packet_id
        if publish.qos == 2:
            assert packet_id is not None
            # 5.0 §4.3.3: until PUBREL, a PUBLISH with this id is the same message: route once
            if packet_id not in session.awaiting_pubrel:
                session.awaiting_pubrel.add(packet_id)
                self._route(message)
            connection.send(PubRec(packet_id))
            return
        self._route(message)
        if publish.qos == 1:
            assert packet_id is not None
            connection.send(PubAck(packet_id))

    def _on_pubrel(self, connection: _BrokerProtocol, pubrel: PubRel) -> None:
        session = connection.session
        assert session is not None
        if pubrel.packet_id in session.awaiting_pubrel:
            session.awaiting_pubrel.discard(pubrel.packet_id)
            connection.send(PubComp(pubrel.packet_id))
        elif connection.protocol_level == MQTT_5:
            connection.send(PubComp(pubrel.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))
        else:
            connection.send(PubComp(pubrel.packet_id))

    def _publish_will(self, will: Will, client_id: str) -> None:
        expiry_s = will.properties.message_expiry_interval
        log.info(
            "Embedded MQTT broker: publishing the will of {client_id} on {topic}",
            client_id=client_id,
            topic=will.topic,
        )
        self._route(
            _Message(
                topic=will.topic,
                payload=will.payload,
                qos=will.qos,
                retain=will.retain,
                properties=_forwarded(will.properties),
                expires_at=None if expiry_s is None else self.clock.seconds() + expiry_s,
                sender=client_id,
            )
        )

    # -- routing --------------------------------------------------------------------------------

    def _route(self, message: _Message) -> None:
        if message.retain:
            # 5.0 §3.3.1.3: a retained message replaces the topic's; a zero-byte one deletes it
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        topic_levels = split_levels(message.topic)
        targets: dict[str, tuple[int, bool]] = {}
        for entry in self._filters.values():
            if not filter_matches(entry.levels, topic_levels):
                continue
            for client_id, subscription in entry.subscribers.items():
                if subscription.no_local and client_id == message.sender:
                    continue
                qos = min(message.qos, subscription.qos)
                retain = message.retain and subscription.retain_as_published
                previous = targets.get(client_id)
                if previous is not None:  # overlapping subscriptions: one copy, the highest QoS
                    qos = max(qos, previous[0])
                    retain = retain or previous[1]
                targets[client_id] = (qos, retain)
        for client_id, (qos, retain) in targets.items():
            self._deliver(self._sessions[client_id], _Delivery(message, qos, retain))
        for group in list(self._groups.values()):
            if filter_matches(group.levels, topic_levels):
                self._deliver_shared(group, message)

    def _deliver_shared(self, group: _SharedGroup, message: _Message) -> None:
        member = group.pick(self._sessions)
        if member is None:
            return
        subscription = group.members[member]
        retain = message.retain and subscription.retain_as_published
        delivery = _Delivery(message, min(message.qos, subscription.qos), retain, group)
        self._deliver(self._sessions[member], delivery)

    def _deliver(self, session: _Session, delivery: _Delivery) -> None:
        if delivery.qos == 0:
            connection = session.connection
            if connection is not None and not _expired(delivery.message, self.clock.seconds()):
                self._send_publish(connection, delivery, dup=False)
            return  # QoS 0 is not queued for an offline session
        if len(session.pending) >= self.max_queued_messages:
            session.dropped += 1
            self.dropped_messages += 1
            if session.dropped == 1 or session.dropped % 10_000 == 0:
                log.warn(
                    "Embedded MQTT broker: queue of {client_id} full ({limit} messages); "
                    "{count} dropped so far",
                    client_id=session.client_id,
                    limit=self.max_queued_messages,
                    count=session.dropped,
                )
            return
        session.pending.append(delivery)
        self._pump(session)

    def _pump(self, session: _Session) -> None:
        """Send queued QoS 1 messages while the client's in-flight window has room."""
        connection = session.connection
        if connection is None or connection.closing:
            return
        now = self.clock.seconds()
        while session.pending and len(session.inflight) < connection.send_quota:
            delivery = session.pending.popleft()
            if _expired(delivery.message, now):
                continue  # 5.0 §3.3.2.3.3: not yet on its way, so it is deleted
            delivery.packet_id = session.allocate_packet_id()
            if self._send_publish(connection, delivery, dup=False):
                session.inflight[delivery.packet_id] = delivery

    def _send_publish(self, connection: _BrokerProtocol, delivery: _Delivery, dup: bool) -> bool:
        """Write one PUBLISH; False if it exceeds the client's Maximum Packet Size (dropped)."""
        message = delivery.message
        properties = NO_PROPERTIES
        if connection.protocol_level == MQTT_5:
            properties = message.properties
            if message.expires_at is not None:
                remaining_s = max(0, math.ceil(message.expires_at - self.clock.seconds()))
                properties = dataclasses.replace(properties, message_expiry_interval=remaining_s)
        packet = Publish(
            topic=message.topic,
            payload=message.payload,
            qos=delivery.qos,
            retain=delivery.retain,
            dup=dup and delivery.qos > 0,
            packet_id=delivery.packet_id if delivery.qos else None,
            properties=properties,
        )
        data = connection.codec.send(packet)  # a PUBLISH leaves the state as it is
        limit = connection.max_outgoing_size
        if limit is not None and len(data) > limit:
            log.warn(
                "Embedded MQTT broker: message on {topic} ({size} bytes) exceeds the maximum "
                "packet size of {client_id} ({limit}); not sent to it",
                topic=message.topic,
                size=len(data),
                client_id=connection.client_id,
                limit=limit,
            )
            return False
        connection.write(data)
        return True

    def _on_puback(self, connection: _BrokerProtocol, puback: PubAck) -> None:
        session = connection.session
        assert session is not None
        if session.inflight.pop(puback.packet_id, None) is not None:
            self._pump(session)

    # -- SUBSCRIBE, UNSUBSCRIBE -----------------------------------------------------------------

    def _on_subscribe(self, connection: _BrokerProtocol, subscribe: Subscribe) -> None:
        session = connection.session
        assert session is not None
        v5 = connection.protocol_level == MQTT_5
        if subscribe.properties.subscription_identifiers:
            self._protocol_error(
                connection,
                ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers are not supported",
            )
            return
        codes: list[int] = []
        retained_for: list[tuple[tuple[str, ...], int]] = []
        for item in subscribe.subscriptions:
            problem = topic_filter_problem(item.topic_filter)
            if problem is not None:
                log.info(
                    "Embedded MQTT broker: {client_id} subscribed to an invalid filter: {error}",
                    client_id=session.client_id,
                    error=problem,
                )
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            shared = parse_shared(item.topic_filter)
            if shared is not None and item.no_local:
                # 5.0 §3.8.3.1 [MQTT-3.8.3-4]
                self._protocol_error(
                    connection, ReasonCode.PROTOCOL_ERROR, "No Local on a shared subscription"
                )
                return
            granted = min(item.qos, 1)  # QoS 2 subscriptions are granted QoS 1
            existed = self._add_subscription(session, item, granted)
            codes.append(granted)
            if shared is None and (
                item.retain_handling == 0 or (item.retain_handling == 1 and not existed)
            ):
                retained_for.append((split_levels(item.topic_filter), granted))
        connection.send(SubAck(subscribe.packet_id, tuple(codes)))
        now = self.clock.seconds()
        for levels, granted in retained_for:
            for topic, message in list(self._retained.items()):
                if not filter_matches(levels, split_levels(topic)):
                    continue
                if _expired(message, now):
                    del self._retained[topic]
                    continue
                # 3.1.1 §3.3.1.3 [MQTT-3.3.1-8]: RETAIN set on messages sent for a new subscription
                self._deliver(session, _Delivery(message, min(message.qos, granted), True))

    def _add_subscription(self, session: _Session, item: Subscription, granted: int) -> bool:
        """Add or replace a subscription; whether it existed before."""
        existed = self._remove_subscription(session, item.topic_filter)
        shared = parse_shared(item.topic_filter)
        inner = item.topic_filter if shared is None else shared.topic_filter
        key = None if shared is None else (shared.share_name, shared.topic_filter)
        subscription = _Subscription(
            topic_filter=item.topic_filter,
            levels=split_levels(inner),
            qos=granted,
            no_local=item.no_local,
            retain_as_published=item.retain_as_published,
            group_key=key,
        )
        session.subscriptions[item.topic_filter] = subscription
        if key is None:
            entry = self._filters.get(item.topic_filter)
            if entry is None:
                entry = self._filters[item.topic_filter] = _FilterEntry(subscription.levels)
            entry.subscribers[session.client_id] = subscription
        else:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _SharedGroup(key, subscription.levels)
            group.members[session.client_id] = subscription
        return existed

    def _remove_subscription(self, session: _Session, topic_filter: str) -> bool:
        subscription = session.subscriptions.pop(topic_filter, None)
        if subscription is None:
            return False
        if subscription.group_key is None:
            entry = self._filters.get(topic_filter)
            if entry is not None:
                entry.subscribers.pop(session.client_id, None)
                if not entry.subscribers:
                    del self._filters[topic_filter]
        else:
            group = self._groups.get(subscription.group_key)
            if group is not None:
                group.members.pop(session.client_id, None)
                if not group.members:
                    del self._groups[subscription.group_key]
        return True

    def _on_unsubscribe(self, connection: _BrokerProtocol, unsubscribe: Unsubscribe) -> None:
        session = connection.session
        assert session is not None
        codes = []
        for topic_filter in unsubscribe.topic_filters:
            if topic_filter_problem(topic_filter) is not None:
                codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            elif self._remove_subscription(session, topic_filter):
                codes.append(ReasonCode.SUCCESS)
            else:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
        if connection.protocol_level == MQTT_5:
            connection.send(UnsubAck(unsubscribe.packet_id, tuple(codes)))
        else:
            connection.send(UnsubAck(unsubscribe.packet_id))


def _forwarded(properties: Properties) -> Properties:
    """The PUBLISH (or Will) properties a server passes on to subscribers (5.0 §3.3.2.3)."""
    if not properties:
        return NO_PROPERTIES
    return Properties(
        payload_format_indicator=properties.payload_format_indicator,
        content_type=properties.content_type,
        response_topic=properties.response_topic,
        correlation_data=properties.correlation_data,
        user_properties=properties.user_properties,
    )


def _expired(message: _Message, now: float) -> bool:
    return message.expires_at is not None and now >= message.expires_at
