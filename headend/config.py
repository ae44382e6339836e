"""The head-end's configuration (``amr headend --config config/headend.yaml``), validated before
anything starts; every problem is reported at once with its path.

Secrets never sit in the YAML: the master key, the command-signing key, SMTP passwords and SMS
gateway tokens come from files it names or from environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["ConfigError", "HeadendConfig", "load_config", "parse_config"]


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid head-end configuration:\n  " + "\n  ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    url: str = "sqlite:///var/headend/headend.db"
    upgrade_on_start: bool = True  # apply Alembic migrations at start-up (amr db upgrade does too)
    ingest_batch_rows: Annotated[int, Field(ge=1, le=100_000)] = 5000


class TlsConfig(_Model):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "headend-1"
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = "headend"
    # MQTT v5 shared subscriptions let several head-end processes split the load. MQTT 3.1.1 (a
    # broker without v5) works for a single process: plain subscriptions, no sharing.
    protocol: Literal[5, 311] = 5
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # short: a dead member of a shared subscription keeps being handed its share until its
    # session expires (Mosquitto 2.0); gateways resend what is not acknowledged, so nothing is lost
    session_expiry_s: Annotated[int, Field(ge=0)] = 300
    username: str | None = None
    tls: TlsConfig | None = None


class KeysConfig(_Model):
    master_key_file: Path | None = None  # else $AMR_MASTER_KEY (64 hex digits)
    master_key_env: str = "AMR_MASTER_KEY"
    signing_key_file: Path = Path("var/headend/command-signing.pem")  # Ed25519, PKCS#8 PEM


class ApiConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    session_ttl_s: Annotated[int, Field(ge=60)] = 12 * 3600
    max_page_size: Annotated[int, Field(ge=10, le=10_000)] = 500


class MeterDefaults(_Model):
    """STS key attributes given to a meter a gateway announces before it reports its own."""

    sgc: Annotated[int, Field(ge=0, le=999_999)] = 123456
    tariff_index: Annotated[int, Field(ge=0, le=99)] = 1
    key_revision: Annotated[int, Field(ge=1, le=9)] = 1
    key_type: Annotated[int, Field(ge=0, le=3)] = 2
    base_date: Literal[1993, 2014, 2035] = 2014
    algorithm: Literal["sta", "misty1", "dea"] = "sta"
    group: str | None = None


class CommandsConfig(_Model):
    expiry_s: Annotated[float, Field(gt=0)] = 24 * 3600  # a command not applied by then expires
    retry_s: Annotated[float, Field(gt=0)] = 120  # resend when the gateway has not received it
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    dispatch_interval_s: Annotated[float, Field(gt=0)] = 1.0


class SmtpConfig(_Model):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: str
    username: str | None = None
    password_env: str | None = None  # the password's environment variable
    starttls: bool = False


class SmsConfig(_Model):
    url: str
    method: Literal["POST", "GET"] = "POST"
    body: dict[str, str] = Field(default_factory=lambda: {"to": "{to}", "text": "{text}"})
    token_env: str | None = None  # sent as "Authorization: Bearer <token>"


class NotifyConfig(_Model):
    smtp: SmtpConfig | None = None
    sms: SmsConfig | None = None
    min_interval_s: Annotated[float, Field(ge=0)] = 3600
    max_per_hour: Annotated[int, Field(ge=1)] = 10
    flap_window_s: Annotated[float, Field(gt=0)] = 3600
    flap_threshold: Annotated[int, Field(ge=2)] = 4


Severity = Literal["critical", "major", "minor", "warning", "info"]


def _default_severity() -> dict[str, Severity]:
    return {
        "credit_exhausted": "major", "low_credit": "warning", "tamper": "critical",
        "cover_open": "critical", "relay_fault": "critical", "over_power": "minor",
        "power_fail": "minor", "meter_unreachable": "major", "identity_mismatch": "critical",
    }  # fmt: skip


class AlarmsConfig(_Model):
    severity: dict[str, Severity] = Field(default_factory=_default_severity)
    consumption_days: Annotated[int, Field(ge=1, le=90)] = 7  # window for days-of-credit-left


class SchedulerConfig(_Model):
    tick_s: Annotated[float, Field(gt=0)] = 30.0
    max_catch_up: Annotated[int, Field(ge=1)] = 4


class RetentionConfig(_Model):
    """How long readings are kept (headend.retention). None keeps them forever."""

    # readings older than this many days are folded into daily totals (readings_daily), then
    # dropped: on PostgreSQL a month's partition at a time, once all of it is older
    readings_days: Annotated[int, Field(ge=1)] | None = None
    daily_days: Annotated[int, Field(ge=1)] | None = None  # the daily totals; None: forever
    interval_s: Annotated[float, Field(gt=0)] = 3600  # how often the leader runs a pass
    months_ahead: Annotated[int, Field(ge=1, le=24)] = 3  # PostgreSQL partitions made ahead

    @model_validator(mode="after")
    def _daily_outlive_readings(self) -> RetentionConfig:
        # the daily totals are made from the readings retention drops, as it drops them
        if self.daily_days is not None and self.readings_days is None:
            raise ValueError("daily_days needs readings_days: daily totals are made from the "
                             "readings retention drops")  # fmt: skip
        if self.daily_days is not None and self.daily_days < (self.readings_days or 0):
            raise ValueError("daily_days must be at least readings_days")
        return self


class HeadendConfig(_Model):
    node_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "headend-1"
    database: DatabaseConfig = DatabaseConfig()
    mqtt: MqttConfig = MqttConfig()
    keys: KeysConfig = KeysConfig()
    api: ApiConfig = ApiConfig()
    meter_defaults: MeterDefaults = MeterDefaults()
    commands: CommandsConfig = CommandsConfig()
    notify: NotifyConfig = NotifyConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    retention: RetentionConfig = RetentionConfig()

    def secret(self, env: str | None) -> str | None:
        return os.environ.get(env) if env else None


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_config(raw: object) -> HeadendConfig:
    try:
        return HeadendConfig.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise ConfigError([f"{_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]) from None


def load_config(path: Path) -> HeadendConfig:
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
