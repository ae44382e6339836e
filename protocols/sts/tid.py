"""Token identifiers (IEC 62055-41 clause 6.3.5) and base dates.

A TID is the number of minutes from the base date (00:00 on 1 January of 1993, 2014 or 2035) to the
moment the token was issued, in 24 bits. 2**24 - 1 minutes is about 31.9 years, so each base date has
a last minute:

    base 1993: last TID 2024-11-24 20:15, the "2024 TID rollover" (STS Association)
    base 2014: last TID 2045-11-24 20:15
    base 2035: last TID 2066-11-24 20:15

A vending key is bound to one base date; moving a meter past its base date's last minute needs a
key change set with the roll-over bit (see :mod:`protocols.sts.keychange`). The TID is counted in the
local wall-clock time of the point of sale: the standard defines no time zone. A timezone-aware
datetime is therefore read on its own wall clock; seconds are dropped.

The meter uses the TID to refuse a replayed token (the same TID, "Used") and a token older than
every TID it remembers ("Old"); two tokens for one meter therefore need distinct TIDs, which
:func:`next_tid` guarantees for a vending point issuing several tokens in one minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import IntEnum

from .errors import TidRangeError

__all__ = ["TID_MAX", "BaseDate", "datetime_of_tid", "last_valid_datetime", "next_tid", "tid_of"]

TID_MAX = (1 << 24) - 1


class BaseDate(IntEnum):
    """The base dates of the STS TID (STS Association key management definitions, "BDT")."""

    Y1993 = 1993
    Y2014 = 2014
    Y2035 = 2035

    @property
    def start(self) -> datetime:
        return datetime(int(self), 1, 1)

    @property
    def code(self) -> str:
        """The two-digit form used by DKGA04 ("93", "14", "35")."""
        return f"{int(self) % 100:02d}"

    @property
    def successor(self) -> BaseDate | None:
        """The base date a TID roll-over moves to (None after 2035)."""
        later = [b for b in BaseDate if b > self]
        return later[0] if later else None

    @classmethod
    def parse(cls, value: int | str | BaseDate) -> BaseDate:
        try:
            year = int(value)
        except (TypeError, ValueError):
            raise TidRangeError(f"base date must be 1993, 2014 or 2035, got {value!r}") from None
        if year in (93, 14, 35):
            year += 1900 if year == 93 else 2000
        try:
            return cls(year)
        except ValueError:
            raise TidRangeError(f"base date must be 1993, 2014 or 2035, got {value!r}") from None


def _wall_clock(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, second=0, microsecond=0)


def tid_of(moment: datetime, base_date: BaseDate | int = BaseDate.Y1993) -> int:
    """The TID of ``moment`` (wall-clock minutes since the base date).

    Raises TidRangeError before the base date and after its last minute: past
    2024-11-24 20:15 a base-1993 key can no longer issue tokens (the TID would wrap to 0 and every
    meter would refuse it as Old).
    """
    base = BaseDate.parse(base_date)
    minutes = (_wall_clock(moment) - base.start) // timedelta(minutes=1)
    if minutes < 0:
        raise TidRangeError(f"{moment:%Y-%m-%d %H:%M} is before base date {int(base)}-01-01")
    if minutes > TID_MAX:
        raise TidRangeError(
            f"{moment:%Y-%m-%d %H:%M} is past the last TID of base date {int(base)} "
            f"({last_valid_datetime(base):%Y-%m-%d %H:%M}); the key needs a roll-over key change"
        )
    return minutes


def datetime_of_tid(tid: int, base_date: BaseDate | int = BaseDate.Y1993) -> datetime:
    """The naive wall-clock minute that ``tid`` stands for on ``base_date``."""
    if not 0 <= tid <= TID_MAX:
        raise TidRangeError(f"TID must be 0..{TID_MAX}, got {tid!r}")
    return BaseDate.parse(base_date).start + timedelta(minutes=tid)


def last_valid_datetime(base_date: BaseDate | int) -> datetime:
    """The last minute a key on ``base_date`` can issue a token for."""
    return datetime_of_tid(TID_MAX, base_date)


def next_tid(moment: datetime, base_date: BaseDate | int, last_issued: int | None) -> int:
    """A TID for ``moment`` that is greater than the last one issued to the same meter.

    Vending twice for one meter within a minute would otherwise give both tokens the same TID and
    the meter would refuse the second as Used.
    """
    tid = tid_of(moment, base_date)
    if last_issued is not None and tid <= last_issued:
        tid = last_issued + 1
        if tid > TID_MAX:
            raise TidRangeError("no TID left on this base date; the key needs a roll-over")
    return tid
