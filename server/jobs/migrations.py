"""Versioned schema migrations of the job store, applied when a store opens.

A small numbered list instead of Alembic: the store has two tables, every API
replica and worker upgrades it on start (no separate ``alembic upgrade`` step
or ``env.py`` to ship inside the wheel), and the same SQLAlchemy DDL runs on
SQLite and PostgreSQL. ``schema_version`` holds the versions applied; on
PostgreSQL a transaction-level advisory lock serialises replicas starting at
once, on SQLite the write transaction does.

To change the schema: append a function to `MIGRATIONS` (never edit one that
shipped); it gets a connection inside the upgrade's transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from .store import jobs, metadata, record_cache

_version_meta = MetaData()
schema_version = Table("schema_version", _version_meta, Column("version", Integer, primary_key=True),
                       Column("note", String(200)))
_LOCK_KEY = 0x6A6F6273  # "jobs": the advisory lock id of the upgrade on PostgreSQL


def _v1_tables(conn: Connection) -> None:
    """The first schema: jobs and the record cache."""
    metadata.create_all(conn, tables=[jobs, record_cache])


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("jobs and record_cache", _v1_tables),
]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0)


def migrate(engine: Engine) -> int:
    """Apply the migrations this database lacks; the version it is at afterwards."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: two processes must not both upgrade
        _version_meta.create_all(conn)
        version = current_version(conn)
        for number, (note, step) in enumerate(MIGRATIONS, start=1):
            if number > version:
                step(conn)
                conn.execute(schema_version.insert().values(version=number, note=note))
                version = number
        return version
