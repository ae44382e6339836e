"""The shipped broker configuration (deploy/mosquitto/) keeps each gateway to its own topics.

A real Mosquitto runs ``deploy/mosquitto/mosquitto.conf`` and ``deploy/mosquitto/acl`` as
shipped (paths moved into a scratch folder, the listener on a loopback port: see
tests/support/mosquitto_tls.py), with certificates made by the real ``amr pki``. MQTT v5 clients
(paho) then play two gateways and a head-end over TLS.

Mosquitto 2.0 grants a subscription that the ACL does not allow and filters at delivery, and
answers a refused QoS 1 publish with PUBACK "Not authorized"; the tests accept a refusal in the
SUBACK too, and check what a user would notice: nothing reaches the wrong client. "Nothing
arrives" is shown by a marker message sent after the forbidden ones on a path that is allowed:
the broker keeps each client's order, so once the marker is there, whatever came before it has
been delivered or dropped.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from headend.pki import CertificateAuthority, CertKind
from protocols.link import Topic, gateway_topic, shared_subscription
from tests.support.mosquitto_tls import TlsMosquitto, install_broker_files, render_config

pytestmark = pytest.mark.integration

AMR = Path(sys.executable).with_name("amr")
SERVER = "127.0.0.1"
TIMEOUT_S = 5.0
UPLINK = [topic for topic in Topic if topic.uplink]
DOWNLINK = [topic for topic in Topic if not topic.uplink]


class Refused(Exception):
    """The broker did not let the client in."""


@dataclass
class Peer:
    """A paho MQTT v5 client on its own network thread, recording what it receives."""

    name: str
    client: mqtt.Client
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    done: dict[int, threading.Event] = field(default_factory=dict)
    results: dict[int, list[str]] = field(default_factory=dict)

    def _finished(self, mid: int, codes: list[str]) -> None:
        self.results[mid] = codes
        self.done.setdefault(mid, threading.Event()).set()

    def _wait(self, mid: int) -> list[str]:
        event = self.done.setdefault(mid, threading.Event())
        assert event.wait(TIMEOUT_S), f"{self.name}: no answer to message {mid}"
        return self.results[mid]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """Publish with QoS 1; the PUBACK's reason ("Success", "Not authorized", ...)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._wait(info.mid)[0]

    def subscribe(self, *filters: str) -> list[str]:
        """Subscribe with QoS 1; the SUBACK's reason for each filter."""
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        assert mid is not None
        return self._wait(mid)

    def received_until(self, topic: str, marker: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including ``marker`` on ``topic``."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"{self.name} never got {marker!r}; got {seen}") from None
            seen.append(message)
            if message == (topic, marker):
                return seen

    def close(self, clean: bool = True) -> None:
        if clean:
            self.client.disconnect()
        else:  # a gateway losing power: no DISCONNECT, the broker publishes the will
            sock = self.client.socket()
            self.client.loop_stop()
            if sock is not None:
                sock.close()
            return
        self.client.loop_stop()


def connect(
    broker: TlsMosquitto,
    ca_file: Path,
    cert: tuple[Path, Path] | None,
    name: str,
    will: str | None = None,
    tls: bool = True,
) -> Peer:
    """A connected Peer, or ``Refused`` saying why the broker shut the door."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{name}",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    if tls:
        client.tls_set(
            ca_certs=str(ca_file),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
        )
    if will is not None:
        client.will_set(will, b'{"on":false}', qos=1, retain=True)
    peer = Peer(name, client)
    outcome: queue.Queue[str] = queue.Queue()

    def on_connect(c: mqtt.Client, u: object, f: object, code: ReasonCode, p: object) -> None:
        outcome.put(str(code))

    def on_disconnect(c: mqtt.Client, u: object, f: object, code: ReasonCode, p: object) -> None:
        outcome.put(f"disconnected: {code}")

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = lambda c, u, m: peer.messages.put((m.topic, bytes(m.payload)))
    client.on_publish = lambda c, u, mid, code, p: peer._finished(mid, [str(code)])
    client.on_subscribe = lambda c, u, mid, codes, p: peer._finished(mid, [str(x) for x in codes])
    try:
        client.connect("127.0.0.1", broker.port, keepalive=30)
    except OSError as exc:  # the TLS handshake itself failed (TLS 1.2, or a bad server)
        raise Refused(f"{type(exc).__name__}: {exc}") from None
    client.loop_start()
    try:
        result = outcome.get(timeout=TIMEOUT_S)
    except queue.Empty:
        result = "no CONNACK"
    if result != "Success":
        client.loop_stop()
        raise Refused(result)
    return peer


@dataclass
class Site:
    """A CA, a broker running the shipped config, and ways to connect to it."""

    pki: Path
    ca: CertificateAuthority
    broker: TlsMosquitto
    peers: list[Peer] = field(default_factory=list)

    def connect(self, name: str, will: str | None = None) -> Peer:
        cert = (self.ca.cert_path(name), self.ca.key_path(name))
        peer = connect(self.broker, self.ca.ca_cert_path, cert, name, will)
        self.peers.append(peer)
        return peer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("broker-security")
    ca = CertificateAuthority.init(root / "pki")
    ca.issue(CertKind.SERVER, SERVER, alt_names=["localhost"])
    ca.issue(CertKind.HEADEND, "headend-1")
    for gateway in ("gw-a", "gw-b", "gw-revoked"):
        ca.issue(CertKind.GATEWAY, gateway)
    install_broker_files(root / "pki", root / "broker", SERVER)
    broker = TlsMosquitto(root / "broker")
    broker.start()
    site = Site(root / "pki", ca, broker)
    try:
        yield site
    finally:
        for peer in site.peers:
            peer.client.loop_stop()
        broker.stop()


def _headend(site: Site) -> Peer:
    headend = site.connect("headend-1")
    shared = [shared_subscription(topic) for topic in UPLINK if topic is not Topic.STATE]
    plain = [f"amr/v1/gw/+/{topic.value}" for topic in (Topic.STATE, *DOWNLINK)]
    assert headend.subscribe(*shared, *plain) == ["Granted QoS 1"] * (len(shared) + len(plain))
    return headend


def test_a_gateway_reaches_the_headend_on_its_own_topics_and_hears_its_commands(
    site: Site,
) -> None:
    headend = _headend(site)
    gateway = site.connect("gw-a")
    assert gateway.subscribe(*(gateway_topic("gw-a", t) for t in DOWNLINK)) == ["Granted QoS 1"] * 2
    for topic in UPLINK:
        name = gateway_topic("gw-a", topic)
        assert gateway.publish(name, topic.value.encode()) == "Success", name
    received = headend.received_until(gateway_topic("gw-a", UPLINK[-1]), UPLINK[-1].value.encode())
    assert received == [(gateway_topic("gw-a", t), t.value.encode()) for t in UPLINK]
    for topic in DOWNLINK:
        assert headend.publish(gateway_topic("gw-a", topic), b"from the head-end") == "Success"
    assert gateway.received_until(gateway_topic("gw-a", Topic.ACK), b"from the head-end") == [
        (gateway_topic("gw-a", Topic.COMMAND), b"from the head-end"),
        (gateway_topic("gw-a", Topic.ACK), b"from the head-end"),
    ]
    headend.close()
    gateway.close()


@pytest.mark.reliability(
    "security", "a gateway cannot publish into another's topics or forge downlink"
)
def test_a_gateway_cannot_publish_into_another_gateways_topics_or_forge_downlink(
    site: Site,
) -> None:
    headend = _headend(site)
    gateway = site.connect("gw-a")
    forged = [gateway_topic("gw-b", topic) for topic in Topic]
    forged += [gateway_topic("gw-a", topic) for topic in DOWNLINK]  # a command to itself, an ack
    forged += ["amr/v1/gw/gw-b", "amr/v1/other", "$share/headend/amr/v1/gw/gw-b/readings"]
    for topic in forged:
        assert gateway.publish(topic, b"forged") == "Not authorized", topic
    marker = gateway_topic("gw-a", Topic.HEALTH)
    assert gateway.publish(marker, b"marker") == "Success"
    assert headend.received_until(marker, b"marker") == [(marker, b"marker")]
    headend.close()
    gateway.close()


@pytest.mark.reliability(
    "security", "a gateway certificate cannot subscribe to another gateway's topics"
)
def test_a_gateway_cannot_read_another_gateways_topics(site: Site) -> None:
    headend = _headend(site)
    spy = site.connect("gw-a")
    victim = site.connect("gw-b")
    assert victim.subscribe(gateway_topic("gw-b", Topic.COMMAND)) == ["Granted QoS 1"]
    filters = [gateway_topic("gw-b", topic) for topic in Topic]
    filters += [
        "amr/v1/gw/gw-b/#",
        "amr/v1/gw/+/cmd",
        "amr/v1/#",
        "#",
        "$share/spy/amr/v1/gw/+/cmd",
    ]
    for code in spy.subscribe(*filters):  # refused in the SUBACK, or granted and filtered
        assert code in ("Granted QoS 1", "Not authorized"), code
    for topic in DOWNLINK:
        assert headend.publish(gateway_topic("gw-b", topic), b"for gw-b only") == "Success"
    assert victim.publish(gateway_topic("gw-b", Topic.READINGS), b"gw-b readings") == "Success"
    # gw-b got its command, so the broker had it to give
    assert victim.received_until(gateway_topic("gw-b", Topic.COMMAND), b"for gw-b only")
    headend.received_until(gateway_topic("gw-b", Topic.READINGS), b"gw-b readings")
    marker = gateway_topic("gw-a", Topic.COMMAND)
    assert headend.publish(marker, b"marker") == "Success"
    seen = spy.received_until(marker, b"marker")
    assert {topic for topic, _ in seen} == {marker}, seen
    for peer in (headend, spy, victim):
        peer.close()


@pytest.mark.reliability(
    "security", "a last will aimed at another gateway's state is not published"
)
def test_a_last_will_into_another_gateways_state_is_not_published(site: Site) -> None:
    headend = _headend(site)
    liar = site.connect("gw-a", will=gateway_topic("gw-b", Topic.STATE))
    honest = site.connect("gw-b", will=gateway_topic("gw-b", Topic.STATE))
    liar.close(clean=False)
    # the broker publishes a will when it sees the connection go: gw-a's first, then gw-b's
    site.broker.wait_for_log("Client test-gw-a closed its connection.")
    honest.close(clean=False)
    # gw-b's own will arrives; gw-a's forged will for gw-b did not, before it
    state = gateway_topic("gw-b", Topic.STATE)
    assert headend.received_until(state, b'{"on":false}') == [(state, b'{"on":false}')]
    marker = gateway_topic("gw-b", Topic.COMMAND)
    assert headend.publish(marker, b"marker") == "Success"
    assert headend.received_until(marker, b"marker") == [(marker, b"marker")]
    headend.close()


@pytest.mark.reliability(
    "security", "clients without a certificate of this CA are refused by the broker"
)
def test_only_clients_with_a_certificate_of_this_ca_get_in(site: Site, tmp_path: Path) -> None:
    ca_file = site.ca.ca_cert_path
    with pytest.raises(Refused):
        connect(site.broker, ca_file, None, "no-certificate")
    with pytest.raises(Refused):
        connect(site.broker, ca_file, None, "plain-mqtt", tls=False)
    other = CertificateAuthority.init(tmp_path / "other-ca")
    other.issue(CertKind.GATEWAY, "gw-a")  # the right name, from the wrong CA
    with pytest.raises(Refused):
        connect(site.broker, ca_file, (other.cert_path("gw-a"), other.key_path("gw-a")), "x")
    server = (site.ca.cert_path(SERVER), site.ca.key_path(SERVER))  # serverAuth only
    with pytest.raises(Refused):
        connect(site.broker, ca_file, server, "server-as-client")
    site.connect("gw-a").close()  # the door itself works


@pytest.mark.reliability("security", "a revoked gateway certificate is shut out (CRL)")
def test_a_revoked_gateway_is_shut_out_after_a_reload_and_cut_off_by_a_restart(
    site: Site,
) -> None:
    connected = site.connect("gw-revoked")
    revoke = subprocess.run(
        [str(AMR), "pki", "revoke", "--dir", str(site.pki), "gw-revoked"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    shutil.copyfile(site.pki / "crl.pem", site.broker.root / "etc" / "crl.pem")
    site.broker.reload()
    with pytest.raises(Refused):
        site.connect("gw-revoked")
    site.connect("gw-b").close()  # the others still get in
    # a reload does not cut a connection that is already open: a restart does, for good
    assert connected.publish(gateway_topic("gw-revoked", Topic.HEALTH), b"still here") in (
        "Success",
        "No matching subscribers",
    )
    site.broker.stop()
    site.broker.start()
    with pytest.raises(Refused):
        site.connect("gw-revoked")
    site.connect("gw-b").close()


def test_the_shipped_config_is_refused_by_the_renderer_when_it_drifts(tmp_path: Path) -> None:
    shipped = (Path(__file__).resolve().parents[2] / "deploy/mosquitto/mosquitto.conf").read_text()
    rendered = render_config(shipped, tmp_path, 18883)
    assert "\nlistener 18883 127.0.0.1\n" in rendered
    assert "require_certificate true" in rendered
    assert "use_identity_as_username true" in rendered
    with pytest.raises(ValueError, match="listener 8883"):
        render_config(shipped.replace("listener 8883", "listener 1883"), tmp_path, 18883)
    with pytest.raises(ValueError, match="cannot move"):
        render_config(shipped + "\ncafile /srv/ca.pem\n", tmp_path, 18883)
