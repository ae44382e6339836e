"""The encryption algorithms of IEC 62055-41 (clause 6.5.4 to 6.5.6) behind one interface.

=====  ===========  ==========  ===========================================================
code   name         key length  status
=====  ===========  ==========  ===========================================================
07     STA          64 bits     current; with DKGA02 or DKGA04
09     DEA (DES)    64 bits     "deprecated and shall not be used in new products" (6.5.5)
11     MISTY1       128 bits    STS Edition 2 (STS6); DKGA04 only
=====  ===========  ==========  ===========================================================

Every cipher works on the 64-bit data block as an integer (bit 0 least significant). DES and MISTY1
see it as 8 big-endian bytes. The DEA byte mapping (key and block as 8 big-endian bytes) has no
public test vector; it is the only mapping consistent with how the other algorithms treat blocks.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from .errors import StsUsageError
from .misty1 import Misty1
from .sta import StaCipher

__all__ = [
    "BlockCipher",
    "EncryptionAlgorithm",
    "StsDeprecationWarning",
    "des_encrypt",
    "make_cipher",
]


class StsDeprecationWarning(FutureWarning):
    """Use of an algorithm the standard deprecates (EA09 DEA).

    A FutureWarning, not a DeprecationWarning: it is meant for the people who vend with the
    algorithm, and Python shows FutureWarnings by default wherever they arise.
    """


class EncryptionAlgorithm(Enum):
    """Encryption algorithm codes (EA) of IEC 62055-41."""

    STA = "07"
    DEA = "09"
    MISTY1 = "11"

    @property
    def key_bytes(self) -> int:
        return 16 if self is EncryptionAlgorithm.MISTY1 else 8

    @property
    def label(self) -> str:
        return f"EA{self.value}"

    @classmethod
    def parse(cls, value: str | int | EncryptionAlgorithm) -> EncryptionAlgorithm:
        """Accepts EncryptionAlgorithm, 7/9/11, "07", "EA07", "sta", "misty1", "dea", "des"."""
        if isinstance(value, EncryptionAlgorithm):
            return value
        text = str(value).strip().upper()
        aliases = {"STA": "07", "DEA": "09", "DES": "09", "MISTY1": "11", "MISTY": "11"}
        text = aliases.get(text, text.removeprefix("EA"))
        if text.isascii() and text.isdigit():  # not '²', which int() refuses
            text = f"{int(text):02d}"
        for member in cls:
            if member.value == text:
                return member
        raise StsUsageError(
            f"encryption algorithm must be EA07 (STA), EA09 (DEA) or EA11 (MISTY1), got {value!r}"
        )


class BlockCipher(Protocol):
    """A 64-bit block cipher keyed with one decoder key."""

    def encrypt_block(self, block: int) -> int: ...

    def decrypt_block(self, block: int) -> int: ...


def des_encrypt(key: bytes, block: bytes) -> bytes:
    """Single DES (FIPS 46-3) of one 8-byte block, ECB.

    ``cryptography`` keeps DES only as three-key TripleDES; with K1 = K2 = K3, EDE is single DES.
    """
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


class DeaCipher:
    """EA09: single DES on the block's 8 big-endian bytes. Deprecated by the standard."""

    __slots__ = ("_decryptor_cipher", "_encryptor_cipher")

    def __init__(self, key: bytes) -> None:
        warnings.warn(
            "EA09 (DEA) is deprecated by IEC 62055-41 and shall not be used in new products",
            StsDeprecationWarning,
            stacklevel=4,
        )
        cipher = Cipher(TripleDES(key * 3), modes.ECB())
        self._encryptor_cipher = cipher
        self._decryptor_cipher = cipher

    def __repr__(self) -> str:
        return "DeaCipher(key=<redacted>)"

    def encrypt_block(self, block: int) -> int:
        encryptor = self._encryptor_cipher.encryptor()
        out = encryptor.update(block.to_bytes(8, "big")) + encryptor.finalize()
        return int.from_bytes(out, "big")

    def decrypt_block(self, block: int) -> int:
        decryptor = self._decryptor_cipher.decryptor()
        out = decryptor.update(block.to_bytes(8, "big")) + decryptor.finalize()
        return int.from_bytes(out, "big")


def make_cipher(algorithm: EncryptionAlgorithm, key: bytes) -> BlockCipher:
    """The cipher for ``algorithm`` keyed with ``key`` (8 bytes, or 16 for MISTY1)."""
    if len(key) != algorithm.key_bytes:
        raise StsUsageError(
            f"{algorithm.label} needs a {algorithm.key_bytes * 8}-bit decoder key, "
            f"got {len(key) * 8} bits"
        )
    if algorithm is EncryptionAlgorithm.STA:
        return StaCipher(int.from_bytes(key, "big"))
    if algorithm is EncryptionAlgorithm.MISTY1:
        return Misty1(key)
    return DeaCipher(key)
