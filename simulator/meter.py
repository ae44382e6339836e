"""A virtual STS prepaid meter: energy, credit, relay, alarms, and the STS token decoder.

Theory of operation. The meter is advanced in steps of simulated time (``advance(now_s)``, at most
one minute per step); in each step it draws the household's power from its load profile, counts the
energy into the total and into the register of the TOU band in force, and takes it off the credit.

    credit > low threshold ............................ relay closed
    0 < credit <= low threshold ....................... low_credit
    -emergency limit < credit <= 0 .................... emergency credit in use, relay closed
    credit <= -emergency limit ........................ credit_exhausted: relay opens, except in
                                                        friendly hours (night, chosen days)
    power > maximum power limit ....................... over_power: relay opens for 60 s, retries
    remote disconnect command ......................... relay opens until a connect command

A token (over Modbus or at the "keypad") goes through :class:`protocols.sts.MeterDecoder`, exactly
as a meter's firmware would: Accept, Old, Used, CRC ... are the standard's results, and an accepted
credit token raises the credit at once (closing the relay if credit was the reason it was open).

Nothing here does I/O or reads a clock: transports and the fleet pass the time in.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from protocols.sts import (
    ClearCredit,
    ClearTamperCondition,
    CreditType,
    DecoderKey,
    EncryptionAlgorithm,
    KeyType,
    MeterDecoder,
    MeterState,
    SetMaximumPhasePowerUnbalanceLimit,
    SetMaximumPowerLimit,
    SetTariffRate,
    SetWaterMeterFactor,
    TokenOutcome,
    TokenResult,
    TransferCredit,
)
from protocols.sts.tid import BaseDate

from .load import LoadProfile
from .tou import TouTable

__all__ = ["Faults", "MeterIdentity", "RelayState", "VirtualMeter"]

WH_PER_TENTH_KWH = 100
OVER_POWER_RETRY_S = 60.0
STEP_S = 60.0


class RelayState:
    CLOSED = 0
    OPEN = 1


@dataclass(slots=True)
class Faults:
    """Faults switchable at run time (the simulator's control API flips them)."""

    no_answer: bool = False
    corrupt_checksum: bool = False
    slow_turnaround_ms: float = 0.0
    intermittent: float = 0.0  # probability that a request goes unanswered
    relay_fault: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "no_answer": self.no_answer,
            "corrupt_checksum": self.corrupt_checksum,
            "slow_turnaround_ms": self.slow_turnaround_ms,
            "intermittent": self.intermittent,
            "relay_fault": self.relay_fault,
        }


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    drn: str
    manufacturer_code: int
    supply_group_code: str
    tariff_index: int
    key_revision_number: int
    key_type: KeyType
    base_date: BaseDate
    algorithm: EncryptionAlgorithm
    firmware_version: int = 100


@dataclass(slots=True)
class VirtualMeter:
    """One simulated meter. Energy and credit are kept in Wh (floats); registers round them."""

    identity: MeterIdentity
    key: DecoderKey = field(repr=False)
    load: LoadProfile = field(default_factory=LoadProfile)
    seed: int = 0
    credit_wh: float = 50_000.0
    now_s: float = 0.0  # the meter's own clock
    clock_offset_s: float = 0.0  # how far the meter's clock was set away from simulated time
    utc_offset_min: int = 0
    energy_wh: float = 0.0
    band_wh: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    history_wh: list[float] = field(default_factory=lambda: [0.0] * 12)
    power_w: float = 0.0
    voltage_v: float = 230.0
    frequency_hz: float = 50.0
    relay: int = RelayState.CLOSED
    remote_disconnect: bool = False
    over_power_until_s: float = 0.0
    max_power_limit_w: int = 0
    emergency_credit_limit_wh: float = 5_000.0
    low_credit_threshold_wh: float = 10_000.0
    credit_limit_wh: float = 0.0  # 0: no limit
    friendly_hours_enabled: bool = True
    friendly_start_hour: int = 18
    friendly_end_hour: int = 6
    friendly_days: int = 0b0110_0000  # Saturday and Sunday
    tamper: bool = False
    cover_open: bool = False
    power_fail: bool = False
    relay_command: int = 0
    tou: TouTable = field(default_factory=TouTable)
    tou_pending: TouTable | None = None
    token_result: int = 0
    token_last_tid: int = 0
    token_last_amount_wh: float = 0.0
    token_count: int = 0
    faults: Faults = field(default_factory=Faults)
    staged: dict[str, int] = field(
        default_factory=dict
    )  # holding registers written, not yet applied
    last_trip_s: float | None = None  # when the relay last opened (simulated UTC s), None: never
    last_close_s: float | None = None  # when the relay last closed again
    _decoder: MeterDecoder | None = field(default=None, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _month: tuple[int, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        identity = self.identity
        self._decoder = MeterDecoder(
            MeterState(
                key=self.key,
                algorithm=identity.algorithm,
                key_type=identity.key_type,
                key_revision_number=identity.key_revision_number,
                tariff_index=identity.tariff_index,
                supply_group_code=int(identity.supply_group_code),
                base_date=identity.base_date,
                mfr_code=identity.manufacturer_code,
            )
        )

    # -- state the registers show -------------------------------------------------------------

    @property
    def decoder(self) -> MeterDecoder:
        assert self._decoder is not None
        return self._decoder

    @property
    def local_s(self) -> float:
        return self.now_s + 60 * self.utc_offset_min

    @property
    def band(self) -> int:
        return self.tou.band_at(self.local_s)

    @property
    def emergency_remaining_wh(self) -> float:
        return max(0.0, self.emergency_credit_limit_wh + min(self.credit_wh, 0.0))

    @property
    def credit_exhausted(self) -> bool:
        return self.credit_wh <= -self.emergency_credit_limit_wh

    @property
    def friendly_now(self) -> bool:
        if not self.friendly_hours_enabled:
            return False
        local = self.local_s
        weekday = (int(local // 86_400) + 3) % 7
        if self.friendly_days >> weekday & 1:
            return True
        hour = int(local % 86_400) // 3600
        start, end = self.friendly_start_hour, self.friendly_end_hour
        return start <= hour < end if start <= end else hour >= start or hour < end

    def status_flags(self) -> set[str]:
        flags = set()
        if self.credit_wh <= self.low_credit_threshold_wh:
            flags.add("low_credit")
        if self.credit_exhausted:
            flags.add("credit_exhausted")
        if self.credit_wh < 0 and not self.credit_exhausted:
            flags.add("emergency_credit_active")
        if self.tamper:
            flags.add("tamper")
        if self.cover_open:
            flags.add("cover_open")
        if self.faults.relay_fault:
            flags.add("relay_fault")
        if self.now_s < self.over_power_until_s:
            flags.add("over_power")
        if self.power_fail:
            flags.add("power_fail")
        if self.friendly_now:
            flags.add("friendly_hours_active")
        return flags

    # -- time -----------------------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Run the meter forward to simulated time ``now_s`` (seconds since 1970, UTC).

        The meter's own clock is the simulated time plus the offset its clock was set by.
        """
        if self._month is None:
            self._month = self._local_month()
        target = now_s + self.clock_offset_s
        while self.now_s < target:
            step = min(STEP_S, target - self.now_s)
            self._step(step)
            self.now_s += step
            month = self._local_month()
            if month != self._month:
                self.history_wh = [0.0, *self.history_wh[:-1]]
                self._month = month
        self._update_relay()

    def set_clock(self, now_s: float) -> None:
        """The meter's clock is set (time sync): no energy is counted for the jump, and the
        clock keeps the new time from then on."""
        self.clock_offset_s += now_s - self.now_s
        self.now_s = now_s
        self._month = self._local_month()
        self._update_relay()

    def _local_month(self) -> tuple[int, int]:
        moment = datetime.fromtimestamp(self.local_s, UTC)
        return moment.year, moment.month

    def _step(self, seconds: float) -> None:
        if self.tou_pending is not None and self.now_s >= self.tou_pending.activation_s:
            self.tou, self.tou_pending = self.tou_pending, None
        self._update_relay()
        if self.power_fail:
            self.power_w = 0.0
            return
        demand = self.load.sample_w(self.local_s, self._rng)
        if self.max_power_limit_w and demand > self.max_power_limit_w and self.relay == 0:
            self.over_power_until_s = self.now_s + OVER_POWER_RETRY_S
            self._update_relay()
        self.power_w = demand if self.relay == RelayState.CLOSED else 0.0
        self.voltage_v = 230.0 + self._rng.gauss(0.0, 1.5) - self.power_w / 2000.0
        self.frequency_hz = 50.0 + self._rng.gauss(0.0, 0.02)
        energy = self.power_w * seconds / 3600.0
        self.energy_wh += energy
        self.band_wh[self.band - 1] += energy
        self.history_wh[0] += energy
        self.credit_wh -= energy

    def _update_relay(self) -> None:
        if self.faults.relay_fault:
            return  # the relay is stuck where it is
        should_open = (
            self.remote_disconnect
            or self.now_s < self.over_power_until_s
            or (self.credit_exhausted and not self.friendly_now)
        )
        relay = RelayState.OPEN if should_open else RelayState.CLOSED
        if relay != self.relay:  # DL/T 645 reports these as the last trip / close records
            if relay == RelayState.OPEN:
                self.last_trip_s = self.now_s
            else:
                self.last_close_s = self.now_s
        self.relay = relay

    # -- commands -------------------------------------------------------------------------------

    def command_relay(self, command: int) -> None:
        """1 disconnect, 2 connect (the remote relay command register)."""
        self.relay_command = command
        if command == 1:
            self.remote_disconnect = True
        elif command == 2:
            self.remote_disconnect = False
        self._update_relay()

    def enter_token(self, digits: str) -> TokenOutcome:
        """A token from the keypad or over the wire, judged by the STS meter-side rules."""
        decoder = self.decoder
        state = decoder.state
        tenths = int(self.credit_wh // WH_PER_TENTH_KWH)
        state.credit[CreditType.ELECTRICITY] = tenths
        limit = self.credit_limit_wh
        state.credit_register_max = int(limit // WH_PER_TENTH_KWH) if limit else 10**12
        before = dict(state.credit)
        outcome = decoder.enter(digits, now_s=self.now_s)
        self.token_result = int(outcome.result)
        if outcome.result is TokenResult.ACCEPT:
            self.token_count = (self.token_count + 1) & 0xFFFF
            fields = outcome.fields
            if isinstance(fields, TransferCredit):
                added = state.credit[CreditType.ELECTRICITY] - before[CreditType.ELECTRICITY]
                self.credit_wh += added * WH_PER_TENTH_KWH
                self.token_last_amount_wh = fields.amount * WH_PER_TENTH_KWH
                self.token_last_tid = fields.tid
            elif isinstance(fields, ClearCredit):
                self.credit_wh = 0.0
                self.token_last_tid = fields.tid
            elif isinstance(fields, SetMaximumPowerLimit):
                self.max_power_limit_w = fields.watts
                self.token_last_tid = fields.tid
            elif isinstance(fields, ClearTamperCondition):
                self.tamper = False
                self.cover_open = False
                self.token_last_tid = fields.tid
            elif isinstance(fields, SetTariffRate | SetMaximumPhasePowerUnbalanceLimit
                            | SetWaterMeterFactor):  # fmt: skip
                self.token_last_tid = fields.tid
        self._update_relay()
        return outcome

    def credit_kwh(self) -> Decimal:
        return (Decimal(self.credit_wh) / 1000).quantize(Decimal("0.01"))


def epoch_seconds(moment: datetime) -> float:
    """Seconds since 1970 of an aware datetime (naive ones are taken as UTC)."""
    return float(calendar.timegm(moment.utctimetuple())) + moment.microsecond / 1e6
