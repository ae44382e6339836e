"""Configuring DL/T 645 and PLC buses: what a lab engineer writes, and what they get back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from simulator.config import (
    ConfigError,
    Dlt645BusConfig,
    PlcBusConfig,
    RtuBusConfig,
    TcpBusConfig,
    load_config,
    parse_config,
)
from simulator.control import meter_json
from simulator.dlt645_bus import Dlt645Bus
from simulator.fleet import build_fleet, make_drn
from simulator.plc_module import PlcModule

ROOT = Path(__file__).resolve().parents[2]


def config(*buses: dict[str, Any]) -> dict[str, Any]:
    return {"control": None, "buses": list(buses)}


def test_the_example_config_has_all_four_kinds_of_bus() -> None:
    loaded = load_config(ROOT / "config" / "sim.yaml")
    kinds = {type(bus) for bus in loaded.buses}
    assert kinds == {RtuBusConfig, TcpBusConfig, Dlt645BusConfig, PlcBusConfig}


def test_dlt645_and_plc_defaults() -> None:
    parsed = parse_config(config(
        {"name": "dlt1", "type": "dlt645", "pty": True, "meters": {"count": 2}},
        {"name": "plc1", "type": "plc", "device": "/dev/ttyS1", "meters": {"count": 2}},
    ))  # fmt: skip
    dlt, plc = parsed.buses
    assert isinstance(dlt, Dlt645BusConfig) and isinstance(plc, PlcBusConfig)
    assert (dlt.baud, dlt.parity, dlt.turnaround_ms, dlt.relay_password) == (
        2400,
        "E",
        50,
        "123456",
    )
    assert (plc.baud, plc.delay_s, plc.delay_jitter_s, plc.loss) == (9600, 2.0, 0.5, 0.0)
    assert plc.master_address == "000000000099" and dlt.first_address is None


def test_every_mistake_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config(
            {"name": "dlt1", "type": "dlt645", "pty": True, "baud": 115200,
             "first_address": "12345", "meters": {"count": 2, "first_address": 3}},
            {"name": "plc1", "type": "plc", "meters": {"count": 3}, "loss": 1.5,
             "master_address": "99", "first_address": "999999999998"},
        ))  # fmt: skip
    problems = raised.value.problems
    by_path = {p.split(": ")[0]: p.split(": ", 1)[1] for p in problems}
    assert set(by_path) == {
        "buses[0].meters.first_address",  # DL/T 645 meters are addressed on the bus, not here
        "buses[0].baud",
        "buses[0].first_address",
        "buses[1].pty",
        "buses[1].first_address",
        "buses[1].loss",
        "buses[1].master_address",
    }
    assert "needs a serial device, or pty: true" in by_path["buses[1].pty"]
    assert "999999999999 is the broadcast address" in by_path["buses[1].first_address"]


def test_a_serial_bus_without_a_device_is_refused_for_modbus_rtu_too() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config({"name": "rtu1", "type": "modbus-rtu", "meters": {"count": 1}}))
    assert raised.value.problems == [
        "buses[0].pty: Value error, an RTU bus needs a serial device, or pty: true"
    ]


def test_meter_addresses_come_from_first_address_or_the_drn() -> None:
    parsed = parse_config(config(
        {"name": "dlt1", "type": "dlt645", "pty": True,
         "meters": {"count": 2, "first_serial": 3001}},
        {"name": "plc1", "type": "plc", "pty": True, "first_address": "000000000101",
         "meters": {"count": 3, "first_serial": 4001}},
    ))  # fmt: skip
    fleet = build_fleet(parsed, task.Clock())
    dlt, plc = (entry.bus for entry in fleet.buses)
    assert isinstance(dlt, Dlt645Bus) and isinstance(plc, PlcModule)
    assert sorted(plc.meters) == ["000000000101", "000000000102", "000000000103"]
    for address, meter in dlt.meters.items():
        assert address == "0" + meter.meter.identity.drn  # 11-digit DRN, zero-padded
    assert sorted(dlt.meters) == ["0" + make_drn(12, 3001), "0" + make_drn(12, 3002)]
    listed = [meter_json(*entry) for entry in fleet.meters_by_drn.values()]
    assert sorted(m["dlt645_address"] for m in listed if m["bus"] == "plc1") == sorted(plc.meters)
    assert all(m["address"] == m["dlt645_address"] for m in listed)
