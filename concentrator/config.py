"""The concentrator's configuration (``amr concentrator --config config/concentrator.yaml``),
validated before anything starts; every problem is reported at once with its path.

Secrets never sit in the YAML: TLS keys and the head-end's public key are files it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConcentratorConfig", "ConfigError", "load_config", "parse_config"]


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid concentrator configuration:\n  " + "\n  ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Model):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 60
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 86_400
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    ack_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0  # watchdog: acks stopped


class JournalConfig(_Model):
    path: Path = Path("var/concentrator/journal.db")
    quota_mb: Annotated[float, Field(gt=0, le=100_000)] = 64.0


class MeterConfig(_Model):
    address: Annotated[int, Field(ge=1, le=247)]
    profile: str = "amr-prepaid-v1"
    meter_id: str | None = None  # default: the DRN read from the meter at start-up
    groups: list[str] | None = None  # default: every poll group of the profile


class _BusBase(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    timeout_ms: Annotated[float, Field(gt=0, le=60_000)] = 1000.0
    retries: Annotated[int, Field(ge=0, le=5)] = 1  # resends after a timeout, per request
    meters: Annotated[list[MeterConfig], Field(min_length=1)]

    @field_validator("meters")
    @classmethod
    def _unique_addresses(cls, meters: list[MeterConfig]) -> list[MeterConfig]:
        addresses = [m.address for m in meters]
        duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
        if duplicates:
            raise ValueError(f"meter addresses must be unique on a bus: {duplicates}")
        return meters


class RtuBusConfig(_BusBase):
    type: Literal["modbus-rtu"]
    device: str
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "E"
    inter_frame_gap_ms: Annotated[float, Field(ge=0, le=1000)] | None = None  # default: t3.5


class TcpBusConfig(_BusBase):
    type: Literal["modbus-tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502


class Dlt645MeterConfig(_Model):
    address: Annotated[str, Field(pattern=r"^\d{12}$")]
    meter_id: str | None = None  # default: the meter's DL/T 645 address


class _Dlt645Base(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    device: str
    parity: Literal["N", "E", "O"] = "E"
    relay_password_file: Path | None = None  # the level-03 password for plaintext 1CH commands
    meters: Annotated[list[Dlt645MeterConfig], Field(min_length=1)]


class Dlt645BusConfig(_Dlt645Base):
    """DL/T 645-2007 meters directly on an RS485 line."""

    type: Literal["dlt645"]
    baud: Literal[1200, 2400, 4800, 9600] = 2400
    timeout_ms: Annotated[float, Field(gt=0, le=60_000)] = 2000.0


class PlcBusConfig(_Dlt645Base):
    """DL/T 645 meters behind a Q/GDW 1376.2 PLC module on a serial port."""

    type: Literal["plc"]
    baud: Literal[2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    master_address: Annotated[str, Field(pattern=r"^\d{12}$")] = "000000000099"
    timeout_ms: Annotated[float, Field(gt=0, le=600_000)] = 60_000.0


BusConfig = Annotated[
    RtuBusConfig | TcpBusConfig | Dlt645BusConfig | PlcBusConfig, Field(discriminator="type")
]


class PollGroupConfig(_Model):
    interval_s: Annotated[float, Field(ge=1, le=86_400)]
    offset_s: Annotated[float, Field(ge=0, le=86_400)] = 0.0
    alarm: bool = False  # a fast status poll: its jobs run at alarm priority


class BatchConfig(_Model):
    # <= 1000: a batch must stay under the contract's 256 KiB payload limit (~230 B a reading)
    max_readings: Annotated[int, Field(ge=1, le=1000)] = 100
    max_delay_s: Annotated[float, Field(ge=0, le=3600)] = 10.0


class ConcentratorConfig(_Model):
    gateway_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    mqtt: MqttConfig = MqttConfig()
    journal: JournalConfig = JournalConfig()
    headend_public_key_file: Path | None = None
    profiles_dir: Path | None = None
    poll_groups: dict[str, PollGroupConfig] = {
        "status": PollGroupConfig(interval_s=60, alarm=True),
        "energy": PollGroupConfig(interval_s=900),
        "instant": PollGroupConfig(interval_s=900),
        "identity": PollGroupConfig(interval_s=86_400),
    }
    batch: BatchConfig = BatchConfig()
    buses: Annotated[list[BusConfig], Field(min_length=1)]
    status_http: Annotated[int, Field(ge=0, le=65535)] | None = None  # status page + /metrics
    status_http_host: str = "127.0.0.1"
    # how often the health message goes to the head-end (QoS 0, about 1 KiB: GPRS is paid by the byte)
    health_interval_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0

    @model_validator(mode="after")
    def _unique_bus_names(self) -> ConcentratorConfig:
        names = [bus.name for bus in self.buses]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"bus names must be unique: {', '.join(duplicates)}")
        return self


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("modbus-rtu", "modbus-tcp", "dlt645", "plc"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def parse_config(raw: object) -> ConcentratorConfig:
    try:
        return ConcentratorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([f"{_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]) from None


def load_config(path: Path) -> ConcentratorConfig:
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
