"""Virtual meters and wall-clock helpers shared by the DL/T 645 and PLC module tests."""

from __future__ import annotations

from datetime import UTC, datetime

from protocols.sts import (
    BaseDate,
    DecoderKeyInputs,
    EncryptionAlgorithm,
    KeyType,
    MeterPan,
    VendingKey,
    derive_decoder_key,
    luhn_check_digit,
)
from simulator.dlt645_bus import Dlt645Meter
from simulator.load import LoadProfile
from simulator.meter import MeterIdentity, VirtualMeter, epoch_seconds

VK = VendingKey.from_hex("ABABABABABABABAB")
# Tuesday 2025-03-04 10:00 UTC: outside the default friendly hours (18:00-06:00, weekends)
START_LOCAL = datetime(2025, 3, 4, 10, 0)
START = epoch_seconds(START_LOCAL.replace(tzinfo=UTC))


def at(local: datetime) -> float:
    """Simulated UTC seconds of a naive wall-clock time (the meters run on UTC here)."""
    return epoch_seconds(local.replace(tzinfo=UTC))


def virtual_meter(
    drn: str = "12000010012",
    credit_kwh: float = 40.0,
    load: LoadProfile | None = None,
    now_s: float = START,
) -> VirtualMeter:
    inputs = DecoderKeyInputs(pan=MeterPan.from_drn(drn), supply_group_code="123456",
                              base_date=BaseDate.Y2014)  # fmt: skip
    identity = MeterIdentity(drn, 12, "123456", 1, 1, KeyType.DUTK, BaseDate.Y2014,
                             EncryptionAlgorithm.STA)  # fmt: skip
    return VirtualMeter(identity, derive_decoder_key(VK, inputs),
                        load=load or LoadProfile(base_w=1000, peak_w=0, noise=0), seed=7,
                        credit_wh=credit_kwh * 1000, now_s=now_s)  # fmt: skip


def dlt645_meter(
    address: str = "000000000001",
    credit_kwh: float = 40.0,
    load: LoadProfile | None = None,
    now_s: float = START,
) -> Dlt645Meter:
    """A DL/T 645 meter at ``address`` (its DRN's serial number is the address's last 8 digits)."""
    body = f"12{int(address) % 100_000_000:08d}"
    drn = body + str(luhn_check_digit(body))
    return Dlt645Meter(address, virtual_meter(drn, credit_kwh, load, now_s))
