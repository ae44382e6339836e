"""The head-end's MQTT link: shared subscriptions in, commands and acks out.

Every uplink topic is subscribed as ``$share/{group}/amr/v1/gw/+/{topic}`` (MQTT v5), so any number
of head-end processes split the gateways' traffic. paho runs with ``manual_ack``: the broker's PUBACK
for a message goes out only when ingest has committed it. The gateway's retained ``state`` is
subscribed without sharing, so every process learns which gateways are online.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from protocols.link import ROOT, Topic, shared_subscription

from .config import MqttConfig
from .mqtt import ReactorMqtt

__all__ = ["HeadendLink"]

log = Logger()
SHARED = (Topic.READINGS, Topic.EVENTS, Topic.COMMAND_STATUS, Topic.HEALTH)


class HeadendLink(service.Service):
    def __init__(self, reactor: Any, config: MqttConfig,
                 on_message: Callable[[str, bytes, Callable[[], None]], None]) -> None:  # fmt: skip
        self.reactor = reactor
        self.config = config
        self.on_message = on_message
        v5 = config.protocol == 5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        if config.username:
            client.username_pw_set(config.username)
        if config.tls is not None:
            client.tls_set(
                ca_certs=str(config.tls.ca_file),
                certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
                keyfile=str(config.tls.key_file) if config.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.mqtt = ReactorMqtt(reactor, client)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.received = 0

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        connect: dict[str, Any] = {}
        if self.config.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.config.session_expiry_s
            connect = {"clean_start": False, "properties": properties}
        self.mqtt.start(self.config.host, self.config.port, self.config.keepalive_s, **connect)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()
        return self.mqtt.stop()

    def when_connected(self) -> defer.Deferred[Any]:
        return self.mqtt.when_connected()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        if reason.is_failure:
            log.warn("MQTT connection refused: {reason}", reason=str(reason))
            return
        log.info("Connected to the broker at {host}:{port}", host=self.config.host,
                 port=self.config.port)  # fmt: skip
        if self.config.protocol == 5:
            topics = [(shared_subscription(t, self.config.share_group), 1) for t in SHARED]
        else:  # MQTT 3.1.1 has no shared subscriptions: one process takes everything
            topics = [(f"{ROOT}/+/{t.value}", 1) for t in SHARED]
        topics.append((f"{ROOT}/+/{Topic.STATE.value}", 1))
        client.subscribe(topics)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        mid, qos = message.mid, message.qos

        def ack() -> None:
            if qos > 0 and self.mqtt.connected:
                client.ack(mid, qos)

        self.on_message(message.topic, bytes(message.payload), ack)

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.mqtt.connected:
            return False
        return self.mqtt.publish(topic, payload, qos=1).rc == mqtt.MQTT_ERR_SUCCESS
