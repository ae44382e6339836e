"""Fixtures for the head-end's tests: a real PostgreSQL per session, started when first asked for."""

from tests.support.pg_fixture import postgres  # noqa: F401
