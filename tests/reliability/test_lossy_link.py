"""A link that drops packets: the gateway behind a lossy, then dead, GPRS-like connection.

The gateway runs in a network namespace of its own. Inside it, its broker and meter addresses
are 127.0.0.1 ports that socat bridges, through Unix sockets, to the real broker and simulator
outside; an iptables rule in the namespace drops a share of the TCP packets to and from the
broker port (both directions), at the IP layer, as a bad radio link does. The meters' link is
left clean. First 25 % of the packets are dropped for 20 s, then every packet for 15 s (longer
than the MQTT keepalive: the link is dead and the gateway reconnects), then none. A token is
sold while the link is lossy. Every published reading must be stored once, and the token
applied once.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.system import GW, FaultSystem, build
from tests.support.debian import ensure_commands
from tests.support.gateway import wait_for

pytestmark = pytest.mark.integration

VEND_MINOR = 500  # 5 kWh at the flat tariff


@dataclass
class Namespace:
    """A network namespace with its own loopback, and TCP ports bridged out to the host's."""

    name: str
    folder: Path
    bridges: list[subprocess.Popen[bytes]] = field(default_factory=list)
    broker_port: int = 0

    def create(self) -> None:
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"cannot make a network namespace here (needs root): {made.stderr}")
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *command: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *command], check=True,
                       capture_output=True)  # fmt: skip

    def bridge(self, ports: list[int]) -> list[str]:
        """Make each host port reachable at the same 127.0.0.1 port inside; the prefix to run in."""
        for port in ports:
            socket = self.folder / f"port-{port}.sock"
            self.bridges.append(subprocess.Popen(
                ["socat", f"UNIX-LISTEN:{socket},fork", f"TCP:127.0.0.1:{port}"],
                stderr=subprocess.DEVNULL))  # fmt: skip
            wait_for(socket.exists, 10, f"the bridge for port {port}")
            self.bridges.append(subprocess.Popen(
                ["ip", "netns", "exec", self.name, "socat",
                 f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{socket}"],
                stderr=subprocess.DEVNULL))  # fmt: skip
        self.broker_port = ports[0]
        time.sleep(0.5)  # the listeners inside are up
        return ["ip", "netns", "exec", self.name]

    def drop(self, share: float) -> None:
        """Drop ``share`` of the packets to and from the broker port, from now on."""
        self.run("iptables", "-F", "INPUT")
        if share <= 0:
            return
        for direction in ("--dport", "--sport"):
            rule = ["-p", "tcp", direction, str(self.broker_port)]
            if share < 1:
                rule += ["-m", "statistic", "--mode", "random", "--probability", str(share)]
            self.run("iptables", "-A", "INPUT", "-i", "lo", *rule, "-j", "DROP")

    def close(self) -> None:
        for process in self.bridges:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultSystem, Namespace]]:
    ensure_commands("ip", "iptables", "socat",
                    packages={"ip": "iproute2"})  # fmt: skip
    folder = tmp_path_factory.mktemp("lossy")
    namespace = Namespace(f"amr-lossy-{time.monotonic_ns() % 10**9}", folder)
    namespace.create()
    try:
        built = build(folder, wrap_gateway=namespace.bridge)
        try:
            yield built, namespace
        finally:
            built.close()
    finally:
        namespace.close()


@pytest.mark.reliability("fault", "lossy link: 25 % packet loss for 20 s, then 15 s dead")
def test_a_lossy_then_dead_link_loses_and_doubles_nothing(
    lossy: tuple[FaultSystem, Namespace], reliability: dict[str, object]
) -> None:
    system, namespace = lossy
    _, before = system.wire.mark()
    wait_for(lambda: system.wire.mark()[1] >= before + 10, 60, "readings flowing")
    since = system.wire.mark()
    credit = system.credit_kwh(system.meters["still"])
    namespace.drop(0.25)
    vend = system.vend(VEND_MINOR)
    time.sleep(20)
    namespace.drop(1.0)
    time.sleep(15)
    namespace.drop(0)
    delivery = system.delivery(vend["id"], timeout_s=120)
    wait_for(lambda: system.wire.mark()[1] >= since[1] + 10, 60, "readings after the outage")
    system.wait_converged(120)
    counts = system.counts(since)
    links_lost = system.log_text("gateway").count("MQTT link down")
    reliability.update(counts)
    reliability["gateway's links lost"] = links_lost
    reliability["token"] = delivery["state"]
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts
    assert delivery["state"] == "applied", delivery
    assert system.applied_transitions(delivery["command_id"]) == 1
    assert round(system.credit_kwh(system.meters["still"]) - credit, 1) == VEND_MINOR / 100
    assert links_lost >= 1  # the dead spell broke the connection, and the gateway came back
    assert system.api.get(f"/api/v1/gateways/{GW}")["online"] is True
