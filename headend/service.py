"""The head-end's composition root: ``make_service(config, reactor)`` wires every part explicitly.

HeadendLink (MQTT, shared subscriptions) --> Ingest --> store (Database, one thread pool)
                                               |--> AlarmNotifier (e-mail, SMS)
                                               '--> Dispatcher.poke (a meter's next command)
API (twisted.web: REST + OpenAPI + /metrics) --> vending, commands, tariffs, alarms, reports
Dispatcher (claims due commands, signs, publishes)   Scheduler (read windows, on one node)
RetentionService (daily totals, old readings dropped, partitions made ahead; on one node)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from .commands import Dispatcher
from .config import HeadendConfig
from .ingest import Ingest, IngestResult
from .keystore import SealedKeyStore, load_master_key
from .link import HeadendLink
from .store import Database, upgrade

__all__ = ["HeadendApp", "HeadendService", "ensure_signing_key", "make_service"]

log = Logger()


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """The command-signing key; a new one is made (mode 0600) when the file does not exist, with
    its public half beside it (``.pub``) for the gateways' ``headend_public_key_file``."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    path.touch(mode=0o600)
    path.write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    path.with_suffix(".pub").write_bytes(public)
    return key


@dataclass
class HeadendApp:
    """What the API handlers reach: the parts of one running head-end."""

    config: HeadendConfig
    clock: Any
    db: Database
    issuer: SealedKeyStore
    dispatcher: Dispatcher
    ingest: Ingest
    link: HeadendLink
    router: Any = None
    notifier: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


class HeadendService(service.MultiService):
    def __init__(self, app: HeadendApp) -> None:
        super().__init__()
        self.app = app
        self.api_port: Any = None

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        app = self.app
        from .api.app import make_site

        # the port first: when it is taken, nothing has started (no thread, no MQTT client)
        # that would keep the process alive after the reactor stops
        site = make_site(app)
        self.api_port = app.clock.listenTCP(app.config.api.port, site,
                                            interface=app.config.api.host)  # fmt: skip
        app.db.start()
        super().startService()
        app.dispatcher.start()
        log.info("Head-end API on http://{host}:{port}/", host=app.config.api.host,
                 port=self.api_port.getHost().port)  # fmt: skip

    @defer.inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        self.app.dispatcher.stop()
        if self.api_port is not None:
            yield self.api_port.stopListening()
        yield super().stopService()
        yield self.app.ingest.drained()
        self.app.db.stop()


def make_service(config: HeadendConfig, reactor: Any) -> HeadendService:
    db = Database(reactor, config.database.url)
    if config.database.upgrade_on_start:
        upgrade(db.engine)
    issuer = SealedKeyStore(
        load_master_key(config.keys.master_key_file, config.keys.master_key_env)
    )
    signing_key = ensure_signing_key(config.keys.signing_key_file)
    holder: dict[str, Any] = {}

    def on_message(topic: str, payload: bytes, ack: Any) -> None:
        holder["ingest"].receive(topic, payload, ack)

    link = HeadendLink(reactor, config.mqtt, on_message)
    dispatcher = Dispatcher(db, reactor, link.publish, signing_key, config.commands.retry_s,
                            config.commands.max_attempts, config.commands.dispatch_interval_s)  # fmt: skip

    def on_committed(result: IngestResult) -> None:
        if result.outcomes:
            dispatcher.poke()
        if result.alarms and app.notifier is not None:
            app.notifier.alarms_raised(result.alarms)

    ingest = Ingest(db, reactor, config, link.publish, on_committed)
    holder["ingest"] = ingest
    app = HeadendApp(config, reactor, db, issuer, dispatcher, ingest, link)
    from .notifier import make_notifier

    app.notifier = make_notifier(app)
    top = HeadendService(app)
    link.setServiceParent(top)
    from .scheduler import Scheduler

    Scheduler(app).setServiceParent(top)
    from .retention import RetentionService

    app.extras["retention"] = RetentionService(app)
    app.extras["retention"].setServiceParent(top)
    return top
