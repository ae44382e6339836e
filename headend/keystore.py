"""The vending key store: STS vending keys sealed at rest, used only through a narrow interface.

A vending key (IEC 62055-41: the supply group's key from which every meter's decoder key is derived)
never leaves this module in clear. The interface, :class:`TokenIssuer`, takes a meter's key
attributes and the token's fields and returns the 20-digit token, which is what a hardware security
module does; :class:`SealedKeyStore` is the software implementation.

Sealing: AES-256-GCM (``cryptography``) under a master key read from a file or the environment,
with a fresh 96-bit nonce per key and the key's attributes as associated data, so a sealed key
copied onto another row (another supply group or revision) no longer opens. Without the master key
the ``vending_keys`` table is unreadable.
"""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocols.sts import (
    BaseDate,
    DecoderKeyInputs,
    Dkga,
    EncryptionAlgorithm,
    KeyType,
    MeterPan,
    Token,
    TokenCoder,
    TokenFields,
    VendingKey,
    key_change_set,
)

from .store.schema import vending_keys

__all__ = [
    "KeyStoreError",
    "MeterKeys",
    "SealedKeyStore",
    "TokenIssuer",
    "load_master_key",
    "thd_add_vending_key",
]

NONCE_BYTES = 12


class KeyStoreError(Exception):
    """A key is missing, or a sealed key does not open (wrong master key, tampered row)."""


@dataclass(frozen=True, slots=True)
class MeterKeys:
    """A meter's STS key attributes, as the store keeps them (no key material)."""

    drn: str
    sgc: int
    tariff_index: int
    key_revision: int
    key_type: int
    base_date: int
    algorithm: str

    def inputs(self, dkga: Dkga) -> DecoderKeyInputs:
        return DecoderKeyInputs(
            pan=MeterPan.from_drn(self.drn),
            supply_group_code=f"{self.sgc:06d}",
            tariff_index=f"{self.tariff_index:02d}",
            key_revision_number=self.key_revision,
            key_type=KeyType(self.key_type),
            base_date=BaseDate(self.base_date),
            algorithm=EncryptionAlgorithm[self.algorithm.upper()],
            dkga=dkga,
        )


class TokenIssuer(Protocol):
    """What vending needs from a key store (a software store or an HSM)."""

    def issue(self, connection: sa.Connection, meter: MeterKeys, fields: TokenFields) -> Token: ...

    def key_change(self, connection: sa.Connection, meter: MeterKeys,
                   new: MeterKeys) -> list[Token]: ...  # fmt: skip


def load_master_key(file: Path | None, env: str = "AMR_MASTER_KEY") -> bytes:
    """The 32-byte master key from ``file`` (hex) or the environment variable ``env`` (hex)."""
    if file is not None:
        try:
            text = file.read_text().strip()
        except OSError as exc:
            raise KeyStoreError(f"cannot read the master key file {file}: {exc.strerror}") from None
        source = str(file)
    else:
        text = os.environ.get(env, "").strip()
        source = f"${env}"
        if not text:
            raise KeyStoreError(f"no master key: set master_key_file or ${env}")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyStoreError(f"the master key in {source} is not hexadecimal") from None
    if len(key) != 32:
        raise KeyStoreError(f"the master key in {source} must be 32 bytes (64 hex digits)")
    return key


def _associated_data(
    sgc: int, key_revision: int, algorithm: str, key_type: int, dkga: int
) -> bytes:
    return f"amr-vk/1|{sgc:06d}|{key_revision}|{algorithm}|{key_type}|{dkga}".encode()


def thd_add_vending_key(connection: sa.Connection, master_key: bytes, key_id: str, key_hex: str,
                        sgc: int, key_revision: int, key_type: int, algorithm: str,
                        dkga: int, now: float) -> None:  # fmt: skip
    """Seal and store a vending key (replacing a key with the same id)."""
    VendingKey.from_hex(key_hex)  # validates length and hex without echoing the key
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = nonce + AESGCM(master_key).encrypt(
        nonce,
        bytes.fromhex(key_hex),
        _associated_data(sgc, key_revision, algorithm, key_type, dkga),
    )
    connection.execute(sa.delete(vending_keys).where(vending_keys.c.id == key_id))
    connection.execute(sa.insert(vending_keys).values(
        id=key_id, sgc=sgc, key_revision=key_revision, key_type=key_type, algorithm=algorithm,
        dkga=dkga, sealed=sealed, created_at=now,
    ))  # fmt: skip


class SealedKeyStore:
    """:class:`TokenIssuer` over the ``vending_keys`` table, sealed with the master key.

    Derived token coders are cached per meter (deriving a decoder key costs more than a token).
    """

    def __init__(self, master_key: bytes, cache_size: int = 4096) -> None:
        self._master_key = master_key
        self._aead = AESGCM(master_key)
        self._coders: OrderedDict[MeterKeys, TokenCoder] = OrderedDict()
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return f"<SealedKeyStore with {len(self._coders)} cached meters>"

    def add_key(self, connection: sa.Connection, key_id: str, key_hex: str, sgc: int,
                key_revision: int, key_type: int, algorithm: str, dkga: int, now: float) -> None:  # fmt: skip
        """Seal and store a vending key under this store's master key."""
        thd_add_vending_key(connection, self._master_key, key_id, key_hex, sgc, key_revision,
                            key_type, algorithm, dkga, now)  # fmt: skip

    def _vending_key(self, connection: sa.Connection, meter: MeterKeys) -> tuple[VendingKey, Dkga]:
        row = connection.execute(
            sa.select(vending_keys).where(
                vending_keys.c.sgc == meter.sgc,
                vending_keys.c.key_revision == meter.key_revision,
                vending_keys.c.algorithm == meter.algorithm,
            )
        ).first()
        if row is None:
            raise KeyStoreError(
                f"no vending key for supply group {meter.sgc:06d} revision {meter.key_revision} "
                f"({meter.algorithm})"
            )
        sealed = bytes(row.sealed)
        try:
            clear = self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                _associated_data(row.sgc, row.key_revision, row.algorithm, row.key_type, row.dkga),
            )  # fmt: skip
        except InvalidTag:
            raise KeyStoreError(
                f"vending key {row.id} does not open: wrong master key or a tampered row"
            ) from None
        return VendingKey.from_hex(clear.hex()), Dkga.parse(row.dkga)

    def _coder(self, connection: sa.Connection, meter: MeterKeys) -> TokenCoder:
        coder = self._coders.get(meter)
        if coder is None:
            vending_key, dkga = self._vending_key(connection, meter)
            coder = TokenCoder.derive(vending_key, meter.inputs(dkga))
            self._coders[meter] = coder
            if len(self._coders) > self._cache_size:
                self._coders.popitem(last=False)
        else:
            self._coders.move_to_end(meter)
        return coder

    def issue(self, connection: sa.Connection, meter: MeterKeys, fields: TokenFields) -> Token:
        return self._coder(connection, meter).encode(fields)

    def key_change(self, connection: sa.Connection, meter: MeterKeys,
                   new: MeterKeys) -> list[Token]:  # fmt: skip
        """The key change set (2 or 4 tokens) that moves ``meter`` to the key of ``new``."""
        old_key, old_dkga = self._vending_key(connection, meter)
        new_key, new_dkga = self._vending_key(connection, new)
        # the roll-over bit: the base date moves forward (1993 -> 2014, the TID rollover)
        return key_change_set(old_key, meter.inputs(old_dkga), new_key, new.inputs(new_dkga))
