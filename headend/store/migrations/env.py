"""Alembic's environment: runs the migrations on the engine handed over by headend.store.migrate."""

from __future__ import annotations

from alembic import context

from headend.store.partitions import alembic_include_name
from headend.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        include_name=alembic_include_name,  # readings' partitions on PostgreSQL
    )
    context.run_migrations()
