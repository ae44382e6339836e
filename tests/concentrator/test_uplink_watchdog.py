"""The uplink's ack watchdog on a fake clock: silence is counted from the last ack or from the
oldest message waiting, whichever came later, so a gateway that polls every 15 minutes is not
made to reconnect for the time it had nothing to send."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from concentrator.uplink import Uplink

TIMEOUT_S = 120.0


class FakeMqtt:
    connected = True

    def __init__(self) -> None:
        self.reconnects = 0
        self.on_connect: Any = None
        self.on_message: Any = None
        self.on_disconnect: Any = None

    def force_reconnect(self) -> None:
        self.reconnects += 1


def _uplink() -> tuple[Uplink, FakeMqtt, task.Clock]:
    clock = task.Clock()
    mqtt = FakeMqtt()
    uplink = Uplink(clock, mqtt, journal=None, gateway_id="gw-1",  # type: ignore[arg-type]
                    on_command=lambda payload: None, version="test", meters=lambda: (),
                    ack_timeout_s=TIMEOUT_S)  # fmt: skip
    uplink.start()
    return uplink, mqtt, clock


def _publish(uplink: Uplink, seq: int, clock: task.Clock) -> None:
    uplink._published[seq] = clock.seconds()  # what the pump records when it publishes


def test_a_message_after_a_long_idle_spell_gets_the_whole_timeout() -> None:
    uplink, mqtt, clock = _uplink()
    clock.advance(900)  # a 15-minute poll interval with nothing to send
    _publish(uplink, 1, clock)
    for _ in range(3):  # the watchdog ticks every 30 s
        clock.advance(30)
    assert mqtt.reconnects == 0, "reconnected before the message had waited the timeout"
    clock.advance(31)  # 121 s without an ack for a waiting message
    assert mqtt.reconnects == 1


def test_a_link_without_acks_is_reconnected_after_the_timeout() -> None:
    uplink, mqtt, clock = _uplink()
    _publish(uplink, 1, clock)
    clock.advance(60)
    _publish(uplink, 2, clock)  # newer messages do not reset the silence
    clock.advance(61)
    assert mqtt.reconnects == 1
