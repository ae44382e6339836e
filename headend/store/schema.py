"""The head-end's tables (SQLAlchemy Core), the one description Alembic's migrations are checked against.

Conventions (DESIGN.md, Storage):

* time is UTC seconds since 1970 as a double (``*_at``, ``ts``): SQLite drops timezone offsets
  (STACK.md section 4), an epoch number never does, and reports group it with plain arithmetic;
* money is integer minor units (``*_minor``), energy integer Wh (``*_wh``);
* structured bodies (a reading's values, a receipt, a command's arguments) are JSON text, so that
  PostgreSQL's COPY can write them without adapters;
* tokens and audit records are never updated: the code has no path that updates them, and a trigger
  (see the migrations) refuses it at the database as well.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata"]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only
_TIME = sa.Float(precision=53)


def _time(name: str, nullable: bool = False, index: bool = False) -> sa.Column[float]:
    return sa.Column(name, _TIME, nullable=nullable, index=index)


# -- the field ----------------------------------------------------------------------------------

gateways = sa.Table(
    "gateways", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _time("first_seen_at"),
    _time("last_seen_at"),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("version", sa.String(64), nullable=False, server_default=""),
    sa.Column("max_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("health", sa.Text, nullable=False, server_default="{}"),
    _time("health_at", nullable=True),
)  # fmt: skip

# one row per uplink message committed: (gateway, seq) makes a resent batch a no-op
uplink_seen = sa.Table(
    "uplink_seen", metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("topic", sa.String(16), nullable=False),
    _time("received_at", index=True),
)  # fmt: skip

meter_groups = sa.Table(
    "meter_groups", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
)  # fmt: skip

meters = sa.Table(
    "meters", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # what the gateway calls it: the DRN
    sa.Column("drn", sa.String(32), nullable=False, index=True),
    sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), nullable=True, index=True),
    sa.Column("group_name", sa.String(64), sa.ForeignKey("meter_groups.name"), nullable=True,
              index=True),
    sa.Column("profile", sa.String(64), nullable=False, server_default="amr-prepaid-v1"),
    # STS key attributes (IEC 62055-41): which vending key serves this meter, and its decoder state
    sa.Column("sgc", sa.Integer, nullable=False, server_default="0"),
    sa.Column("key_revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("tariff_index", sa.Integer, nullable=False, server_default="1"),
    sa.Column("key_type", sa.Integer, nullable=False, server_default="2"),
    sa.Column("base_date", sa.Integer, nullable=False, server_default="1993"),
    sa.Column("algorithm", sa.String(8), nullable=False, server_default="sta"),
    sa.Column("key_expiry_number", sa.Integer, nullable=False, server_default="255"),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    _time("registered_at"),
    _time("last_reading_at", nullable=True),
    sa.Column("credit_wh", sa.BigInteger, nullable=True),
    sa.Column("relay_state", sa.String(16), nullable=True),
    sa.Column("tou_version", sa.Integer, nullable=True),
)  # fmt: skip

# On PostgreSQL (migration 0002) the table is range-partitioned by month on ts
# (headend.store.partitions), and its primary key is (id, ts): a partitioned table's unique keys
# must hold the partition key. SQLite keeps the plain table described here.
readings = sa.Table(
    "readings", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("meter_id", sa.String(64), nullable=False),
    _time("ts"),
    _time("meter_ts", nullable=True),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("energy_wh", sa.BigInteger, nullable=True),
    sa.Column("credit_wh", sa.BigInteger, nullable=True),
    sa.Column("values", sa.Text, nullable=False),
    sa.UniqueConstraint("meter_id", "ts", name="uq_readings_meter_ts"),
)  # fmt: skip

# A meter's UTC day of readings in a few numbers, written by retention (headend.retention) before
# it drops the day's readings: what reports use for the days whose readings are gone. A calendar
# day, not an instant, so a date. used_wh is the energy register's rise since the meter's
# previous day with one (the days' used_wh add up to the rise over any run of days); credit_wh is
# the credit of the day's last reading that had it.
readings_daily = sa.Table(
    "readings_daily", metadata,
    sa.Column("meter_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True, index=True),
    sa.Column("readings", sa.Integer, nullable=False),
    _time("first_ts", nullable=True),  # the day's first reading with an energy register
    sa.Column("first_energy_wh", sa.BigInteger, nullable=True),
    _time("last_ts", nullable=True),  # and its last
    sa.Column("last_energy_wh", sa.BigInteger, nullable=True),
    sa.Column("used_wh", sa.BigInteger, nullable=True),
    _time("credit_ts", nullable=True),
    sa.Column("credit_wh", sa.BigInteger, nullable=True),
)  # fmt: skip

events = sa.Table(
    "events", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("meter_id", sa.String(64), nullable=False, index=True),
    _time("ts"),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("meter_id", "ts", "kind", "state", name="uq_events_meter_ts_kind"),
)  # fmt: skip

# -- customers and money ------------------------------------------------------------------------

customers = sa.Table(
    "customers", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("phone", sa.String(32), nullable=False, server_default=""),
    sa.Column("email", sa.String(200), nullable=False, server_default=""),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    _time("created_at"),
)  # fmt: skip

tariffs = sa.Table(
    "tariffs", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("kind", sa.String(8), nullable=False),  # "step" | "tou"
    sa.Column("current_version", sa.Integer, nullable=False, server_default="0"),
)  # fmt: skip

tariff_versions = sa.Table(
    "tariff_versions", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("tariff_id", sa.BigInteger, sa.ForeignKey("tariffs.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    _time("activation_at"),
    _time("created_at"),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.UniqueConstraint("tariff_id", "version", name="uq_tariff_versions_version"),
)  # fmt: skip

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.BigInteger, sa.ForeignKey("customers.id"), nullable=False,
              index=True),
    sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.id"), nullable=True, index=True),
    sa.Column("tariff_id", sa.BigInteger, sa.ForeignKey("tariffs.id"), nullable=False),
    sa.Column("tou_tariff_id", sa.BigInteger, sa.ForeignKey("tariffs.id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.Column("debt_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("debt_recovery_share", sa.String(16), nullable=False, server_default="0"),
    sa.Column("debt_recovered_minor", sa.BigInteger, nullable=False, server_default="0"),
    # this calendar month's purchases, for block pricing, the fixed charge and free basic energy
    sa.Column("month", sa.String(7), nullable=False, server_default=""),
    sa.Column("month_energy_wh", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("month_fixed_paid_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("month_fbe_issued", sa.Boolean, nullable=False, server_default=sa.false()),
    _time("opened_at"),
    _time("closed_at", nullable=True),
)  # fmt: skip

vends = sa.Table(
    "vends", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("receipt_no", sa.String(32), nullable=False, unique=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False,
              index=True),
    sa.Column("meter_id", sa.String(64), nullable=False, index=True),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("vending_point", sa.String(64), nullable=False, server_default="head-office"),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("energy_wh", sa.BigInteger, nullable=False),
    sa.Column("debt_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("receipt", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="issued"),
    sa.Column("idempotency_key", sa.String(64), nullable=True, unique=True),
    _time("created_at", index=True),
    _time("cancelled_at", nullable=True),
)  # fmt: skip

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("meter_id", sa.String(64), nullable=False, index=True),
    sa.Column("vend_id", sa.BigInteger, sa.ForeignKey("vends.id"), nullable=True, index=True),
    sa.Column("kind", sa.String(32), nullable=False),  # credit | clear_tamper | key_change ...
    sa.Column("token_class", sa.Integer, nullable=False),
    sa.Column("subclass", sa.Integer, nullable=False),
    sa.Column("tid", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=True),
    sa.Column("digits", sa.String(20), nullable=False),
    sa.Column("set_index", sa.Integer, nullable=False, server_default="0"),
    _time("created_at"),
    sa.Column("created_by", sa.String(64), nullable=False),
)  # fmt: skip

# -- commands -----------------------------------------------------------------------------------

commands = sa.Table(
    "commands", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the cmd_id on the wire
    sa.Column("meter_id", sa.String(64), nullable=True, index=True),
    sa.Column("gateway_id", sa.String(64), nullable=True, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="5"),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("code", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("result", sa.Text, nullable=False, server_default="{}"),
    sa.Column("vend_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("coalesce_key", sa.String(128), nullable=True, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _time("created_at"),
    _time("updated_at"),
    _time("not_after"),
    _time("next_attempt_at", nullable=True, index=True),
    sa.Column("created_by", sa.String(64), nullable=False),
)  # fmt: skip

command_history = sa.Table(
    "command_history", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("command_id", sa.String(64), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("code", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("source", sa.String(16), nullable=False),  # headend | gateway
    _time("at"),
)  # fmt: skip

tou_rollouts = sa.Table(
    "tou_rollouts", metadata,
    sa.Column("tariff_version_id", sa.BigInteger, sa.ForeignKey("tariff_versions.id"),
              primary_key=True),
    sa.Column("meter_id", sa.String(64), primary_key=True),
    sa.Column("command_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    _time("confirmed_at", nullable=True),
)  # fmt: skip

read_schedules = sa.Table(
    "read_schedules", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("group_name", sa.String(64), nullable=True),  # null: every meter
    sa.Column("spec", sa.Text, nullable=False),  # kind, zone, interval/time, point groups
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    _time("last_window_at", nullable=True),
)  # fmt: skip

# -- keys ---------------------------------------------------------------------------------------

vending_keys = sa.Table(
    "vending_keys", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("sgc", sa.Integer, nullable=False),
    sa.Column("key_revision", sa.Integer, nullable=False),
    sa.Column("key_type", sa.Integer, nullable=False),
    sa.Column("algorithm", sa.String(8), nullable=False),  # encryption algorithm it serves
    sa.Column("dkga", sa.Integer, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),  # AES-GCM nonce + ciphertext + tag
    _time("created_at"),
    sa.UniqueConstraint("sgc", "key_revision", "algorithm", name="uq_vending_keys_sgc_krn"),
)  # fmt: skip

key_campaigns = sa.Table(
    "key_campaigns", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("group_name", sa.String(64), nullable=True),
    sa.Column("target", sa.Text, nullable=False),  # the new key attributes, JSON
    sa.Column("state", sa.String(16), nullable=False, server_default="running"),
    _time("created_at"),
    sa.Column("created_by", sa.String(64), nullable=False),
)  # fmt: skip

key_campaign_meters = sa.Table(
    "key_campaign_meters", metadata,
    sa.Column("campaign_id", sa.BigInteger, sa.ForeignKey("key_campaigns.id"), primary_key=True),
    sa.Column("meter_id", sa.String(64), primary_key=True),
    sa.Column("command_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)  # fmt: skip

# -- alarms -------------------------------------------------------------------------------------

alarms = sa.Table(
    "alarms", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("meter_id", sa.String(64), nullable=False, index=True),
    sa.Column("gateway_id", sa.String(64), nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # open | cleared
    _time("raised_at", index=True),
    _time("cleared_at", nullable=True),
    _time("acked_at", nullable=True),
    sa.Column("acked_by", sa.String(64), nullable=True),
    sa.Column("ack_comment", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)  # fmt: skip

notification_rules = sa.Table(
    "notification_rules", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),  # alarm kind, or "*"
    sa.Column("channel", sa.String(8), nullable=False),  # email | sms
    sa.Column("recipient", sa.String(200), nullable=False),  # an address, or "customer"
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
)  # fmt: skip

notifications = sa.Table(
    "notifications", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("recipient", sa.String(200), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # sent | failed | suppressed
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    _time("at"),
)  # fmt: skip

# -- people -------------------------------------------------------------------------------------

operators = sa.Table(
    "operators", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("vending_point", sa.String(64), nullable=False, server_default="head-office"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _time("created_at"),
)  # fmt: skip

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("operator_id", sa.BigInteger, sa.ForeignKey("operators.id"), nullable=False),
    _time("created_at"),
    _time("expires_at"),
)  # fmt: skip

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(32), nullable=False),
    _time("created_at"),
    _time("revoked_at", nullable=True),
)  # fmt: skip

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    _time("at", index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(128), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
)  # fmt: skip

# -- cluster ------------------------------------------------------------------------------------

# the scheduler's lease: with several head-end processes, one row names the one that schedules
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    _time("expires_at"),
)  # fmt: skip
