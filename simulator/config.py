"""The simulator's configuration (``amr sim --config config/sim.yaml``), validated before anything
starts; every problem is reported at once with its path (``buses[1].baud: ...``).

The vending key the meters' decoder keys are derived from comes from ``sts.vending_key_file`` or
the environment variable named by ``sts.vending_key_env`` (default ``AMR_SIM_VENDING_KEY``); the
public STS test key is used when neither is set, which is what a lab or a demo wants.

Bus types (``type``): ``modbus-rtu`` and ``modbus-tcp`` (the reference register map), ``dlt645``
(DL/T 645-2007 meters on an RS485 line, default 2400 8E1) and ``plc`` (a Q/GDW 1376.2 PLC module
on a UART, default 9600 8E1, with DL/T 645 meters behind it). A DL/T 645 meter's address is
``first_address`` + its index on the bus, or, without ``first_address``, the last 12 digits of its
DRN (zero-padded). ``relay_password`` is the simulated meters' level-03 relay-control password: a
lab fixture like the public STS test key, not a secret.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocols.sts import BaseDate, Dkga, EncryptionAlgorithm, KeyType, VendingKey

__all__ = [
    "BusConfig",
    "ConfigError",
    "Dlt645BusConfig",
    "PlcBusConfig",
    "SimConfig",
    "load_config",
    "parse_config",
]

PUBLIC_TEST_VENDING_KEY = "ABABABABABABABAB"
PUBLIC_TEST_VENDING_KEY_160 = "abababababababab949494949494949401234567"


class ConfigError(ValueError):
    """A configuration that cannot be used; ``problems`` has one line per problem with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid simulator configuration:\n  " + "\n  ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StsConfig(_Model):
    vending_key_file: Path | None = None
    vending_key_env: str = "AMR_SIM_VENDING_KEY"
    supply_group_code: Annotated[str, Field(pattern=r"^\d{6}$")] = "123456"
    tariff_index: Annotated[int, Field(ge=0, le=99)] = 1
    key_revision_number: Annotated[int, Field(ge=1, le=9)] = 1
    key_type: Annotated[int, Field(ge=1, le=3)] = 2
    base_date: Literal[1993, 2014, 2035] = 2014
    encryption_algorithm: Literal["sta", "misty1"] = "sta"
    manufacturer_code: Annotated[int, Field(ge=0, le=99)] = 12
    iin: Annotated[str, Field(pattern=r"^(\d{6}|\d{4})$")] = "600727"

    @property
    def algorithm(self) -> EncryptionAlgorithm:
        return EncryptionAlgorithm.parse(self.encryption_algorithm)

    @property
    def dkga(self) -> Dkga:
        return Dkga.DKGA04 if self.algorithm is EncryptionAlgorithm.MISTY1 else Dkga.DKGA02

    @property
    def kt(self) -> KeyType:
        return KeyType(self.key_type)

    @property
    def base(self) -> BaseDate:
        return BaseDate(self.base_date)

    def vending_key(self) -> VendingKey:
        if self.vending_key_file is not None:
            return VendingKey.from_hex(self.vending_key_file.read_text().strip())
        from_env = os.environ.get(self.vending_key_env)
        if from_env:
            return VendingKey.from_hex(from_env)
        default = (
            PUBLIC_TEST_VENDING_KEY_160 if self.dkga is Dkga.DKGA04 else PUBLIC_TEST_VENDING_KEY
        )
        return VendingKey.from_hex(default)


class _MeterSpec(_Model):
    first_serial: Annotated[int, Field(ge=0, le=99_999_999)] = 1
    initial_credit_kwh: Annotated[float, Field(ge=-1000, le=100_000)] = 50.0
    base_load_w: Annotated[float, Field(ge=0, le=20_000)] = 150.0
    peak_load_w: Annotated[float, Field(ge=0, le=50_000)] = 1800.0


class MetersConfig(_MeterSpec):
    count: Annotated[int, Field(ge=1, le=247)]
    first_address: Annotated[int, Field(ge=1, le=247)] = 1


class Dlt645MetersConfig(_MeterSpec):
    """DL/T 645 meters are addressed by the bus's ``first_address`` (or their DRN), not here."""

    count: Annotated[int, Field(ge=1, le=1024)]


def _check_device_or_pty(pty: bool, info: Any, what: str) -> bool:
    if pty and info.data.get("device"):
        raise ValueError("give either device or pty: true, not both")
    if not pty and not info.data.get("device"):
        raise ValueError(f"{what} needs a serial device, or pty: true")
    return pty


class _BusBase(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    meters: MetersConfig
    turnaround_ms: Annotated[float, Field(ge=0, le=5000)] = 10.0
    profile: str = "amr-prepaid-v1"


class RtuBusConfig(_BusBase):
    type: Literal["modbus-rtu"]
    device: str | None = None
    pty: bool = Field(default=False, validate_default=True)  # checked even when left out
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "E"

    @field_validator("pty")
    @classmethod
    def _device_or_pty(cls, pty: bool, info: Any) -> bool:
        return _check_device_or_pty(pty, info, "an RTU bus")


class TcpBusConfig(_BusBase):
    type: Literal["modbus-tcp"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 5020
    turnaround_ms: Annotated[float, Field(ge=0, le=5000)] = 0.0


BROADCAST_ADDRESS = 999_999_999_999  # DL/T 645's broadcast address, never a meter's own


class _Dlt645LineBase(_Model):
    """A serial line (or a pty the simulator creates) carrying DL/T 645 meters' frames."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    meters: Dlt645MetersConfig
    device: str | None = None
    pty: bool = Field(default=False, validate_default=True)
    parity: Literal["N", "E", "O"] = "E"
    first_address: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = None
    relay_password: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{6}$")] = "123456"

    @field_validator("pty")
    @classmethod
    def _device_or_pty(cls, pty: bool, info: Any) -> bool:
        return _check_device_or_pty(pty, info, "a serial bus")

    @field_validator("first_address")
    @classmethod
    def _addresses_fit(cls, first: str | None, info: Any) -> str | None:
        meters = info.data.get("meters")
        if first is not None and meters is not None:
            last = int(first) + meters.count - 1
            if last >= BROADCAST_ADDRESS:
                raise ValueError(
                    f"{meters.count} meters from {first} would reach {last:012d}; "
                    "999999999999 is the broadcast address"
                )
        return first


class Dlt645BusConfig(_Dlt645LineBase):
    """DL/T 645-2007 meters on RS485 (notes §7: 11-bit characters, 2400 8E1, Td 20-500 ms)."""

    type: Literal["dlt645"]
    baud: Literal[1200, 2400, 4800, 9600, 19200] = 2400
    turnaround_ms: Annotated[float, Field(ge=0, le=5000)] = 50.0


class PlcBusConfig(_Dlt645LineBase):
    """A Q/GDW 1376.2 PLC module on a UART with DL/T 645 meters behind it (notes §9)."""

    type: Literal["plc"]
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    delay_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    delay_jitter_s: Annotated[float, Field(ge=0, le=600)] = 0.5
    loss: Annotated[float, Field(ge=0, le=1)] = 0.0
    master_address: Annotated[str, Field(pattern=r"^[0-9]{12}$")] = "000000000099"


BusConfig = Annotated[
    RtuBusConfig | TcpBusConfig | Dlt645BusConfig | PlcBusConfig, Field(discriminator="type")
]


class ClockConfig(_Model):
    speed: Annotated[float, Field(gt=0, le=100_000)] = 1.0
    start: datetime | None = None  # None: now
    utc_offset_minutes: Annotated[int, Field(ge=-720, le=840)] = 0


class ControlConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8081


class SimConfig(_Model):
    sts: StsConfig = StsConfig()
    clock: ClockConfig = ClockConfig()
    control: ControlConfig | None = ControlConfig()
    run_dir: Path = Path("var/sim")
    seed: int = 1
    buses: Annotated[list[BusConfig], Field(min_length=1)]

    @field_validator("buses")
    @classmethod
    def _unique_names(cls, buses: list[BusConfig]) -> list[BusConfig]:
        names = [bus.name for bus in buses]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"bus names must be unique: {', '.join(duplicates)}")
        return buses


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("modbus-rtu", "modbus-tcp", "dlt645", "plc"):
            continue  # pydantic's discriminator tag, not a key of the file
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def parse_config(raw: object) -> SimConfig:
    """A validated config from parsed YAML; ConfigError lists every problem with its path."""
    try:
        return SimConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(problems) from None


def load_config(path: Path) -> SimConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    except RecursionError:  # PyYAML builds nested lists by recursion: a few hundred levels
        raise ConfigError([f"{path}: nested too deeply"]) from None
    return parse_config(raw)
