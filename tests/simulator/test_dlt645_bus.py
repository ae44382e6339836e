"""DL/T 645-2007 meters on a simulated RS485 line, as a head-end or a concentrator sees them.

Every test talks to the bus through its Twisted protocol over a StringTransport, on a task.Clock:
frames in, replies out, with the line timing a real 2400-baud line would have.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from protocols.dlt645 import (
    WILDCARD_ADDRESS,
    Acknowledgement,
    BroadcastTimeSync,
    ChecksumError,
    ErrorReply,
    Frame,
    Password,
    ReadAddressReply,
    ReadAddressRequest,
    ReadReply,
    ReadRequest,
    RelayCommand,
    RelayControl,
    Reply,
    decode_frame,
    encode_frame,
    parse_reply,
)
from simulator.dlt645_bus import Dlt645Bus, Dlt645BusProtocol, Dlt645Meter
from simulator.load import LoadProfile
from simulator.meter import RelayState
from simulator.modbus_bus import character_time_s
from simulator.tou import TouTable

from .meters import START, START_LOCAL, at, dlt645_meter

PASSWORD = Password(0x03, "123456")
OPERATOR = "12345678"
LATER = START_LOCAL + timedelta(hours=1)


class Line:
    """A master on the RS485 line: sends frames, waits on the clock, reads what comes back."""

    def __init__(self, *meters: Dlt645Meter, baud: int = 2400, turnaround_ms: float = 50.0):
        self.clock = task.Clock()
        self.sim_now = START  # the fleet's simulated clock; the meters advance to it on each frame
        self.bus = Dlt645Bus("dlt1", {m.address: m for m in meters}, self.clock,
                             lambda: self.sim_now, baud=baud, turnaround_ms=turnaround_ms,
                             seed=1)  # fmt: skip
        self.protocol = Dlt645BusProtocol(self.bus)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)  # type: ignore[no-untyped-call]  # Twisted

    def send(self, frame: Frame, preamble: int = 4) -> None:
        self.protocol.dataReceived(encode_frame(frame, preamble))

    def received(self) -> bytes:
        raw = self.transport.value()
        self.transport.clear()
        return bytes(raw)

    def ask(self, frame: Frame, wait_s: float = 5.0) -> Reply | None:
        self.send(frame)
        self.clock.advance(wait_s)
        raw = self.received()
        return parse_reply(decode_frame(raw)) if raw else None

    def read(self, address: str, di: str) -> ReadReply | ErrorReply:
        reply = self.ask(ReadRequest(address, di).to_frame())
        assert isinstance(reply, ReadReply | ErrorReply), reply
        return reply

    def value(self, address: str, di: str) -> object:
        reply = self.read(address, di)
        assert isinstance(reply, ReadReply), reply
        return reply.value()

    def relay(
        self,
        address: str,
        command: RelayCommand,
        password: Password = PASSWORD,
        valid_until: datetime = LATER,
    ) -> Reply | None:
        return self.ask(RelayControl(address, password, OPERATOR, command, valid_until).to_frame())


def kwh(wh: float) -> Decimal:
    """What a register shows for ``wh``: kWh cut to two decimals."""
    return Decimal(int(wh // 10)).scaleb(-2)


# -- reads --------------------------------------------------------------------------------------


def test_energy_registers_show_the_meters_consumption_per_tariff_band() -> None:
    meter = dlt645_meter(load=LoadProfile(base_w=1200, peak_w=0, noise=0))
    # weekdays: band 2 until 10:30, band 3 after; the meter runs 10:00-12:00 at 1.2 kW
    meter.meter.tou = TouTable(1, weekday=((0, 2), (630, 3)))
    line = Line(meter)
    line.sim_now = START + 2 * 3600
    block = line.value("000000000001", "0001FF00")
    assert block == {"total": Decimal("2.40"), "tariff_1": Decimal("0.00"),
                     "tariff_2": Decimal("0.60"), "tariff_3": Decimal("1.80"),
                     "tariff_4": Decimal("0.00")}  # fmt: skip
    assert line.value("000000000001", "00000000") == Decimal("2.40")  # combined active
    assert line.value("000000000001", "00010000") == Decimal("2.40")  # forward active
    assert line.value("000000000001", "00010300") == Decimal("1.80")
    assert line.value("000000000001", "00020000") == Decimal("0.00")  # nothing exported


def test_remaining_energy_while_in_credit_and_overdraft_once_it_is_used_up() -> None:
    in_credit = dlt645_meter("000000000001", credit_kwh=12.34)
    overdrawn = dlt645_meter("000000000002", credit_kwh=-3.21)
    line = Line(in_credit, overdrawn)
    assert line.value("000000000001", "00900100") == Decimal("12.34")
    assert line.value("000000000001", "00900101") == Decimal("0.00")
    assert line.value("000000000002", "00900100") == Decimal("0.00")
    assert line.value("000000000002", "00900101") == Decimal("3.21")
    line.sim_now = START + 3600  # an hour at 1 kW comes off the credit
    assert line.value("000000000001", "00900100") == kwh(in_credit.meter.credit_wh)
    assert Decimal("11.33") <= kwh(in_credit.meter.credit_wh) <= Decimal("11.34")


def test_instantaneous_values_clock_and_identity() -> None:
    meter = dlt645_meter("201500000016")
    line = Line(meter)
    line.sim_now = START + 90
    m = meter.meter
    assert line.value("201500000016", "02010100") == Decimal(round(m.voltage_v * 10)).scaleb(-1)
    current = line.value("201500000016", "02020100")
    assert isinstance(current, Decimal) and abs(current - Decimal(1000 / m.voltage_v)) < 0.001
    assert line.value("201500000016", "02030000") == Decimal("1.0000")  # kW
    assert line.value("201500000016", "02060000") == Decimal("0.980")
    frequency = line.value("201500000016", "02800002")
    assert isinstance(frequency, Decimal) and Decimal(49) < frequency < Decimal(51)
    assert line.value("201500000016", "04000101") == {"date": date(2025, 3, 4), "weekday": 2}
    assert line.value("201500000016", "04000102") == time(10, 1, 30)
    assert line.value("201500000016", "04000401") == "201500000016"
    assert line.value("201500000016", "04000402") == meter.meter.identity.drn.rjust(12, "0")


def test_status_word_3_says_energy_prepaid_relay_closed() -> None:
    line = Line(dlt645_meter())
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict)
    assert status["meter_type"] == "energy-prepaid" and status["supply"] == "mains"
    assert status["relay_open"] is False and status["relay_command_open"] is False
    assert status["power_protect"] is False and status["pre_trip_alarm"] is False


def test_purchase_count_follows_accepted_tokens() -> None:
    meter = dlt645_meter()
    meter.meter.token_count = 3
    line = Line(meter)
    assert line.value("000000000001", "03330201") == 3


def test_an_item_the_meter_does_not_have_gets_the_no_requested_data_error() -> None:
    line = Line(dlt645_meter())
    line.send(ReadRequest("000000000001", "00900200").to_frame())  # money: not this meter's kind
    line.clock.advance(5)
    # notes §6, "Read error 'no such data'" (after the 4 FEH wake-up bytes the meter sends)
    assert line.received() == bytes.fromhex("FE FE FE FE 68 01 00 00 00 00 00 68 D1 01 35 D8 16")
    error = line.read("000000000001", "12345678")
    assert isinstance(error, ErrorReply) and error.reasons == ("no_requested_data",)


def test_the_golden_energy_read_frame_is_answered() -> None:
    meter = dlt645_meter()
    meter.meter.energy_wh = 112_280_260.0  # notes §6: "Reply: 112 280.26 kWh"
    meter.meter.load = LoadProfile(base_w=0, peak_w=0, noise=0)
    line = Line(meter)
    line.protocol.dataReceived(bytes.fromhex("68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16"))
    line.clock.advance(5)
    assert line.received() == bytes.fromhex(
        "FE FE FE FE 68 01 00 00 00 00 00 68 91 08 33 33 34 33 59 B3 55 44 DC 16"
    )


# -- addressing ---------------------------------------------------------------------------------


def test_frames_for_other_meters_are_ignored() -> None:
    line = Line(dlt645_meter("000000000001"))
    assert line.ask(ReadRequest("000000000002", "00010000").to_frame()) is None
    assert line.bus.stats.requests == 1 and line.bus.stats.replies == 0


def test_read_address_answers_when_the_meter_is_alone_on_the_line() -> None:
    line = Line(dlt645_meter("201500000016"))
    reply = line.ask(ReadAddressRequest().to_frame())
    assert reply == ReadAddressReply("201500000016")
    # a read sent to the wildcard address is answered from the meter's own address
    assert isinstance(line.read(WILDCARD_ADDRESS, "00010000"), ReadReply)
    assert line.read(WILDCARD_ADDRESS, "00010000").address == "201500000016"


def test_wildcard_frames_on_a_shared_line_get_silence_not_a_collision() -> None:
    line = Line(dlt645_meter("000000000001"), dlt645_meter("000000000002"))
    assert line.ask(ReadAddressRequest().to_frame()) is None
    # an abbreviated address that only one of them matches is answered
    reply = line.ask(ReadRequest("AAAAAAAAAA02", "04000401").to_frame())
    assert isinstance(reply, ReadReply) and reply.value() == "000000000002"


# -- relay control ------------------------------------------------------------------------------


def test_trip_and_close_move_the_relay_and_leave_event_times() -> None:
    meter = dlt645_meter()
    line = Line(meter)
    assert line.relay("000000000001", RelayCommand.TRIP) == Acknowledgement("000000000001", 0x1C)
    assert meter.meter.relay == RelayState.OPEN
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict)
    assert status["relay_open"] is True and status["relay_command_open"] is True
    assert line.value("000000000001", "1D000101") == START_LOCAL
    assert line.value("000000000001", "1E000101") is None  # never closed again yet
    line.sim_now = START + 600
    assert isinstance(line.relay("000000000001", RelayCommand.CLOSE_DIRECT), Acknowledgement)
    assert meter.meter.relay == RelayState.CLOSED
    assert line.value("000000000001", "1E000101") == START_LOCAL + timedelta(minutes=10)


def test_close_allowed_does_not_override_exhausted_credit() -> None:
    meter = dlt645_meter(credit_kwh=-20.0)  # far past the emergency credit
    line = Line(meter)
    assert isinstance(line.relay("000000000001", RelayCommand.CLOSE_ALLOWED), Acknowledgement)
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict)
    assert status["relay_open"] is True and status["relay_command_open"] is False


@pytest.mark.parametrize(
    "password", [Password(0x03, "654321"), Password(0x04, "123456"), Password(0x02, "123456")]
)
def test_a_wrong_password_or_level_is_unauthorised(password: Password) -> None:
    meter = dlt645_meter()
    line = Line(meter)
    reply = line.relay("000000000001", RelayCommand.TRIP, password=password)
    assert isinstance(reply, ErrorReply) and reply.reasons == ("unauthorised",)
    assert meter.meter.relay == RelayState.CLOSED


def test_an_expired_command_is_refused_and_the_spec_example_frame_accepted_in_time() -> None:
    # notes §6: trip, PA=03, password 123456, operator 12345678, valid until 2024-05-17 15:00
    trip = bytes.fromhex(
        "FE FE FE FE 68 01 00 00 00 00 00 68 1C 10 36 89 67 45 AB 89 67 45 4D 33 33 33 48 4A 38 57 "
        "4F 16"
    )
    late = dlt645_meter()  # its clock says 2025-03-04: too late
    line = Line(late)
    line.protocol.dataReceived(trip)
    line.clock.advance(5)
    assert line.received() == bytes.fromhex("FE FE FE FE 68 01 00 00 00 00 00 68 DC 01 37 E5 16")
    assert late.meter.relay == RelayState.CLOSED
    in_time = dlt645_meter(now_s=at(datetime(2024, 5, 17, 14, 59)))
    line = Line(in_time)
    line.sim_now = in_time.meter.now_s
    line.protocol.dataReceived(trip)
    line.clock.advance(5)
    assert line.received() == bytes.fromhex("FE FE FE FE 68 01 00 00 00 00 00 68 9C 00 6D 16")
    assert in_time.meter.relay == RelayState.OPEN


def test_power_protect_refuses_trips_until_released() -> None:
    meter = dlt645_meter()
    line = Line(meter)
    assert isinstance(line.relay("000000000001", RelayCommand.POWER_PROTECT), Acknowledgement)
    refused = line.relay("000000000001", RelayCommand.TRIP)
    assert isinstance(refused, ErrorReply) and refused.reasons == ("other",)
    assert meter.meter.relay == RelayState.CLOSED
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict) and status["power_protect"] is True
    assert isinstance(
        line.relay("000000000001", RelayCommand.POWER_PROTECT_RELEASE), Acknowledgement
    )
    assert isinstance(line.relay("000000000001", RelayCommand.TRIP), Acknowledgement)
    assert meter.meter.relay == RelayState.OPEN


def test_alarm_shows_in_status_word_3() -> None:
    line = Line(dlt645_meter())
    line.relay("000000000001", RelayCommand.ALARM)
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict) and status["pre_trip_alarm"] is True
    line.relay("000000000001", RelayCommand.ALARM_RELEASE)
    status = line.value("000000000001", "04000503")
    assert isinstance(status, dict) and status["pre_trip_alarm"] is False


def test_an_encrypted_relay_command_is_unauthorised() -> None:
    meter = dlt645_meter()
    line = Line(meter)
    opaque = Frame("000000000001", 0x1C, bytes.fromhex("98000000 00000000") + bytes(20))
    reply = line.ask(opaque)
    assert isinstance(reply, ErrorReply) and reply.reasons == ("unauthorised",)
    assert meter.meter.relay == RelayState.CLOSED


# -- broadcast time -----------------------------------------------------------------------------


def broadcast(line: Line, when: datetime) -> bytes:
    line.send(BroadcastTimeSync(when).to_frame())
    line.clock.advance(5)
    return line.received()


def meter_time(line: Line, address: str = "000000000001") -> object:
    return line.value(address, "04000102")


def test_broadcast_time_trims_every_meters_clock_without_a_reply() -> None:
    line = Line(dlt645_meter("000000000001"), dlt645_meter("000000000002"))
    assert broadcast(line, START_LOCAL + timedelta(minutes=3)) == b""
    assert meter_time(line, "000000000001") == time(10, 3)
    assert meter_time(line, "000000000002") == time(10, 3)


def test_broadcast_time_is_accepted_once_a_day() -> None:
    line = Line(dlt645_meter())
    broadcast(line, START_LOCAL + timedelta(minutes=2))
    broadcast(line, START_LOCAL + timedelta(minutes=4))
    assert meter_time(line) == time(10, 2)


@pytest.mark.parametrize("minutes", [6, -6, 60])
def test_broadcast_time_corrects_at_most_five_minutes(minutes: int) -> None:
    meter = dlt645_meter()
    line = Line(meter)
    broadcast(line, START_LOCAL + timedelta(minutes=minutes))
    assert meter_time(line) == time(10, 0)
    broadcast(line, START_LOCAL + timedelta(minutes=5))  # the refusal did not use up the day
    assert meter_time(line) == time(10, 5)


@pytest.mark.parametrize(
    ("clock", "sent"),
    [
        (datetime(2025, 3, 4, 23, 54), datetime(2025, 3, 4, 23, 57)),  # would land after 23:55
        (datetime(2025, 3, 4, 23, 57), datetime(2025, 3, 4, 23, 56)),
        (datetime(2025, 3, 4, 0, 3), datetime(2025, 3, 4, 0, 4)),
    ],
)
def test_broadcast_time_is_refused_near_midnight(clock: datetime, sent: datetime) -> None:
    meter = dlt645_meter(now_s=at(clock))
    line = Line(meter)
    line.sim_now = meter.meter.now_s
    broadcast(line, sent)
    assert meter.local_time() == clock


# -- line timing and faults ---------------------------------------------------------------------


def test_reply_arrives_after_request_turnaround_and_reply_on_the_wire() -> None:
    line = Line(dlt645_meter(), baud=2400, turnaround_ms=50)
    tc = character_time_s(2400)
    line.send(ReadRequest("000000000001", "00010000").to_frame())  # 4 FE + 16 bytes
    due = 20 * tc + 0.050 + 24 * tc  # reply: 4 FE + 20 bytes
    line.clock.advance(due - 0.001)
    assert line.received() == b""
    line.clock.advance(0.002)
    assert isinstance(parse_reply(decode_frame(line.received())), ReadReply)


def test_one_transaction_at_a_time() -> None:
    line = Line(dlt645_meter("000000000001"), dlt645_meter("000000000002"))
    tc = character_time_s(2400)
    one = 20 * tc + 0.050 + 24 * tc
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.send(ReadRequest("000000000002", "00010000").to_frame())
    line.clock.advance(one + 0.001)
    assert decode_frame(line.received()).address == "000000000001"
    line.clock.advance(one - 0.002)  # the second request waited for the line
    assert line.received() == b""
    line.clock.advance(0.002)
    assert decode_frame(line.received()).address == "000000000002"


def test_timers_that_fire_late_are_set_earlier_next_time() -> None:
    line = Line(dlt645_meter())
    tc = character_time_s(2400)
    one = 20 * tc + 0.050 + 24 * tc
    for _ in range(10):  # a reactor that wakes up 20 ms late, ten times
        line.send(ReadRequest("000000000001", "00010000").to_frame())
        line.clock.advance(one + 0.020)
        assert line.received()
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.clock.advance(one - 0.0045)  # now the timer is set up to 5 ms early, never more
    assert line.received()
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.clock.advance(one - 0.0055)
    assert line.received() == b""


def test_frames_fed_byte_by_byte_after_noise_are_answered() -> None:
    line = Line(dlt645_meter())
    raw = b"\x00\x13\x68" + encode_frame(ReadRequest("000000000001", "00010000").to_frame())
    for byte in raw:
        line.protocol.dataReceived(bytes((byte,)))
    line.clock.advance(5)
    assert isinstance(parse_reply(decode_frame(line.received())), ReadReply)


def test_a_stray_frame_start_is_dropped_after_the_line_goes_quiet() -> None:
    line = Line(dlt645_meter())
    # looks like the head of a frame with L = 255: the receiver would wait for 257 more bytes
    line.protocol.dataReceived(bytes.fromhex("68 01 00 00 00 00 00 68 11 FF"))
    line.clock.advance(1.0)
    assert isinstance(line.read("000000000001", "00010000"), ReadReply)


def test_faults_silence_corrupt_and_slow_the_meter() -> None:
    meter = dlt645_meter()
    line = Line(meter)
    meter.meter.faults.no_answer = True
    assert line.ask(ReadRequest("000000000001", "00010000").to_frame()) is None
    meter.meter.faults.no_answer = False
    meter.meter.faults.intermittent = 1.0
    assert line.ask(ReadRequest("000000000001", "00010000").to_frame()) is None
    assert line.bus.stats.unanswered == 2
    meter.meter.faults.intermittent = 0.0
    meter.meter.faults.corrupt_checksum = True
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.clock.advance(5)
    with pytest.raises(ChecksumError):
        decode_frame(line.received())
    meter.meter.faults.corrupt_checksum = False
    meter.meter.faults.slow_turnaround_ms = 400
    tc = character_time_s(2400)
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.clock.advance(20 * tc + 0.050 + 24 * tc + 0.390)
    assert line.received() == b""
    line.clock.advance(0.02)
    assert isinstance(parse_reply(decode_frame(line.received())), ReadReply)


def test_a_meter_on_a_dropped_line_stops_its_timers() -> None:
    line = Line(dlt645_meter())
    line.send(ReadRequest("000000000001", "00010000").to_frame())
    line.protocol.connectionLost()
    assert line.clock.getDelayedCalls() == []
