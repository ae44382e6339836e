"""A coverage-guided fuzz target (atheris, libFuzzer) over the field and link decoders.

    python -m tests.badinput.fuzz_codecs -runs=20000 [-artifact_prefix=dir/] [corpus_dir]

The first byte picks the decoder (DL/T 645 frames and the values in their replies, Modbus RTU and
TCP as client and server, Q/GDW 1376.2 frames and messages, the link contract on each topic),
the rest is its input. The only exceptions allowed are the codecs' own (``ProtocolError``); any
other escapes, and libFuzzer stops with the input that raised it written as ``crash-<sha1>``.
``--seeds DIR`` writes a starting corpus of valid inputs (one per decoder) into DIR.

atheris runs the target in this process and exits the process when it is done, so the test
(tests/badinput/test_fuzz.py) runs this module as a subprocess.
"""

from __future__ import annotations

import contextlib
import sys
from decimal import Decimal
from pathlib import Path

import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

with atheris.instrument_imports(include=["protocols"]):
    from protocols import dlt645, qgdw13762
    from protocols.errors import ProtocolError
    from protocols.link import (
        Command,
        CommandType,
        Reading,
        ReadingBatch,
        Topic,
        decode_message,
        encode_message,
    )
    from protocols.link.fast import fast_readings
    from protocols.modbus.adapter import Framing, Receiver, Request, encode_request

TOPICS = list(Topic)
DECODERS = 4


def _dlt645(data: bytes) -> None:
    receiver = dlt645.FrameReceiver()
    receiver.receive_data(data)
    for _ in range(len(data) + 1):
        event = receiver.next_event()
        if isinstance(event, dlt645.NeedData):
            break
        if isinstance(event, dlt645.Frame):
            try:
                message = dlt645.parse_message(event)
                if isinstance(message, dlt645.ReadReply):
                    message.value()
            except ProtocolError:
                pass


def _modbus(data: bytes) -> None:
    if not data:
        return
    framing = Framing.RTU if data[0] & 1 else Framing.TCP
    receiver = Receiver(framing, server=bool(data[0] & 2))
    receiver.receive_data(data[1:])
    for _ in range(len(data) + 1):
        try:
            if receiver.next_event() is None:
                break
        except ProtocolError:  # a broken MBAP header: the connection is closed
            break


def _qgdw13762(data: bytes) -> None:
    receiver = qgdw13762.FrameReceiver()
    receiver.receive_data(data)
    for _ in range(len(data) + 1):
        event = receiver.next_event()
        if isinstance(event, qgdw13762.NeedData):
            break
        if isinstance(event, qgdw13762.Frame):
            with contextlib.suppress(ProtocolError):
                qgdw13762.parse_message(event)


def _link(data: bytes) -> None:
    if not data:
        return
    topic = TOPICS[data[0] % len(TOPICS)]
    payload = data[1:]
    try:
        message = decode_message(topic, payload)
    except ProtocolError:
        return
    assert decode_message(*encode_message(message)) == message, "no round trip"
    if topic is Topic.READINGS:
        fast = fast_readings(payload)
        assert isinstance(message, ReadingBatch)
        assert fast is None or fast.meters == tuple(r.meter for r in message.readings)


def one_input(data: bytes) -> None:
    if not data:
        return
    (_dlt645, _modbus, _qgdw13762, _link)[data[0] % DECODERS](data[1:])


def write_seeds(folder: Path) -> None:
    """One valid input per decoder, for libFuzzer to start from."""
    folder.mkdir(parents=True, exist_ok=True)
    read = dlt645.ReadRequest("000000000001", "00010000")
    reply = read.reply(dlt645.encode_value("00010000", Decimal("1234.56")))
    seeds = {
        "dlt645-request": bytes([0]) + dlt645.encode_frame(read.to_frame()),
        "dlt645-reply": bytes([0]) + dlt645.encode_frame(reply.to_frame()),
        "modbus-rtu": bytes([1, 3]) + encode_request(Request(1, 3, 0, 10), Framing.RTU),
        "modbus-tcp": bytes([1, 2]) + encode_request(Request(1, 3, 0, 10, (), 7), Framing.TCP),
        "qgdw13762": bytes([2]) + qgdw13762.encode_frame(qgdw13762.monitor_slave_node(
            seq=1, master_address="000000000001", meter_address="000000000001",
            meter_frame=dlt645.encode_frame(read.to_frame(), preamble=0))),
    }  # fmt: skip
    batch = ReadingBatch("gw-1", 1, 1.0, (Reading("m1", 1.0, {"energy_import_total": 1}),))
    command = Command("c1", CommandType.RELAY, "m1", 2.0, 5, {"action": "connect"}, "c2ln")
    for message in (batch, command):
        topic, payload = encode_message(message)
        seeds[f"link-{topic.value.replace('/', '-')}"] = bytes([3, TOPICS.index(topic)]) + payload
    for name, seed in seeds.items():
        (folder / name).write_bytes(seed)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
