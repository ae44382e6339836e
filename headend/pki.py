"""A small certificate authority for the broker link: ``amr pki`` (the CLI is ``headend.cli.pki``).

Every gateway and every head-end process connects to the broker over TLS with a client
certificate of its own; the broker takes the certificate's common name (CN) as the MQTT user name
(Mosquitto's ``use_identity_as_username``) and its ACL confines a gateway to
``amr/v1/gw/<CN>/...`` (``deploy/mosquitto/acl``). So the CN *is* the identity:

* a gateway certificate's CN is the gateway id (``gw-0042``), with extendedKeyUsage clientAuth;
* a head-end certificate's CN is a name that starts with ``headend`` (``headend-1``), which the
  ACL lists one by one; gateway ids may therefore not start with ``headend``, or a gateway could be
  enrolled under a name that the ACL grants the whole tree;
* the broker's server certificate has the host names and addresses the clients connect to as
  subjectAltNames, with extendedKeyUsage serverAuth (OpenSSL refuses it as a client certificate).

Keys are ECDSA P-256. The folder holds::

    ca.pem  ca.key (0600)  crl.pem  index.json
    certs/NAME.pem   private/NAME.key (0600; the folder 0700)

``index.json`` is the register of everything issued (serial, name, kind, validity, revocation);
``crl.pem`` is written at ``init`` (empty: Mosquitto's ``crlfile`` must exist) and again on every
revocation. A CRL has a next-update date (``CRL_VALIDITY_DAYS``) after which OpenSSL refuses every
client, so ``CertificateAuthority.write_crl`` (``amr pki crl``) must be run again before then.

A name is unique among the certificates that are not revoked: a gateway is re-enrolled (a new key,
a new certificate) after its old certificate is revoked. No argparse and no printing here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY_DAYS",
    "CRL_VALIDITY_DAYS",
    "HEADEND_PREFIX",
    "LEAF_VALIDITY_DAYS",
    "AlreadyInitialised",
    "AlreadyRevoked",
    "Busy",
    "CertKind",
    "CertificateAuthority",
    "InvalidName",
    "IssuedCert",
    "NameTaken",
    "NotInitialised",
    "PkiError",
    "UnknownCertificate",
    "check_name",
]

CA_VALIDITY_DAYS = 20 * 365
LEAF_VALIDITY_DAYS = 5 * 365
CRL_VALIDITY_DAYS = 365
HEADEND_PREFIX = "headend"
_INDEX_VERSION = 1
# The gateway id of the MQTT contract (protocols.link.validate_gateway_id): it is the CN and the
# ACL's %u, so it must not hold / + # either.
_IDENTITY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class PkiError(Exception):
    """Anything ``amr pki`` refuses; the message says what to do."""


class NotInitialised(PkiError):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(f"no CA in {folder}: run amr pki init --dir {folder} first")


class AlreadyInitialised(PkiError):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(f"{folder} already holds a CA (ca.key); refusing to overwrite it")


class Busy(PkiError):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(f"another amr pki is changing {folder}; try again when it has finished")


class InvalidName(PkiError):
    def __init__(self, name: str, why: str) -> None:
        self.name = name
        super().__init__(f"invalid name {name!r}: {why}")


class NameTaken(PkiError):
    def __init__(self, name: str, serial: int) -> None:
        self.name, self.serial = name, serial
        super().__init__(
            f"{name} already has a valid certificate (serial {serial:040X}); "
            f"revoke it first (amr pki revoke) to issue a new one"
        )


class UnknownCertificate(PkiError):
    def __init__(self, which: str) -> None:
        self.which = which
        super().__init__(f"no certificate named {which!r} or with that serial (see amr pki list)")


class AlreadyRevoked(PkiError):
    def __init__(self, name: str, serial: int) -> None:
        self.name, self.serial = name, serial
        super().__init__(f"{name} (serial {serial:040X}) is already revoked")


class CertKind(StrEnum):
    GATEWAY = "gateway"
    HEADEND = "headend"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """One line of the register (``index.json``)."""

    serial: int
    name: str
    kind: CertKind
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "serial": f"{self.serial:040X}",
            "name": self.name,
            "kind": self.kind.value,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    @classmethod
    def from_json(cls, row: dict[str, object]) -> IssuedCert:
        revoked = row.get("revoked_at")
        return cls(
            serial=int(str(row["serial"]), 16),
            name=str(row["name"]),
            kind=CertKind(str(row["kind"])),
            not_before=dt.datetime.fromisoformat(str(row["not_before"])),
            not_after=dt.datetime.fromisoformat(str(row["not_after"])),
            revoked_at=dt.datetime.fromisoformat(str(revoked)) if revoked else None,
        )


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only, replacing ``path`` atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _write_public(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _alt_name(text: str) -> x509.GeneralName:
    """A subjectAltName for a host: an IP address, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if len(text) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise InvalidName(text, "a server name is a DNS host name or an IP address")
    return x509.DNSName(text.rstrip("."))


def check_name(kind: CertKind, name: str) -> None:
    """Raise ``InvalidName`` unless ``name`` can be the CN of a ``kind`` certificate."""
    if kind is CertKind.SERVER:
        _alt_name(name)
        return
    if not _IDENTITY.match(name):
        raise InvalidName(name, "1 to 64 of A-Z a-z 0-9 _ - (it is the MQTT user name)")
    if kind is CertKind.GATEWAY and name.lower().startswith(HEADEND_PREFIX):
        raise InvalidName(
            name, f"gateway ids may not start with {HEADEND_PREFIX!r} (head-end names do)"
        )
    if kind is CertKind.HEADEND and not name.startswith(HEADEND_PREFIX):
        raise InvalidName(name, f"head-end names start with {HEADEND_PREFIX!r} (headend-1, ...)")


class CertificateAuthority:
    """The CA in one folder. ``CertificateAuthority.init(folder)`` makes one; the constructor opens
    an existing one (``NotInitialised`` if there is none)."""

    def __init__(self, folder: Path, now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.folder = folder
        self._now = now
        if not self.key_path_ca.exists() or not self.ca_cert_path.exists():
            raise NotInitialised(folder)
        try:
            key = serialization.load_pem_private_key(self.key_path_ca.read_bytes(), None)
            self.ca_cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        except (ValueError, TypeError) as exc:
            raise PkiError(
                f"the CA in {folder} is damaged ({exc}); restore it from a backup"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.key_path_ca}: not an EC private key")
        self._ca_key = key

    # -- paths -------------------------------------------------------------------------------

    @property
    def ca_cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def key_path_ca(self) -> Path:
        return self.folder / "ca.key"

    @property
    def crl_path(self) -> Path:
        return self.folder / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock while the register, the CRL or issued files change, so that two
        runs (an operator issuing while cron renews the CRL) cannot lose each other's entries."""
        with (self.folder / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy(self.folder) from None
            yield

    def cert_path(self, name: str) -> Path:
        return self.folder / "certs" / f"{name}.pem"

    def key_path(self, name: str) -> Path:
        return self.folder / "private" / f"{name}.key"

    # -- making one --------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        folder: Path,
        common_name: str = "amr-sts CA",
        days: int = CA_VALIDITY_DAYS,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> CertificateAuthority:
        """Make the CA key (0600), its self-signed certificate, an empty register and CRL."""
        if (folder / "ca.key").exists():
            raise AlreadyInitialised(folder)
        if days < 1:
            raise PkiError("--days must be at least 1")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "certs").mkdir(exist_ok=True)
        (folder / "private").mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder / "private", 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amr-sts"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        start = now()
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=5))
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(folder / "ca.key", _key_pem(key))
        _write_public(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
        ca = cls(folder, now)
        ca._save([])
        ca._write_crl()
        return ca

    # -- the register ------------------------------------------------------------------------

    def certificates(self) -> list[IssuedCert]:
        """Everything issued, oldest first."""
        if not self.index_path.exists():
            return []
        try:
            data = json.loads(self.index_path.read_text())
            return [IssuedCert.from_json(row) for row in data["certificates"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PkiError(
                f"{self.index_path} is damaged ({exc}); restore it from a backup"
            ) from None

    def _save(self, certificates: Sequence[IssuedCert]) -> None:
        text = json.dumps(
            {"version": _INDEX_VERSION, "certificates": [c.to_json() for c in certificates]},
            indent=2,
        )
        _write_public(self.index_path, (text + "\n").encode())

    def current(self, name: str) -> IssuedCert | None:
        """The certificate of ``name`` that is not revoked, if any."""
        for issued in reversed(self.certificates()):
            if issued.name == name and issued.revoked_at is None:
                return issued
        return None

    # -- issuing -----------------------------------------------------------------------------

    def issue(
        self,
        kind: CertKind,
        name: str,
        days: int = LEAF_VALIDITY_DAYS,
        alt_names: Iterable[str] = (),
    ) -> IssuedCert:
        """Make a key and a certificate for ``name``; written to ``cert_path``/``key_path``."""
        with self.locked():
            return self._issue(kind, name, days, alt_names)

    def _issue(self, kind: CertKind, name: str, days: int, alt_names: Iterable[str]) -> IssuedCert:
        check_name(kind, name)
        extra = list(alt_names)
        if extra and kind is not CertKind.SERVER:
            raise PkiError("only a server certificate takes extra host names (--alt)")
        sans = [_alt_name(host) for host in [name, *extra]] if kind is CertKind.SERVER else []
        if days < 1:
            raise PkiError("--days must be at least 1")
        taken = self.current(name)
        if taken is not None:
            raise NameTaken(name, taken.serial)
        start = self._now()
        not_after = min(start + dt.timedelta(days=days), self.ca_cert.not_valid_after_utc)
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if kind is CertKind.SERVER
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        ca_public = self.ca_cert.public_key()
        assert isinstance(ca_public, ec.EllipticCurvePublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amr-sts"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                    ]
                )
            )
            .issuer_name(self.ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        _write_private(self.key_path(name), _key_pem(key))
        _write_public(self.cert_path(name), cert.public_bytes(serialization.Encoding.PEM))
        issued = IssuedCert(
            cert.serial_number, name, kind, cert.not_valid_before_utc, cert.not_valid_after_utc
        )
        self._save([*self.certificates(), issued])
        return issued

    # -- revoking ----------------------------------------------------------------------------

    def find(self, which: str) -> IssuedCert:
        """The certificate ``which`` names: a name (its newest certificate) or a serial in hex."""
        certificates = self.certificates()
        by_name = [c for c in certificates if c.name == which]
        if by_name:
            valid = [c for c in by_name if c.revoked_at is None]
            return (valid or by_name)[-1]
        try:
            serial = int(which.replace(":", "").removeprefix("0x"), 16)
        except ValueError:
            raise UnknownCertificate(which) from None
        for issued in certificates:
            if issued.serial == serial:
                return issued
        raise UnknownCertificate(which)

    def revoke(self, which: str) -> IssuedCert:
        """Revoke a certificate by name or serial and rewrite ``crl.pem``."""
        with self.locked():
            return self._revoke(which)

    def _revoke(self, which: str) -> IssuedCert:
        target = self.find(which)
        if target.revoked_at is not None:
            raise AlreadyRevoked(target.name, target.serial)
        when = self._now()
        revoked = IssuedCert(
            target.serial, target.name, target.kind, target.not_before, target.not_after, when
        )
        self._save([revoked if c.serial == target.serial else c for c in self.certificates()])
        self._write_crl()
        return revoked

    def write_crl(self) -> x509.CertificateRevocationList:
        """Write ``crl.pem`` listing every revoked serial, valid ``CRL_VALIDITY_DAYS`` from now."""
        with self.locked():
            return self._write_crl()

    def _write_crl(self) -> x509.CertificateRevocationList:
        now = self._now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_VALIDITY_DAYS))
        )
        for issued in self.certificates():
            if issued.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(issued.serial)
                    .revocation_date(issued.revoked_at)
                    .build()
                )
        crl = builder.sign(self._ca_key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def crl_next_update(self) -> dt.datetime | None:
        """When the CRL on disk stops being valid (None if there is none)."""
        if not self.crl_path.exists():
            return None
        return x509.load_pem_x509_crl(self.crl_path.read_bytes()).next_update_utc
