"""A real PostgreSQL server for the job-store tests, started by the tests themselves.

`pgserver` (PyPI, in the test extra) ships PostgreSQL's own binaries: `postgres_server`
initialises a cluster in a temporary folder once per test session and stops it at the
end; `fresh_database` gives each test an empty database of its own on it. No mock:
the store talks to the server through psycopg over its Unix socket, as a deployment
would over TCP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """The URL of the session's PostgreSQL server (its ``postgres`` database)."""
    pgserver = pytest.importorskip("pgserver")
    folder = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def database_url(server_url: str, name: str) -> str:
    """`server_url` with another database name (the socket folder stays in the query)."""
    parts = urlsplit(server_url)
    return parts._replace(path=f"/{name}").geturl()


def create_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    from sqlalchemy import create_engine, text

    from bionemo_lite.server.jobs.store import sqlalchemy_url

    name = f"jobs_{uuid.uuid4().hex[:12]}"
    engine = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return database_url(server_url, name)


@pytest.fixture
def fresh_database(postgres_server) -> str:
    return create_database(postgres_server)
