"""The meter side: what a prepaid meter keeps and how it accepts or refuses a token.

Theory of operation (IEC 62055-41 clause 7; the order of the TID checks is that of shipping meter
firmware, since the standard's order is not public)::

    20 digits --FormatError--> class bits
    class 1 (test) ....... CRC --CRCError--> MfrCode --MfrCodeError--> Accept (the meter runs the test)
    class 0 / 2 .......... decrypt with the decoder key, CRC --CRCError-->
      key change section . key type rules --KeyTypeError--> buffer; set complete? --> new key,
                           KRN, KT, TI, KEN (and SGC); RO=1 clears the TID memory --> Accept
                           (incomplete: FirstKctEntered / SecondKctEntered)
      TID tokens ......... (TID >> 16) > KEN --KeyExpiredError-->
                           TID in memory --UsedError-->
                           TID < oldest remembered --OldError-->
                           credit on a DDTK --DDTKError-->
                           credit type not metered / register not known --FunctionError / RangeError-->
                           register would overflow --OverflowError-->
                           remember TID (dropping the oldest), apply --> Accept

The TID memory holds the most recent ``tid_memory_size`` TIDs; it starts filled with zeros (a meter
made on a later base date pre-fills it, as the STS Association describes), so every TID above zero
is new to a fresh meter. Key change sections may be entered in any order; they wait in a buffer for
``key_change_timeout_s`` seconds from the first one.

Result codes are numbered as in one manufacturer's published token-result register (Conlog BEC62);
the names are the standard's. A meter's token-result register (over Modbus, say) can carry them
as they are.

Everything here is pure: the caller passes the time (``now_s``) and applies physical effects (relay,
display) from the returned outcome.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import IntEnum

from .ciphers import EncryptionAlgorithm
from .codec import TokenCoder, decode_token
from .errors import AuthenticationError, StsError, TokenRejected, UnsupportedTokenError
from .keychange import KEN_NO_EXPIRY, NewKeyAttributes, assemble_key_change
from .keys import DecoderKey, KeyType
from .number import normalize_token, split_number
from .tid import BaseDate
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
    TokenFields,
    TransferCredit,
)

__all__ = ["MeterDecoder", "MeterState", "TokenOutcome", "TokenResult"]

DEFAULT_TID_MEMORY = 50
DEFAULT_KEY_CHANGE_TIMEOUT_S = 120.0


class TokenResult(IntEnum):
    """Token entry results (names after IEC 62055-41; numbers after the Conlog BEC62 register)."""

    ACCEPT = 1
    FIRST_KCT_ENTERED = 2
    SECOND_KCT_ENTERED = 3
    OVERFLOW = 4
    KEY_TYPE = 5
    FORMAT = 6
    RANGE = 7
    FUNCTION = 8
    OLD = 9
    USED = 10
    KEY_EXPIRED = 11
    DDTK = 12
    CRC = 13
    MFR_CODE = 14

    @property
    def accepted(self) -> bool:
        return self in (
            TokenResult.ACCEPT,
            TokenResult.FIRST_KCT_ENTERED,
            TokenResult.SECOND_KCT_ENTERED,
        )

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    TokenResult.ACCEPT: "Accept",
    TokenResult.FIRST_KCT_ENTERED: "1st key change token entered",
    TokenResult.SECOND_KCT_ENTERED: "further key change token entered",
    TokenResult.OVERFLOW: "OverflowError",
    TokenResult.KEY_TYPE: "KeyTypeError",
    TokenResult.FORMAT: "FormatError",
    TokenResult.RANGE: "RangeError",
    TokenResult.FUNCTION: "FunctionError",
    TokenResult.OLD: "OldError",
    TokenResult.USED: "UsedError",
    TokenResult.KEY_EXPIRED: "KeyExpiredError",
    TokenResult.DDTK: "DDTKError",
    TokenResult.CRC: "CRCError",
    TokenResult.MFR_CODE: "MfrCodeError",
}


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """What entering one token did."""

    result: TokenResult
    fields: TokenFields | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.result.accepted


@dataclass(slots=True)
class MeterState:
    """The STS state a meter keeps in non-volatile memory (keys are never shown in repr)."""

    key: DecoderKey = field(repr=False)
    algorithm: EncryptionAlgorithm = EncryptionAlgorithm.STA
    key_type: KeyType = KeyType.DUTK
    key_revision_number: int = 1
    tariff_index: int = 1
    supply_group_code: int = 0
    ken: int = KEN_NO_EXPIRY
    base_date: BaseDate = BaseDate.Y1993
    mfr_code: int = 0
    tid_memory_size: int = DEFAULT_TID_MEMORY
    tid_memory: list[int] = field(default_factory=list)
    credit: dict[CreditType, int] = field(default_factory=dict)
    metered: frozenset[CreditType] = frozenset({CreditType.ELECTRICITY})
    credit_register_max: int = 10**12
    max_power_limit_w: int | None = None
    phase_unbalance_limit_w: int | None = None
    tariff_rate: int | None = None
    water_meter_factor: int | None = None
    tamper: bool = False

    def __post_init__(self) -> None:
        if not self.tid_memory:
            self.tid_memory = [0] * self.tid_memory_size
        self.tid_memory.sort()
        for credit_type in self.metered:
            self.credit.setdefault(credit_type, 0)


class MeterDecoder:
    """Accepts or refuses tokens exactly as an STS meter does, keeping :class:`MeterState`."""

    def __init__(
        self, state: MeterState, key_change_timeout_s: float = DEFAULT_KEY_CHANGE_TIMEOUT_S
    ) -> None:
        self.state = state
        self.key_change_timeout_s = key_change_timeout_s
        self._coder = TokenCoder(state.key, state.algorithm)
        self._pending: dict[int, KeyChangeSection] = {}
        self._pending_since_s = 0.0

    def __repr__(self) -> str:
        return f"MeterDecoder({self.state!r})"

    @property
    def pending_key_change_sections(self) -> frozenset[int]:
        return frozenset(self._pending)

    def enter(self, token: str, now_s: float = 0.0) -> TokenOutcome:
        """Enter one token (keypad or remote); never raises for a bad token."""
        try:
            digits = normalize_token(token)
        except TokenRejected as exc:
            return TokenOutcome(TokenResult.FORMAT, detail=str(exc))
        token_class, _ = split_number(int(digits))
        try:
            fields = decode_token(digits, None if token_class == 1 else self._coder)
        except AuthenticationError as exc:
            return TokenOutcome(TokenResult.CRC, detail=str(exc))
        except UnsupportedTokenError as exc:
            return TokenOutcome(TokenResult.FUNCTION, detail=str(exc))
        except StsError as exc:
            return TokenOutcome(TokenResult.FORMAT, detail=str(exc))
        if isinstance(fields, MeterTestToken):
            if fields.mfr_code != self.state.mfr_code:
                return TokenOutcome(TokenResult.MFR_CODE, fields, "token is for another maker")
            return TokenOutcome(TokenResult.ACCEPT, fields)
        if isinstance(
            fields,
            Set1stSectionDecoderKey
            | Set2ndSectionDecoderKey
            | Set3rdSectionDecoderKey
            | Set4thSectionDecoderKey,
        ):
            return self._key_change(fields, now_s)
        return self._tid_token(fields)

    # -- key change --------------------------------------------------------------------------

    def _key_change(self, section: KeyChangeSection, now_s: float) -> TokenOutcome:
        if self._pending and now_s - self._pending_since_s > self.key_change_timeout_s:
            self._pending.clear()
        if isinstance(section, Set1stSectionDecoderKey):
            problem = self._key_type_problem(section.new_key_type)
            if problem:
                return TokenOutcome(TokenResult.KEY_TYPE, section, problem)
        if not self._pending:
            self._pending_since_s = now_s
        self._pending[section.subclass] = section
        change = assemble_key_change(self._pending)
        if change is None:
            first = len(self._pending) == 1
            result = TokenResult.FIRST_KCT_ENTERED if first else TokenResult.SECOND_KCT_ENTERED
            return TokenOutcome(result, section)
        self._pending.clear()
        self._apply_key_change(change)
        return TokenOutcome(TokenResult.ACCEPT, section)

    def _key_type_problem(self, new_key_type: KeyType) -> str:
        if new_key_type is KeyType.DITK and self.state.key_type is not KeyType.DITK:
            return "an initialisation key (KT 0) can only replace an initialisation key"
        return ""

    def _apply_key_change(self, change: NewKeyAttributes) -> None:
        state = self.state
        algorithm = state.algorithm
        if change.key.bits == 128:
            algorithm = EncryptionAlgorithm.MISTY1
        elif algorithm is EncryptionAlgorithm.MISTY1:
            algorithm = EncryptionAlgorithm.STA
        self._coder = TokenCoder(change.key, algorithm)
        state.key = change.key
        state.algorithm = algorithm
        state.key_type = change.key_type
        state.key_revision_number = change.key_revision_number
        state.tariff_index = change.tariff_index
        state.ken = change.ken
        # A 2-token set carries no SGC: meters that take only 2 tokens report SGC 0 afterwards.
        state.supply_group_code = change.supply_group_code or 0
        if change.rollover:
            state.tid_memory = [0] * state.tid_memory_size
            successor = state.base_date.successor
            if successor is not None:
                state.base_date = successor

    # -- tokens with a TID -------------------------------------------------------------------

    def _tid_token(self, fields: TransferCredit | ManagementToken) -> TokenOutcome:
        state = self.state
        tid = fields.tid
        if (tid >> 16) > state.ken:
            return TokenOutcome(TokenResult.KEY_EXPIRED, fields, "token is past the key's expiry")
        index = bisect.bisect_left(state.tid_memory, tid)
        if index < len(state.tid_memory) and state.tid_memory[index] == tid:
            return TokenOutcome(TokenResult.USED, fields, "token was used before")
        if index == 0:
            return TokenOutcome(TokenResult.OLD, fields, "token is older than the TID memory")
        refusal = self._refusal(fields)
        if refusal is not None:
            return refusal
        state.tid_memory.pop(0)
        bisect.insort(state.tid_memory, tid)
        self._apply(fields)
        return TokenOutcome(TokenResult.ACCEPT, fields)

    def _refusal(self, fields: TokenFields) -> TokenOutcome | None:
        state = self.state
        if isinstance(fields, TransferCredit):
            if state.key_type is KeyType.DDTK:
                return TokenOutcome(TokenResult.DDTK, fields, "a default key cannot take credit")
            if fields.credit_type not in state.metered:
                return TokenOutcome(TokenResult.FUNCTION, fields, "this meter has no such register")
            if state.credit[fields.credit_type] + fields.amount > state.credit_register_max:
                return TokenOutcome(TokenResult.OVERFLOW, fields, "credit register would overflow")
            if state.credit[fields.credit_type] + fields.amount < 0:
                return TokenOutcome(TokenResult.RANGE, fields, "credit would become negative")
        if (
            isinstance(fields, ClearCredit)
            and fields.register != ClearCredit.ALL_REGISTERS
            and (fields.register > 7 or CreditType(fields.register) not in state.metered)
        ):
            return TokenOutcome(TokenResult.RANGE, fields, "no such credit register")
        return None

    def _apply(self, fields: TokenFields) -> None:
        state = self.state
        if isinstance(fields, TransferCredit):
            state.credit[fields.credit_type] += fields.amount
        elif isinstance(fields, ClearCredit):
            if fields.register == ClearCredit.ALL_REGISTERS:
                for credit_type in state.credit:
                    state.credit[credit_type] = 0
            else:
                state.credit[CreditType(fields.register)] = 0
        elif isinstance(fields, SetMaximumPowerLimit):
            state.max_power_limit_w = fields.watts
        elif isinstance(fields, SetMaximumPhasePowerUnbalanceLimit):
            state.phase_unbalance_limit_w = fields.watts
        elif isinstance(fields, ClearTamperCondition):
            state.tamper = False
        elif isinstance(fields, SetTariffRate):
            state.tariff_rate = fields.rate
        elif isinstance(fields, SetWaterMeterFactor):
            state.water_meter_factor = fields.factor
