"""STS (IEC 62055-41) 20-digit tokens: vending, decoding and the meter-side rules. Pure, no I/O.

Vending a credit token for a meter::

    >>> from datetime import datetime
    >>> from protocols.sts import (
    ...     CreditType, DecoderKeyInputs, MeterPan, TokenCoder, TransferCredit, VendingKey, tid_of)
    >>> meter = DecoderKeyInputs(pan=MeterPan.from_drn("00000000000"), supply_group_code="123456",
    ...                          tariff_index="01", key_revision_number=1)
    >>> coder = TokenCoder.derive(VendingKey.from_hex("ABABABABABABABAB"), meter)
    >>> token = coder.encode(TransferCredit(CreditType.WATER, amount=18,  # 1.8 m3
    ...                                     tid=tid_of(datetime(2005, 4, 22, 20, 10)), rnd=5))
    >>> str(token)  # STS 531-1-0 compliance token (CTSA20)
    '7350 8892 9496 6510 5367'
    >>> coder.decode(token.digits)
    TransferCredit(credit_type=<CreditType.WATER: 1>, amount=18, tid=6472570, rnd=5)

Amounts are integers in the token's base unit (0.1 kWh, 0.1 m3, 0.1 min, watts, or 1e-5 currency)
and are rounded up in the customer's favour. Keys never show in repr, str or error messages.

Modules: :mod:`.tokens` (fields and the data block), :mod:`.codec` (encryption, 20 digits),
:mod:`.keys` (PAN, DKGA02/DKGA04), :mod:`.keychange` (key change sets), :mod:`.meter` (acceptance
rules), :mod:`.tid` (TIDs and base dates), :mod:`.amount`, :mod:`.crc`, :mod:`.number`, and the
ciphers :mod:`.sta` (EA07), :mod:`.misty1` (EA11), :mod:`.ciphers` (EA09 DEA and the interface).
"""

from __future__ import annotations

import secrets

from .amount import (
    TRANSFER_AMOUNT_MAX,
    decode_currency_amount,
    decode_transfer_amount,
    encode_currency_amount,
    encode_transfer_amount,
    round_up_transfer_amount,
)
from .ciphers import EncryptionAlgorithm, StsDeprecationWarning
from .codec import Token, TokenCoder, decode_token, encode_test_token
from .crc import crc16, crc_c
from .errors import (
    AmountRangeError,
    AuthenticationError,
    FormatError,
    KeyDerivationError,
    StsError,
    StsUsageError,
    TidRangeError,
    TokenRejected,
    UnsupportedTokenError,
)
from .keychange import (
    KEN_NO_EXPIRY,
    NewKeyAttributes,
    assemble_key_change,
    key_change_sections,
    key_change_set,
    key_change_tokens,
)
from .keys import (
    DecoderKey,
    DecoderKeyInputs,
    Dkga,
    KeyType,
    MeterPan,
    VendingKey,
    control_block,
    derive_decoder_key,
    luhn_check_digit,
    pan_block,
)
from .meter import MeterDecoder, MeterState, TokenOutcome, TokenResult
from .number import format_token, normalize_token
from .tid import TID_MAX, BaseDate, datetime_of_tid, last_valid_datetime, next_tid, tid_of
from .tokens import (
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    KeyChangeSection,
    ManagementToken,
    MeterTestToken,
    Set1stSectionDecoderKey,
    Set2ndSectionDecoderKey,
    Set3rdSectionDecoderKey,
    Set4thSectionDecoderKey,
    SetMaximumPhasePowerUnbalanceLimit,
    SetMaximumPowerLimit,
    SetTariffRate,
    SetWaterMeterFactor,
    TokenClass,
    TokenFields,
    TransferCredit,
    build_block,
    parse_block,
)


def random_rnd() -> int:
    """A random 4-bit RND for a new token (it only diversifies the encrypted block)."""
    return secrets.randbelow(16)


__all__ = [
    "KEN_NO_EXPIRY",
    "TID_MAX",
    "TRANSFER_AMOUNT_MAX",
    "AmountRangeError",
    "AuthenticationError",
    "BaseDate",
    "ClearCredit",
    "ClearTamperCondition",
    "CreditType",
    "DecoderKey",
    "DecoderKeyInputs",
    "Dkga",
    "EncryptionAlgorithm",
    "FormatError",
    "KeyChangeSection",
    "KeyDerivationError",
    "KeyType",
    "ManagementToken",
    "MeterDecoder",
    "MeterPan",
    "MeterState",
    "MeterTestToken",
    "NewKeyAttributes",
    "Set1stSectionDecoderKey",
    "Set2ndSectionDecoderKey",
    "Set3rdSectionDecoderKey",
    "Set4thSectionDecoderKey",
    "SetMaximumPhasePowerUnbalanceLimit",
    "SetMaximumPowerLimit",
    "SetTariffRate",
    "SetWaterMeterFactor",
    "StsDeprecationWarning",
    "StsError",
    "StsUsageError",
    "TidRangeError",
    "Token",
    "TokenClass",
    "TokenCoder",
    "TokenFields",
    "TokenOutcome",
    "TokenRejected",
    "TokenResult",
    "TransferCredit",
    "UnsupportedTokenError",
    "VendingKey",
    "assemble_key_change",
    "build_block",
    "control_block",
    "crc16",
    "crc_c",
    "datetime_of_tid",
    "decode_currency_amount",
    "decode_token",
    "decode_transfer_amount",
    "derive_decoder_key",
    "encode_currency_amount",
    "encode_test_token",
    "encode_transfer_amount",
    "format_token",
    "key_change_sections",
    "key_change_set",
    "key_change_tokens",
    "last_valid_datetime",
    "luhn_check_digit",
    "next_tid",
    "normalize_token",
    "pan_block",
    "parse_block",
    "random_rnd",
    "round_up_transfer_amount",
    "tid_of",
]
