"""Tests for protocols.sts.misty1 (MISTY1, RFC 2994; STS EA11)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.sts import misty1
from protocols.sts.misty1 import S7, S9, Misty1

RFC_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")

# RFC 2994, Appendix A: ECB encryption of two blocks under RFC_KEY.
RFC_VECTORS = [
    (0x0123456789ABCDEF, 0x8B1DA5F56AB3D07C),
    (0xFEDCBA9876543210, 0x04B68240B13BE95D),
]

keys = st.binary(min_size=16, max_size=16)
blocks = st.integers(min_value=0, max_value=2**64 - 1)


# --- A deliberately literal transcription of the RFC 2994 pseudo-code (32-bit D0/D1, the full
# --- EK[0..31] array, FO/FI/FL/FLINV as separate functions). Slow, but independent of the fast
# --- path's four-word state, FI tables and round-key tuples, so it serves as an oracle.


def _ref_fi(fi_in: int, fi_key: int) -> int:
    d9 = fi_in >> 7
    d7 = fi_in & 0x7F
    d9 = S9[d9] ^ d7
    d7 = (S7[d7] ^ d9) & 0x7F
    d7 = d7 ^ (fi_key >> 9)
    d9 = d9 ^ (fi_key & 0x1FF)
    d9 = S9[d9] ^ d7
    return (d7 << 9) | d9


def _ref_key_schedule(key: bytes) -> list[int]:
    ek = [0] * 32
    for i in range(8):
        ek[i] = key[i * 2] * 256 + key[i * 2 + 1]
    for i in range(8):
        ek[i + 8] = _ref_fi(ek[i], ek[(i + 1) % 8])
        ek[i + 16] = ek[i + 8] & 0x1FF
        ek[i + 24] = ek[i + 8] >> 9
    return ek


def _ref_fo(ek: list[int], fo_in: int, k: int) -> int:
    t0 = fo_in >> 16
    t1 = fo_in & 0xFFFF
    t0 = t0 ^ ek[k]
    t0 = _ref_fi(t0, ek[(k + 5) % 8 + 8])
    t0 = t0 ^ t1
    t1 = t1 ^ ek[(k + 2) % 8]
    t1 = _ref_fi(t1, ek[(k + 1) % 8 + 8])
    t1 = t1 ^ t0
    t0 = t0 ^ ek[(k + 7) % 8]
    t0 = _ref_fi(t0, ek[(k + 3) % 8 + 8])
    t0 = t0 ^ t1
    t1 = t1 ^ ek[(k + 4) % 8]
    return (t1 << 16) | t0


def _ref_fl(ek: list[int], fl_in: int, k: int) -> int:
    d0 = fl_in >> 16
    d1 = fl_in & 0xFFFF
    if k % 2 == 0:
        d1 = d1 ^ (d0 & ek[k // 2])
        d0 = d0 ^ (d1 | ek[(k // 2 + 6) % 8 + 8])
    else:
        d1 = d1 ^ (d0 & ek[((k - 1) // 2 + 2) % 8 + 8])
        d0 = d0 ^ (d1 | ek[((k - 1) // 2 + 4) % 8])
    return (d0 << 16) | d1


def _ref_flinv(ek: list[int], fl_in: int, k: int) -> int:
    d0 = fl_in >> 16
    d1 = fl_in & 0xFFFF
    if k % 2 == 0:
        d0 = d0 ^ (d1 | ek[(k // 2 + 6) % 8 + 8])
        d1 = d1 ^ (d0 & ek[k // 2])
    else:
        d0 = d0 ^ (d1 | ek[((k - 1) // 2 + 4) % 8])
        d1 = d1 ^ (d0 & ek[((k - 1) // 2 + 2) % 8 + 8])
    return (d0 << 16) | d1


def _ref_encrypt(key: bytes, p: int) -> int:
    ek = _ref_key_schedule(key)
    d0 = p >> 32
    d1 = p & 0xFFFFFFFF
    for r in range(0, 8, 2):
        d0 = _ref_fl(ek, d0, r)
        d1 = _ref_fl(ek, d1, r + 1)
        d1 = d1 ^ _ref_fo(ek, d0, r)
        d0 = d0 ^ _ref_fo(ek, d1, r + 1)
    d0 = _ref_fl(ek, d0, 8)
    d1 = _ref_fl(ek, d1, 9)
    return (d1 << 32) | d0


def _ref_decrypt(key: bytes, c: int) -> int:
    ek = _ref_key_schedule(key)
    d1 = c >> 32
    d0 = c & 0xFFFFFFFF
    d0 = _ref_flinv(ek, d0, 8)
    d1 = _ref_flinv(ek, d1, 9)
    for r in range(6, -1, -2):
        d0 = d0 ^ _ref_fo(ek, d1, r + 1)
        d1 = d1 ^ _ref_fo(ek, d0, r)
        d0 = _ref_flinv(ek, d0, r)
        d1 = _ref_flinv(ek, d1, r + 1)
    return (d0 << 32) | d1


# --- Known answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("plaintext", "ciphertext"), RFC_VECTORS)
def test_rfc2994_encrypt(plaintext: int, ciphertext: int) -> None:
    assert Misty1(RFC_KEY).encrypt_block(plaintext) == ciphertext


@pytest.mark.parametrize(("plaintext", "ciphertext"), RFC_VECTORS)
def test_rfc2994_decrypt(plaintext: int, ciphertext: int) -> None:
    assert Misty1(RFC_KEY).decrypt_block(ciphertext) == plaintext


@pytest.mark.parametrize(("plaintext", "ciphertext"), RFC_VECTORS)
def test_reference_reproduces_rfc2994(plaintext: int, ciphertext: int) -> None:
    # Vouches for the oracle used by test_matches_rfc_reference below.
    assert _ref_encrypt(RFC_KEY, plaintext) == ciphertext
    assert _ref_decrypt(RFC_KEY, ciphertext) == plaintext


def test_one_instance_serves_many_blocks() -> None:
    cipher = Misty1(RFC_KEY)
    for plaintext, ciphertext in RFC_VECTORS * 2:
        assert cipher.encrypt_block(plaintext) == ciphertext
        assert cipher.decrypt_block(ciphertext) == plaintext


# --- S-boxes and the FI tables ------------------------------------------------------------------


def test_sboxes_are_permutations() -> None:
    assert len(S7) == 128
    assert sorted(S7) == list(range(128))
    assert len(S9) == 512
    assert sorted(S9) == list(range(512))


def test_sboxes_match_rfc2994_tables() -> None:
    # Digests of S7 (one byte per entry) and S9 (two bytes big-endian per entry), computed from a
    # separate transcription of the RFC 2994 section 2.3 tables; a permutation check alone would
    # not notice two swapped entries.
    assert S7[:4] == (27, 50, 51, 90)
    assert S9[:4] == (451, 203, 339, 415)
    s7_digest = hashlib.sha256(bytes(S7)).hexdigest()
    s9_digest = hashlib.sha256(b"".join(v.to_bytes(2, "big") for v in S9)).hexdigest()
    assert s7_digest == "2ef2f333a517fe3bf0d0d4afd2c1d4b743ce2eb4eacd4b65b5e6dbcd4ca733e7"
    assert s9_digest == "3921809db7e7b172acd29dbb6e5478d750782b890b2bc1a232139399ab31c7c6"


@pytest.mark.parametrize("fi_key", [0x0000, 0xFFFF, 0x5A3C])
def test_fi_tables_equal_rfc_fi_for_every_input(fi_key: int) -> None:
    # The fast path computes FI(x, KI) as _FI_POST[_FI_PRE[x] ^ KI]. For a fixed KI, x running
    # over all 16-bit values reaches every entry of both tables.
    pre, post = misty1._FI_PRE, misty1._FI_POST
    assert len(pre) == len(post) == 1 << 16
    for x in range(1 << 16):
        assert post[pre[x] ^ fi_key] == _ref_fi(x, fi_key), hex(x)


# --- Properties ---------------------------------------------------------------------------------


@given(key=keys, block=blocks)
def test_decrypt_inverts_encrypt(key: bytes, block: int) -> None:
    cipher = Misty1(key)
    ciphertext = cipher.encrypt_block(block)
    assert 0 <= ciphertext < 2**64
    assert cipher.decrypt_block(ciphertext) == block
    assert cipher.encrypt_block(cipher.decrypt_block(block)) == block


@given(key=keys, block=blocks)
def test_matches_rfc_reference(key: bytes, block: int) -> None:
    cipher = Misty1(key)
    assert cipher.encrypt_block(block) == _ref_encrypt(key, block)
    assert cipher.decrypt_block(block) == _ref_decrypt(key, block)


@pytest.mark.parametrize("block", [0, 2**64 - 1])
def test_extreme_blocks_round_trip(block: int) -> None:
    cipher = Misty1(RFC_KEY)
    assert cipher.decrypt_block(cipher.encrypt_block(block)) == block


# --- Input validation and hygiene ---------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 8, 15, 17, 24, 32])
def test_wrong_key_length_is_rejected(length: int) -> None:
    with pytest.raises(ValueError, match=f"^MISTY1 key must be 16 bytes, got {length}$"):
        Misty1(bytes(length))


def test_non_bytes_key_is_rejected() -> None:
    with pytest.raises(TypeError):
        Misty1("00112233445566778899aabbccddeeff"[:16])  # type: ignore[arg-type]


@pytest.mark.parametrize("block", [-1, 2**64, 2**64 + 1, -(2**64)])
def test_out_of_range_block_is_rejected(block: int) -> None:
    cipher = Misty1(RFC_KEY)
    with pytest.raises(ValueError):
        cipher.encrypt_block(block)
    with pytest.raises(ValueError):
        cipher.decrypt_block(block)


def test_repr_and_str_do_not_reveal_the_key() -> None:
    key = bytes.fromhex("0badc0ffee5eed1234567890abcdef99")
    cipher = Misty1(key)
    for text in (repr(cipher), str(cipher), f"{cipher!r}", f"{[cipher]}"):
        assert "Misty1(key=<redacted>)" in text
        assert key.hex() not in text.lower()
        assert key.hex()[:8] not in text.lower()
    assert not hasattr(cipher, "__dict__")  # __slots__: no stray attributes holding key material
