"""Tokens end to end: fields -> data block -> encryption -> 20 digits, and back.

    fields --build_block--> 64-bit block (CRC in bits 15..0)
           --encrypt with the decoder key (class 1: not encrypted)-->
           --transpose the class bits (6.4.2)--> 66-bit number --> 20 digits

A :class:`TokenCoder` holds one decoder key's cipher, with its round keys computed once, so a vending
point that issues many tokens for one meter, or a meter decoding what it is given, pays for the key
schedule once. Class 1 (test/display) tokens need no key: :func:`decode_token` reads them with
``coder=None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ciphers import BlockCipher, EncryptionAlgorithm, make_cipher
from .errors import StsUsageError, UnsupportedTokenError
from .keys import DecoderKey, DecoderKeyInputs, VendingKey, derive_decoder_key
from .number import format_token, join_number, normalize_token, split_number
from .tokens import MeterTestToken, TokenClass, TokenFields, build_block, parse_block

__all__ = ["Token", "TokenCoder", "decode_token", "encode_test_token"]


@dataclass(frozen=True, slots=True)
class Token:
    """An issued token: its 20 digits and the fields it carries (as the meter will read them)."""

    digits: str
    fields: TokenFields

    def __str__(self) -> str:
        return format_token(self.digits)

    @property
    def grouped(self) -> str:
        """The digits in five groups of four, as printed on a receipt."""
        return format_token(self.digits)


def _to_digits(token_class: int, block: int) -> str:
    return f"{join_number(token_class, block):020d}"


class TokenCoder:
    """Encodes and decodes the tokens of one decoder key and encryption algorithm."""

    __slots__ = ("_cipher", "algorithm", "key_bits")

    def __init__(self, key: DecoderKey, algorithm: EncryptionAlgorithm | str) -> None:
        if not isinstance(key, DecoderKey):
            raise StsUsageError("TokenCoder needs a DecoderKey")
        self.algorithm = EncryptionAlgorithm.parse(algorithm)
        self.key_bits = key.bits
        self._cipher: BlockCipher = make_cipher(self.algorithm, key.material)

    @classmethod
    def derive(cls, vending_key: VendingKey, inputs: DecoderKeyInputs) -> TokenCoder:
        """The coder for the meter described by ``inputs`` (its decoder key derived on the fly)."""
        return cls(derive_decoder_key(vending_key, inputs), inputs.algorithm)

    def __repr__(self) -> str:
        return f"TokenCoder({self.algorithm.label}, key=<{self.key_bits}-bit, redacted>)"

    def encode(self, fields: TokenFields) -> Token:
        block = build_block(fields)
        token_class = int(fields.token_class)
        if token_class != TokenClass.NON_METER_SPECIFIC:
            block = self._cipher.encrypt_block(block)
        return Token(_to_digits(token_class, block), fields)

    def decode(self, digits: str) -> TokenFields:
        """The fields of a token; FormatError, AuthenticationError or UnsupportedTokenError."""
        return decode_token(digits, self)

    def decrypt_block(self, encrypted: int) -> int:
        return self._cipher.decrypt_block(encrypted)


def encode_test_token(fields: MeterTestToken) -> Token:
    """A class 1 test/display token (not encrypted, valid for every meter of the manufacturer)."""
    if not isinstance(fields, MeterTestToken):
        raise StsUsageError("only class 1 test tokens can be encoded without a decoder key")
    return Token(_to_digits(TokenClass.NON_METER_SPECIFIC, build_block(fields)), fields)


def decode_token(digits: str, coder: TokenCoder | None) -> TokenFields:
    """Decode ``digits`` (any spacing) with ``coder``'s key; class 1 tokens need no coder."""
    token_class, block = split_number(int(normalize_token(digits)))
    if token_class == TokenClass.RESERVED:
        raise UnsupportedTokenError("token class 3 is reserved")
    if token_class != TokenClass.NON_METER_SPECIFIC:
        if coder is None:
            raise StsUsageError("a decoder key is needed to decode a class 0 or class 2 token")
        block = coder.decrypt_block(block)
    return parse_block(token_class, block)
