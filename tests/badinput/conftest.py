"""Fixtures of the bad-input suite: the session's PostgreSQL, started when a test asks for it."""

from tests.support.pg_fixture import postgres  # noqa: F401
