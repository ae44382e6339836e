"""The simulator's configuration (``amr sim --config config/sim.yaml``), validated before anything
starts; every problem is reported at once with its path (``buses[1].baud: ...``).

The vending key the meters' decoder keys are derived from comes from ``sts.vending_key_file`` or
the environment variable named by ``sts.vending_key_env`` (default ``AMR_SIM_VENDING_KEY``); the
public STS test key is used when neither is set, which is what a lab or a demo wants.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocols.sts import BaseDate, Dkga, EncryptionAlgorithm, KeyType, VendingKey

__all__ = ["BusConfig", "ConfigError", "SimConfig", "load_config", "parse_config"]

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


class MetersConfig(_Model):
    count: Annotated[int, Field(ge=1, le=247)]
    first_address: Annotated[int, Field(ge=1, le=247)] = 1
    first_serial: Annotated[int, Field(ge=0, le=99_999_999)] = 1
    initial_credit_kwh: Annotated[float, Field(ge=-1000, le=100_000)] = 50.0
    base_load_w: Annotated[float, Field(ge=0, le=20_000)] = 150.0
    peak_load_w: Annotated[float, Field(ge=0, le=50_000)] = 1800.0


class _BusBase(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    meters: MetersConfig
    turnaround_ms: Annotated[float, Field(ge=0, le=5000)] = 10.0
    profile: str = "amr-prepaid-v1"


class RtuBusConfig(_BusBase):
    type: Literal["modbus-rtu"]
    device: str | None = None
    pty: bool = False
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "E"

    @field_validator("pty")
    @classmethod
    def _device_or_pty(cls, pty: bool, info: Any) -> bool:
        if pty and info.data.get("device"):
            raise ValueError("give either device or pty: true, not both")
        if not pty and not info.data.get("device"):
            raise ValueError("an RTU bus needs a serial device, or pty: true")
        return pty


class TcpBusConfig(_BusBase):
    type: Literal["modbus-tcp"]
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 5020
    turnaround_ms: Annotated[float, Field(ge=0, le=5000)] = 0.0


BusConfig = Annotated[RtuBusConfig | TcpBusConfig, Field(discriminator="type")]


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
        elif part in ("modbus-rtu", "modbus-tcp"):
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
    return parse_config(raw)
