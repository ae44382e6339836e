"""Token requests as JSON objects, with the field names of the STS test vector file.

``amr token batch`` reads one such object per line, and the human ``amr token ...`` commands build
the same objects from their options, so both paths share one validation. A request names:

* the key: ``decoder_key_hex``, or ``vending_key_hex`` with the meter's key attributes (``dkga``,
  ``iin`` + ``drn_iain`` or ``meter_pan``, ``key_type``, ``supply_group_code``, ``tariff_index``,
  ``key_revision_number``, ``base_date``) and ``encryption_algorithm``. When both are given, the
  derived key must equal the decoder key (a cheap guard against a wrong key file).
* the token: ``class`` and ``subclass`` with the subclass's fields (``amount_base_units`` or
  ``amount_field_hex``; ``mpl_watts``; ``register_hex``; ``kenho``/``nkho_hex``; ...), ``tid``
  (or ``tid_datetime_local``, or the current time) and ``rnd`` (random when absent).
* a whole key change set: ``class`` 2 without a subclass, with ``new_decoder_key_hex`` or
  ``new_key_generation_inputs`` (an object with its own vending key and attributes) and ``ken``,
  ``ro``, ``new_kt``, ``new_krn``, ``new_ti``, ``new_sgc``.

Result fields that the vector file also carries (``token``, ``data_block_hex``, ``crc_hex``, ...)
are ignored; any other unknown field is an error, so a misspelt field never silently becomes a
default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocols.sts import (
    KEN_NO_EXPIRY,
    BaseDate,
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    DecoderKey,
    DecoderKeyInputs,
    Dkga,
    EncryptionAlgorithm,
    KeyType,
    MeterPan,
    MeterTestToken,
    Set1stSectionDecoderKey,
    Set2ndSectionDecoderKey,
    Set3rdSectionDecoderKey,
    Set4thSectionDecoderKey,
    SetMaximumPhasePowerUnbalanceLimit,
    SetMaximumPowerLimit,
    SetTariffRate,
    SetWaterMeterFactor,
    StsUsageError,
    Token,
    TokenCoder,
    TokenFields,
    TransferCredit,
    VendingKey,
    decode_currency_amount,
    decode_transfer_amount,
    derive_decoder_key,
    encode_test_token,
    key_change_tokens,
    random_rnd,
    tid_of,
)

__all__ = ["RequestError", "TokenRequestResult", "build_request", "coder_for", "fields_to_json"]

INFORMATIONAL = frozenset(
    {"id", "category", "source", "verified", "expected_token_asserted_in_source", "comment",
     "amount_interpretation_per_script"}
)  # fmt: skip
RESULTS = frozenset(
    {"token", "tokens", "token_66bit_hex", "encrypted_block_hex", "data_block_hex", "crc_hex",
     "crc_c_hex", "pan_block_hex", "control_block_hex", "dkga04_hmac_message_hex",
     "hmac_sha256_output_hex", "crc_input_56bit_hex"}
)  # fmt: skip
KEY_FIELDS = frozenset(
    {"encryption_algorithm", "decoder_key_hex", "dkga", "vending_key_hex", "key_type",
     "supply_group_code", "tariff_index", "key_revision_number", "iin", "drn_iain", "meter_pan",
     "base_date"}
)  # fmt: skip
TOKEN_FIELDS = frozenset(
    {"class", "subclass", "rnd", "tid", "tid_base_date", "tid_datetime_local",
     "amount_base_units", "amount_field_hex", "se_nibble_in_rnd_position", "mpl_watts",
     "mpl_field_hex", "mppul_watts", "mppul_field_hex", "register", "register_hex", "rate",
     "water_meter_factor", "pad_hex", "mfr_code", "control_hex", "kenho", "kenlo", "ken", "ro",
     "res_3kct", "new_kt", "new_krn", "new_ti", "new_ti_binary", "new_sgc", "sgclo12", "sgcho12",
     "nkho_hex", "nklo_hex", "nkmo1_hex", "nkmo2_hex", "new_decoder_key_hex",
     "new_key_generation_inputs"}
)  # fmt: skip
KNOWN = INFORMATIONAL | RESULTS | KEY_FIELDS | TOKEN_FIELDS
# Key material: an error about these fields never quotes their value.
SECRET_FIELDS = frozenset(
    {"vending_key_hex", "decoder_key_hex", "new_decoder_key_hex", "nkho_hex", "nklo_hex",
     "nkmo1_hex", "nkmo2_hex"}
)  # fmt: skip


def _shown(name: str, value: object) -> str:
    return f"a {type(value).__name__}" if name in SECRET_FIELDS else repr(value)


class RequestError(StsUsageError):
    """A token request that cannot be served; the message names the field."""


@dataclass(frozen=True, slots=True)
class TokenRequestResult:
    tokens: list[Token]
    is_set: bool
    algorithm: EncryptionAlgorithm | None


def _get(request: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = int) -> Any:
    if name not in request:
        raise RequestError(f"missing field {name!r}")
    value = request[name]
    if isinstance(value, bool) and kind is int:
        raise RequestError(f"field {name!r} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError(f"field {name!r} must be {names}, got {_shown(name, value)}")
    return value


def _hex(request: Mapping[str, Any], name: str, bits: int) -> int:
    text = _get(request, name, str)
    try:
        value = int(text, 16)
    except ValueError:
        raise RequestError(
            f"field {name!r} must be hexadecimal, got {_shown(name, text)}"
        ) from None
    if value >> bits:
        raise RequestError(f"field {name!r} must fit in {bits} bits")
    return value


def _int_or_str(request: Mapping[str, Any], name: str) -> int:
    value = _get(request, name, (int, str))
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"field {name!r} must be a number, got {value!r}") from None


def _key_type(value: int) -> KeyType:
    try:
        return KeyType(value)
    except ValueError:
        raise RequestError(f"key type must be 0..3, got {value!r}") from None


def key_inputs(request: Mapping[str, Any]) -> DecoderKeyInputs:
    """The decoder key generation inputs named in ``request``."""
    if "meter_pan" in request:
        pan = MeterPan.parse(_get(request, "meter_pan", str), request.get("iin"))
    else:
        pan = MeterPan(_get(request, "iin", str), _get(request, "drn_iain", str))
    base = request.get("base_date", request.get("tid_base_date", 1993))
    return DecoderKeyInputs(
        pan=pan,
        supply_group_code=str(_get(request, "supply_group_code", (str, int))).zfill(6),
        tariff_index=str(request.get("tariff_index", "01")),
        key_revision_number=_int_or_str(request, "key_revision_number")
        if "key_revision_number" in request
        else 1,
        key_type=_key_type(_int_or_str(request, "key_type") if "key_type" in request else 2),
        base_date=BaseDate.parse(base),
        algorithm=EncryptionAlgorithm.parse(request.get("encryption_algorithm", "EA07")),
        dkga=Dkga.parse(str(request.get("dkga", "02"))),
    )


def _uses_vending_key(request: Mapping[str, Any]) -> bool:
    dkga = str(request.get("dkga", ""))
    return "vending_key_hex" in request and not dkga.lower().startswith("none")


def coder_for(request: Mapping[str, Any]) -> TokenCoder:
    """The coder of the key named in ``request`` (derived, or given directly)."""
    algorithm = EncryptionAlgorithm.parse(request.get("encryption_algorithm", "EA07"))
    given = None
    if "decoder_key_hex" in request:
        given = DecoderKey.from_hex(_get(request, "decoder_key_hex", str))
    if _uses_vending_key(request):
        inputs = key_inputs(request)
        derived = derive_decoder_key(
            VendingKey.from_hex(_get(request, "vending_key_hex", str)), inputs
        )
        if given is not None and given != derived:
            raise RequestError(
                "decoder_key_hex does not match the key derived from vending_key_hex and the "
                "meter's key attributes"
            )
        return TokenCoder(derived, inputs.algorithm)
    if given is None:
        raise RequestError("missing key: give decoder_key_hex, or vending_key_hex with the meter")
    return TokenCoder(given, algorithm)


def _tid(request: Mapping[str, Any], now: Callable[[], datetime]) -> int:
    if "tid" in request:
        return int(_get(request, "tid"))
    base = BaseDate.parse(request.get("tid_base_date", request.get("base_date", 1993)))
    if "tid_datetime_local" in request:
        text = _get(request, "tid_datetime_local", str)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RequestError(
                f"tid_datetime_local must be an ISO date-time, got {text!r}"
            ) from None
        return tid_of(moment, base)
    return tid_of(now(), base)


def _rnd(request: Mapping[str, Any]) -> int:
    return int(_get(request, "rnd")) if "rnd" in request else random_rnd()


def _amount(request: Mapping[str, Any], watts: str, field_hex: str) -> int:
    """A TransferAmount-coded value: base units/watts, or the raw field; both must agree."""
    value = int(_get(request, watts)) if watts in request else None
    if field_hex in request:
        from_field = decode_transfer_amount(_hex(request, field_hex, 16))
        if value is not None and value != from_field:
            raise RequestError(f"{watts}={value} and {field_hex} disagree ({from_field})")
        return from_field
    if value is None:
        raise RequestError(f"missing field: give {watts!r} or {field_hex!r}")
    return value


def _credit(request: Mapping[str, Any], subclass: int, tid: int) -> TransferCredit:
    credit_type = CreditType(subclass)
    if credit_type.is_currency:
        if "amount_field_hex" in request:
            amount = decode_currency_amount(
                _hex(request, "amount_field_hex", 16),
                int(request.get("se_nibble_in_rnd_position", 0)),
            )
            if "amount_base_units" in request and int(request["amount_base_units"]) != amount:
                raise RequestError(f"amount_base_units and amount_field_hex disagree ({amount})")
        else:
            amount = int(_get(request, "amount_base_units"))
        return TransferCredit(credit_type, amount, tid)
    amount = _amount(request, "amount_base_units", "amount_field_hex")
    return TransferCredit(credit_type, amount, tid, _rnd(request))


def _new_key(request: Mapping[str, Any]) -> tuple[DecoderKey, dict[str, Any]]:
    """The new key of a key change and the attributes that come with it."""
    spec = request.get("new_key_generation_inputs")
    if spec is not None:
        if not isinstance(spec, dict):
            raise RequestError("new_key_generation_inputs must be an object")
        unknown = sorted(set(spec) - KEY_FIELDS - RESULTS)
        if unknown:
            raise RequestError(f"unknown field(s) in new_key_generation_inputs: {unknown}")
        spec = {"encryption_algorithm": request.get("encryption_algorithm", "EA07"), **spec}
        inputs = key_inputs(spec)
        key = derive_decoder_key(VendingKey.from_hex(_get(spec, "vending_key_hex", str)), inputs)
        attributes: dict[str, Any] = {
            "new_kt": int(inputs.key_type),
            "new_krn": inputs.key_revision_number,
            "new_ti": int(inputs.tariff_index),
            "new_sgc": int(inputs.supply_group_code),
        }
        for name, derived in attributes.items():
            if name in request and _int_or_str(request, name) != derived:
                raise RequestError(
                    f"{name}={request[name]!r} contradicts new_key_generation_inputs ({derived})"
                )
        # The roll-over bit goes with a base date that moves forward (the TID rollover).
        current_base = BaseDate.parse(request.get("base_date", request.get("tid_base_date", 1993)))
        attributes["ro"] = int(inputs.base_date > current_base)
        if (
            "new_decoder_key_hex" in request
            and DecoderKey.from_hex(_get(request, "new_decoder_key_hex", str)) != key
        ):
            raise RequestError("new_decoder_key_hex does not match new_key_generation_inputs")
        return key, attributes
    return DecoderKey.from_hex(_get(request, "new_decoder_key_hex", str)), {}


def _ken(request: Mapping[str, Any]) -> int:
    if "ken" in request:
        return int(_get(request, "ken"))
    return KEN_NO_EXPIRY


def _section(request: Mapping[str, Any], subclass: int) -> TokenFields:
    """One key change section, from its own fields or cut from the new key."""
    attributes: dict[str, Any] = {}
    key: int | None = None
    if "new_decoder_key_hex" in request or "new_key_generation_inputs" in request:
        new_key, attributes = _new_key(request)
        key = int.from_bytes(new_key.material, "big")
        bits = new_key.bits
    merged = {**attributes, **request}

    def half(name: str, shift_64: int, shift_128: int) -> int:
        if name in request:
            return _hex(request, name, 32)
        if key is None:
            raise RequestError(f"missing field {name!r} (or new_decoder_key_hex)")
        return (key >> (shift_64 if bits == 64 else shift_128)) & 0xFFFF_FFFF

    ken = _ken(request)
    if subclass == 3:
        return Set1stSectionDecoderKey(
            ken_high=int(merged.get("kenho", ken >> 4)),
            new_krn=int(_get(merged, "new_krn")),
            rollover=bool(merged.get("ro", 0)),
            new_key_type=_key_type(int(_get(merged, "new_kt"))),
            nkho=half("nkho_hex", 32, 96),
            three_kct=bool(merged.get("res_3kct", 0)),
        )
    if subclass == 4:
        ti = merged.get("new_ti_binary", merged.get("new_ti"))
        if ti is None:
            raise RequestError("missing field 'new_ti_binary' (or 'new_ti')")
        return Set2ndSectionDecoderKey(
            ken_low=int(merged.get("kenlo", ken & 0xF)),
            new_tariff_index=int(ti),
            nklo=half("nklo_hex", 0, 0),
        )
    sgc = merged.get("new_sgc")
    if subclass == 8:
        low = merged.get("sgclo12", None if sgc is None else int(sgc) & 0xFFF)
        if low is None:
            raise RequestError("missing field 'sgclo12' (or 'new_sgc')")
        return Set3rdSectionDecoderKey(sgc_low=int(low), nkmo2=half("nkmo2_hex", 0, 64))
    high = merged.get("sgcho12", None if sgc is None else int(sgc) >> 12)
    if high is None:
        raise RequestError("missing field 'sgcho12' (or 'new_sgc')")
    return Set4thSectionDecoderKey(sgc_high=int(high), nkmo1=half("nkmo1_hex", 0, 32))


def _management(
    request: Mapping[str, Any], subclass: int, now: Callable[[], datetime]
) -> TokenFields:
    if subclass in (3, 4, 8, 9):
        return _section(request, subclass)
    tid, rnd = _tid(request, now), _rnd(request)
    if subclass == 0:
        return SetMaximumPowerLimit(
            tid=tid, rnd=rnd, watts=_amount(request, "mpl_watts", "mpl_field_hex")
        )
    if subclass == 1:
        if "register_hex" in request:
            register = _hex(request, "register_hex", 16)
        else:
            register = int(request.get("register", ClearCredit.ALL_REGISTERS))
        return ClearCredit(tid=tid, rnd=rnd, register=register)
    if subclass == 2:
        return SetTariffRate(tid=tid, rnd=rnd, rate=int(_get(request, "rate")))
    if subclass == 5:
        pad = _hex(request, "pad_hex", 16) if "pad_hex" in request else 0
        return ClearTamperCondition(tid=tid, rnd=rnd, pad=pad)
    if subclass == 6:
        watts = _amount(request, "mppul_watts", "mppul_field_hex")
        return SetMaximumPhasePowerUnbalanceLimit(tid=tid, rnd=rnd, watts=watts)
    if subclass == 7:
        return SetWaterMeterFactor(
            tid=tid, rnd=rnd, factor=int(_get(request, "water_meter_factor"))
        )
    raise RequestError(f"class 2 subclass {subclass} is reserved; nothing to issue")


def build_request(
    request: Mapping[str, Any], now: Callable[[], datetime] = datetime.now
) -> TokenRequestResult:
    """The token(s) a request asks for. Raises StsError (RequestError and others) when invalid."""
    if not isinstance(request, Mapping):
        raise RequestError("a request is a JSON object")
    unknown = sorted(set(request) - KNOWN)
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}")
    token_class = int(_get(request, "class"))
    if token_class == 1:
        subclass = int(request.get("subclass", 0))
        control = _hex(request, "control_hex", 36) if "control_hex" in request else 1
        test = MeterTestToken(
            control=control, mfr_code=int(_get(request, "mfr_code")), subclass=subclass
        )
        return TokenRequestResult([encode_test_token(test)], False, None)
    if token_class not in (0, 2):
        raise RequestError(f"class must be 0, 1 or 2, got {token_class}")
    coder = coder_for(request)
    if token_class == 2 and "subclass" not in request:
        new_key, attributes = _new_key(request)
        merged = {**attributes, **request}
        new_ti = merged.get("new_ti", merged.get("new_ti_binary"))
        if new_ti is None:
            raise RequestError("missing field 'new_ti' (the new key's tariff index)")
        tokens = key_change_tokens(
            coder,
            new_key,
            new_key_type=_key_type(int(_get(merged, "new_kt"))),
            new_krn=int(_get(merged, "new_krn")),
            new_tariff_index=int(new_ti),
            ken=_ken(request),
            rollover=bool(merged.get("ro", 0)),
            new_sgc=merged.get("new_sgc"),
        )
        return TokenRequestResult(tokens, True, coder.algorithm)
    subclass = int(_get(request, "subclass"))
    if token_class == 0:
        if not 0 <= subclass <= 7:
            raise RequestError(f"class 0 subclass {subclass} is reserved; nothing to issue")
        fields: TokenFields = _credit(request, subclass, _tid(request, now))
    else:
        fields = _management(request, subclass, now)
    return TokenRequestResult([coder.encode(fields)], False, coder.algorithm)


def fields_to_json(fields: TokenFields) -> dict[str, Any]:
    """A JSON-ready description of decoded fields; key halves of key change tokens are left out."""
    out: dict[str, Any] = {
        "class": int(fields.token_class),
        "subclass": int(fields.subclass),
        "type": type(fields).__name__,
    }
    secret = {"nkho", "nklo", "nkmo1", "nkmo2"}
    for item in dataclasses.fields(fields):
        if item.name in secret:
            continue
        value = getattr(fields, item.name)
        if item.name == "credit_type":
            out["credit_type"] = value.name.lower()
        elif isinstance(value, bool):
            out[item.name] = value
        else:
            out[item.name] = int(value) if isinstance(value, int) else value
    if isinstance(fields, TransferCredit):
        unit = fields.credit_type
        out["amount_base_units"] = out.pop("amount")
        out["unit"] = unit.unit
    return out
