"""paho-mqtt driven by the Twisted reactor (paho's external-loop API), never blocking it.

How it works (measured and hardened on prototypes, see shared/STACK.md section 2):

* paho's socket callbacks map to ``reactor.addReader/addWriter``; ``doRead``/``doWrite`` call
  ``loop_read``/``loop_write``, and a LoopingCall runs ``loop_misc`` (keepalive) every second.
* ``reconnect()`` blocks (DNS, TCP, TLS handshake), so it runs in a thread; the socket callbacks
  it fires there are marshalled back to the reactor.
* paho runs user callbacks while holding a non-reentrant lock: every application callback is
  re-dispatched through one batched ``callLater(0)``, outside paho's locks. (Calling paho from inside
  its own callback deadlocked the reactor in the prototype.)
* There is no automatic reconnect in external-loop mode: the adapter reconnects from
  ``on_disconnect`` with jittered exponential back-off, and the application re-subscribes in its
  ``on_connect`` handler every time (a broker that lost its sessions forgets subscriptions).
* paho's own queue lives in memory and caps at 65 535 messages: callers keep their own outbox (the
  journal) and check :meth:`publish`'s result.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ReactorMqtt"]

log = Logger()

Callback = Callable[..., Any]


@implementer(IReadDescriptor, IWriteDescriptor)
class _SocketDescriptor:
    def __init__(self, client: mqtt.Client, sock: Any) -> None:
        self.client = client
        self.sock = sock
        self._fd = sock.fileno()  # a closed socket reports -1: keep the number we registered

    def fileno(self) -> int:
        return int(self._fd)

    def doRead(self) -> None:  # noqa: N802 - Twisted's name
        self.client.loop_read()
        sock = self.client.socket()
        # TLS: bytes already decrypted inside the SSL object never wake the reactor again
        while sock is not None and hasattr(sock, "pending") and sock.pending() > 0:
            self.client.loop_read()
            sock = self.client.socket()

    def doWrite(self) -> None:  # noqa: N802 - Twisted's name
        self.client.loop_write()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """paho closes the socket itself."""

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        return "mqtt"


class ReactorMqtt:
    """A paho client run by the reactor, with reconnect and reactor-side callbacks.

    Set ``on_connect``, ``on_disconnect``, ``on_message``, ``on_publish`` (paho VERSION2
    signatures) before :meth:`start`; they always run in the reactor thread.
    """

    def __init__(
        self,
        reactor: Any,
        client: mqtt.Client,
        *,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._random = random_fraction
        self._backoff_s = min_backoff_s
        self._descriptor: _SocketDescriptor | None = None
        self._want_connected = False
        self._connecting = False
        self._reconnect_call: Any = None
        self._connected_waiters: list[defer.Deferred[ReactorMqtt]] = []
        self._closed_waiters: list[defer.Deferred[None]] = []
        self._pending: collections.deque[tuple[Callback, tuple[Any, ...]]] = collections.deque()
        self._drain_call: Any = None
        self.reconnects = 0
        self.on_connect: Callback | None = None
        self.on_disconnect: Callback | None = None
        self.on_message: Callback | None = None
        self.on_publish: Callback | None = None
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = lambda *args: self._later(self.on_message, *args)
        client.on_publish = lambda c, u, mid, rc, props: self._later(
            self.on_publish, c, u, mid, rc, None
        )
        client.on_socket_open = lambda c, u, sock: self._in_reactor(self._attach, sock)
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = lambda c, u, s: self._in_reactor(self._set_writer, True)
        client.on_socket_unregister_write = lambda c, u, s: self._in_reactor(
            self._set_writer, False
        )
        self._misc = task.LoopingCall(self._loop_misc)
        self._misc.clock = reactor

    # -- callbacks, always in the reactor, outside paho's locks ---------------------------------

    def _later(self, callback: Callback | None, *args: Any) -> None:
        if callback is None:
            return
        self._pending.append((callback, args))
        if self._drain_call is None:
            self._drain_call = self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        pending, self._pending = self._pending, collections.deque()
        while pending:
            callback, args = pending.popleft()
            try:
                callback(*args)
            except Exception:
                log.failure(
                    "MQTT callback {callback} failed",
                    callback=getattr(callback, "__name__", callback),
                )

    def _in_reactor(self, function: Callback, *args: Any) -> None:
        if threadable.isInIOThread():
            function(*args)
        else:
            self.reactor.callFromThread(function, *args)

    def _loop_misc(self) -> None:
        self.client.loop_misc()

    # -- sockets --------------------------------------------------------------------------------

    def _attach(self, sock: Any) -> None:
        if self.client.socket() is not sock:
            return
        self._descriptor = _SocketDescriptor(self.client, sock)
        self.reactor.addReader(self._descriptor)
        if self.client.want_write():
            self.reactor.addWriter(self._descriptor)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho calls this before sock.close(): unregister while the descriptor is still valid
        if self._descriptor is not None:
            self.reactor.removeReader(self._descriptor)
            self.reactor.removeWriter(self._descriptor)
            self._descriptor = None
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            self.reactor.callLater(0, waiter.callback, None)

    def _set_writer(self, on: bool) -> None:
        if self._descriptor is not None:
            if on:
                self.reactor.addWriter(self._descriptor)
            else:
                self.reactor.removeWriter(self._descriptor)

    # -- connection -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    def start(
        self, host: str, port: int, keepalive: int = 30, **connect: Any
    ) -> defer.Deferred[ReactorMqtt]:
        """Connect (and keep reconnecting); the Deferred fires on the first CONNACK."""
        self.client.connect_async(host, port, keepalive, **connect)
        self._want_connected = True
        if not self._misc.running:
            self._misc.start(1.0, now=False)
        waiter = self.when_connected()
        self._try_connect()
        return waiter

    def when_connected(self) -> defer.Deferred[ReactorMqtt]:
        if self.client.is_connected():
            return defer.succeed(self)
        waiter: defer.Deferred[ReactorMqtt] = defer.Deferred()
        self._connected_waiters.append(waiter)
        return waiter

    def _try_connect(self) -> None:
        self._reconnect_call = None
        if not self._want_connected or self._connecting or self.client.socket() is not None:
            return
        self._connecting = True
        attempt = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self.client.reconnect
        )

        def done(result: object) -> None:
            self._connecting = False
            if isinstance(result, Failure):
                log.warn("MQTT connect failed: {error}; retry in {delay_s:.1f}s",
                         error=result.getErrorMessage(), delay_s=self._backoff_s)  # fmt: skip
                self._schedule_reconnect()

        attempt.addBoth(done)

    def _schedule_reconnect(self) -> None:
        if self._want_connected and self._reconnect_call is None:
            delay = self._backoff_s * (0.5 + self._random())  # jitter: gateways must not stampede
            self._reconnect_call = self.reactor.callLater(delay, self._try_connect)
            self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)

    def force_reconnect(self) -> None:
        """Drop the connection and connect again (a watchdog saw acknowledgements stop)."""
        if self.client.socket() is not None:
            self.client.disconnect()

    def _paho_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not reason.is_failure:
            self._backoff_s = self.min_backoff_s
            waiters, self._connected_waiters = self._connected_waiters, []
            for waiter in waiters:
                self.reactor.callLater(0, waiter.callback, self)
        self._later(self.on_connect, client, userdata, flags, reason, properties)

    def _paho_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._later(self.on_disconnect, client, userdata, flags, reason, properties)
        if self._want_connected:
            self.reconnects += 1
        self.reactor.callLater(0, self._schedule_reconnect)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """paho's publish; check ``rc`` (a full paho queue refuses, and nothing is queued)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> defer.Deferred[None]:
        """Disconnect cleanly; safe from inside callbacks. Fires when the socket is closed."""
        self._want_connected = False
        if self._reconnect_call is not None and self._reconnect_call.active():
            self._reconnect_call.cancel()
        self._reconnect_call = None
        if self._misc.running:
            self._misc.stop()
        if self.client.socket() is None:
            return defer.succeed(None)
        closed: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(closed)
        self.client.disconnect()  # only queues DISCONNECT: doWrite flushes it, paho closes
        return closed
