"""STS token engine throughput on one core: tokens per second for vending and decoding.

Run from the repository root::

    python -m benchmarks.token_throughput            # full run (about 10-15 s)
    python benchmarks/token_throughput.py --quick    # about 3 s, smaller counts
    python -m benchmarks.token_throughput --json     # the same figures as JSON
    python -m benchmarks.token_throughput --check    # exit 1 if a target is missed

Everything runs in this one process on one thread. Each case encodes (or decodes) a fixed number of
tokens; the figure reported is the best of three repeats, timed with ``time.perf_counter`` with the
garbage collector disabled during the timed loop. Every timed loop builds the token fields itself
(``TransferCredit`` with a varying TID, amount and RND), as a vending point does for each sale.

Cases:

* ``baseline``: everything :meth:`TokenCoder.encode` does except the encryption (fields,
  ``build_block``, ``join_number``, 20-digit formatting, the ``Token``), measured in the same run so
  each figure can be read as a ratio to it.
* ``sta_cached``: STA (EA07), one :class:`TokenCoder` reused (round keys computed once).
* ``sta_dkga02``: STA with a DKGA02 decoder key derived for every token, each token for a different
  meter. The meters' ``DecoderKeyInputs`` are built before timing (a vending system reads the meter
  record, it does not build it per sale).
* ``misty1_cached`` and ``misty1_dkga04``: the same for MISTY1 (EA11) with DKGA04 (160-bit VK).
* ``sta_decode``: ``TokenCoder.decode`` of 20-digit strings with a cached STA key.

Targets (one core of a development machine): 20 000 STA tokens/s with a cached key and 5 000/s
with DKGA02 derivation per token. Before anything is timed the cached STA coder must reproduce a
known STS 531-1-0 token and derivation and decoding must round-trip; otherwise the run aborts
(exit status 2).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.sts import (
    CreditType,
    DecoderKey,
    DecoderKeyInputs,
    Dkga,
    EncryptionAlgorithm,
    MeterPan,
    Token,
    TokenCoder,
    TransferCredit,
    VendingKey,
    build_block,
)
from protocols.sts.keys import luhn_check_digit
from protocols.sts.number import join_number

__all__ = ["CorrectnessError", "Result", "main", "run_benchmarks"]

REPEATS = 3
FULL_COUNTS = (30_000, 8_000)  # tokens per repeat: (cached-key cases, per-token derivation cases)
QUICK_COUNTS = (6_000, 1_500)

# STS 531-1-0 compliance token (CTSA20), as in the protocols.sts docstring.
KNOWN_DECODER_KEY = "E653341F9D5BF36F"
KNOWN_FIELDS = TransferCredit(CreditType.WATER, amount=18, tid=6_472_570, rnd=5)
KNOWN_TOKEN = "73508892949665105367"
KNOWN_VENDING_KEY = "ABABABABABABABAB"  # with DRN 00000000000, SGC 123456, TI 01, KRN 1 -> the DK
VENDING_KEY_160 = bytes.fromhex("abababababababab949494949494949401234567")
SUPPLY_GROUP = "123456"

TID0 = 6_472_570  # TIDs used in the loops: TID0 .. TID0 + count, well inside 24 bits
ELECTRICITY = CreditType.ELECTRICITY


class CorrectnessError(Exception):
    """The engine gave a wrong token before timing: its figures would be meaningless."""


@dataclass(frozen=True, slots=True)
class Result:
    """One case: its best time over the repeats, and the derived figures."""

    key: str
    name: str
    tokens: int
    best_seconds: float
    target: float | None = None

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.tokens / self.best_seconds

    @property
    def us_per_token(self) -> float:
        return self.best_seconds / self.tokens * 1e6

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.rate >= self.target


# --- the timed loops -------------------------------------------------------------------------------
# Each factory returns a closure doing all of one repeat's work; it returns the last digits so the
# work is observably used.


def _no_encryption(count: int) -> Callable[[], str]:
    def run() -> str:
        digits = ""
        for i in range(count):
            fields = TransferCredit(ELECTRICITY, amount=100 + i % 9000, tid=TID0 + i, rnd=i & 15)
            block = build_block(fields)
            digits = f"{join_number(int(fields.token_class), block):020d}"
            Token(digits, fields)
        return digits

    return run


def _encode_cached(coder: TokenCoder, count: int) -> Callable[[], str]:
    def run() -> str:
        encode = coder.encode
        digits = ""
        for i in range(count):
            fields = TransferCredit(ELECTRICITY, amount=100 + i % 9000, tid=TID0 + i, rnd=i & 15)
            digits = encode(fields).digits
        return digits

    return run


def _encode_derived(
    vending_key: VendingKey, meters: Sequence[DecoderKeyInputs]
) -> Callable[[], str]:
    def run() -> str:
        derive = TokenCoder.derive
        digits = ""
        for i, meter in enumerate(meters):
            fields = TransferCredit(ELECTRICITY, amount=100 + i % 9000, tid=TID0 + i, rnd=i & 15)
            digits = derive(vending_key, meter).encode(fields).digits
        return digits

    return run


def _decode_cached(coder: TokenCoder, tokens: Sequence[str]) -> Callable[[], str]:
    def run() -> str:
        decode = coder.decode
        last = ""
        for digits in tokens:
            decode(digits)
            last = digits
        return last

    return run


def best_time(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """The shortest of ``repeats`` runs, in seconds, with the garbage collector off while timed."""
    best = math.inf
    gc_was_enabled = gc.isenabled()
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        best = min(best, elapsed)
    return best


# --- set-up and correctness -----------------------------------------------------------------------


def _meters(count: int, algorithm: EncryptionAlgorithm, dkga: Dkga) -> list[DecoderKeyInputs]:
    """``count`` different meters: 11-digit DRNs 10 digits + a valid Luhn check digit."""
    meters = []
    for n in range(count):
        body = f"{1_000_000 + n:010d}"
        pan = MeterPan.from_drn(body + str(luhn_check_digit(body)))
        meters.append(
            DecoderKeyInputs(
                pan=pan, supply_group_code=SUPPLY_GROUP, algorithm=algorithm, dkga=dkga
            )
        )
    return meters


def _round_trip(coder: TokenCoder, what: str) -> None:
    fields = TransferCredit(ELECTRICITY, amount=1234, tid=TID0, rnd=7)
    decoded = coder.decode(coder.encode(fields).digits)
    if decoded != fields:
        raise CorrectnessError(f"{what}: a token did not decode to the fields it was built from")


def check_correctness(
    *,
    sta: TokenCoder,
    sta_vk: VendingKey,
    sta_meter: DecoderKeyInputs,
    misty: TokenCoder,
    misty_vk: VendingKey,
    misty_meter: DecoderKeyInputs,
) -> dict[str, bool]:
    """Raise CorrectnessError unless the coders give the right tokens; the checks that passed."""
    token = sta.encode(KNOWN_FIELDS).digits
    if token != KNOWN_TOKEN:
        raise CorrectnessError(
            f"STA (EA07) with decoder key {KNOWN_DECODER_KEY} encoded {KNOWN_FIELDS} as {token}, "
            f"expected the STS 531-1-0 token {KNOWN_TOKEN}"
        )
    if sta.decode(KNOWN_TOKEN) != KNOWN_FIELDS:
        raise CorrectnessError(f"STA (EA07) did not decode {KNOWN_TOKEN} to {KNOWN_FIELDS}")
    reference_meter = DecoderKeyInputs(
        pan=MeterPan.from_drn("00000000000"), supply_group_code=SUPPLY_GROUP
    )
    derived = TokenCoder.derive(VendingKey.from_hex(KNOWN_VENDING_KEY), reference_meter)
    if derived.encode(KNOWN_FIELDS).digits != KNOWN_TOKEN:
        raise CorrectnessError(
            f"DKGA02 with vending key {KNOWN_VENDING_KEY} and DRN 00000000000 did not give the "
            f"decoder key that encodes {KNOWN_TOKEN}"
        )
    _round_trip(TokenCoder.derive(sta_vk, sta_meter), "STA with a DKGA02 key")
    _round_trip(misty, "MISTY1 (EA11)")
    _round_trip(TokenCoder.derive(misty_vk, misty_meter), "MISTY1 with a DKGA04 key")
    return {"known_vector": True, "dkga02_vector": True, "round_trips": True}


def run_benchmarks(quick: bool = False) -> tuple[dict[str, bool], list[Result]]:
    """Check correctness, then time the six cases. Raises CorrectnessError before any timing."""
    cached_count, derive_count = QUICK_COUNTS if quick else FULL_COUNTS

    sta = TokenCoder(DecoderKey.from_hex(KNOWN_DECODER_KEY), EncryptionAlgorithm.STA)
    sta_vk = VendingKey.from_hex(KNOWN_VENDING_KEY)
    sta_meters = _meters(derive_count, EncryptionAlgorithm.STA, Dkga.DKGA02)
    misty_vk = VendingKey(VENDING_KEY_160)
    misty_meters = _meters(derive_count, EncryptionAlgorithm.MISTY1, Dkga.DKGA04)
    misty = TokenCoder.derive(misty_vk, misty_meters[0])

    correctness = check_correctness(
        sta=sta,
        sta_vk=sta_vk,
        sta_meter=sta_meters[-1],
        misty=misty,
        misty_vk=misty_vk,
        misty_meter=misty_meters[-1],
    )

    to_decode = [
        sta.encode(
            TransferCredit(ELECTRICITY, amount=100 + i % 9000, tid=TID0 + i, rnd=i & 15)
        ).digits
        for i in range(cached_count)
    ]

    cases: list[tuple[str, str, int, Callable[[], str], float | None]] = [
        ("baseline", "no-encryption baseline", cached_count, _no_encryption(cached_count), None),
        ("sta_cached", "STA cached", cached_count, _encode_cached(sta, cached_count), 20_000.0),
        (
            "sta_dkga02",
            "STA + DKGA02 per token",
            derive_count,
            _encode_derived(sta_vk, sta_meters),
            5_000.0,
        ),
        ("misty1_cached", "MISTY1 cached", cached_count, _encode_cached(misty, cached_count), None),
        (
            "misty1_dkga04",
            "MISTY1 + DKGA04 per token",
            derive_count,
            _encode_derived(misty_vk, misty_meters),
            None,
        ),
        ("sta_decode", "STA decode, cached", cached_count, _decode_cached(sta, to_decode), None),
    ]
    results = [
        Result(key, name, count, best_time(run), target) for key, name, count, run, target in cases
    ]
    return correctness, results


# --- reporting -------------------------------------------------------------------------------------


def _baseline_rate(results: Sequence[Result]) -> float:
    return next(r.rate for r in results if r.key == "baseline")


def _verdict(result: Result) -> str:
    return "-" if result.passed is None else ("PASS" if result.passed else "FAIL")


def as_json(correctness: dict[str, bool], results: Sequence[Result], quick: bool) -> dict[str, Any]:
    baseline = _baseline_rate(results)
    return {
        "benchmark": "sts_token_throughput",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "quick": quick,
        "repeats": REPEATS,
        "correctness": {**correctness, "passed": all(correctness.values())},
        "results": [
            {
                "key": r.key,
                "name": r.name,
                "tokens": r.tokens,
                "best_seconds": r.best_seconds,
                "tokens_per_second": r.rate,
                "us_per_token": r.us_per_token,
                "ratio_to_baseline": r.rate / baseline,
                "target_tokens_per_second": r.target,
                "passed": r.passed,
            }
            for r in results
        ],
        "targets_met": all(r.passed is not False for r in results),
    }


def as_table(correctness: dict[str, bool], results: Sequence[Result], quick: bool) -> str:
    baseline = _baseline_rate(results)
    lines = [
        f"STS token throughput, one core, best of {REPEATS} repeats"
        f"{' (--quick)' if quick else ''}: {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.platform()}",
        f"correctness: known token {KNOWN_TOKEN} reproduced (STA, DK {KNOWN_DECODER_KEY}); "
        f"DKGA02 vector and round trips OK"
        if all(correctness.values())
        else "correctness: FAILED",
        "",
        f"{'benchmark':<27}{'tokens':>8}{'tokens/s':>11}{'µs/token':>10}{'x baseline':>12}"
        f"{'target':>9}  result",
    ]
    for r in results:
        target = "-" if r.target is None else f"{r.target:,.0f}"
        lines.append(
            f"{r.name:<27}{r.tokens:>8,}{r.rate:>11,.0f}{r.us_per_token:>10.2f}"
            f"{r.rate / baseline:>11.2f}x{target:>9}  {_verdict(r)}"
        )
    lines.append("")
    for r in results:
        if r.key != "baseline":
            lines.append(
                f"{r.name}: {r.rate:,.0f} tokens/s = {r.rate / baseline:.2f}x "
                f"the no-encryption baseline ({baseline:,.0f} tokens/s)"
            )
    missed = [r.name for r in results if r.passed is False]
    lines.append("")
    lines.append(f"targets: {'missed: ' + ', '.join(missed) if missed else 'all met'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.token_throughput",
        description="STS token encode/decode throughput on one core (best of 3 repeats).",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (about 3 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    try:
        correctness, results = run_benchmarks(quick=args.quick)
    except CorrectnessError as exc:
        print(f"token_throughput: aborted, wrong token before timing: {exc}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(as_json(correctness, results, args.quick), indent=2))
    else:
        print(as_table(correctness, results, args.quick))
    if args.check and any(r.passed is False for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
