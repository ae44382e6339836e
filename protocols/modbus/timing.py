"""RS485 character timing of Modbus RTU (Modbus over Serial Line V1.02, 2.5.1 and 2.5.1.1).

An RTU character is 11 bits (start, 8 data, parity or a second stop bit, stop). Frames are
separated by at least 3.5 character times of silence (t3.5); above 19 200 baud the specification
recommends a fixed 1.75 ms instead. DL/T 645 lines use the same 11-bit characters.
"""

from __future__ import annotations

__all__ = ["character_time_s", "silent_interval_s"]


def character_time_s(baud: int) -> float:
    """One character on the line: 11 bits at ``baud``."""
    return 11.0 / baud


def silent_interval_s(baud: int) -> float:
    """t3.5: 3.5 characters, fixed at 1.75 ms above 19 200 baud."""
    return 0.00175 if baud > 19_200 else 3.5 * character_time_s(baud)
