"""The real database servers of the sql source tests: one fresh database per test.

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) and MariaDB/MySQL at 127.0.0.1:3306
(root, no password), overridable with MLPIPE_TEST_PG_URL / MLPIPE_TEST_MYSQL_URL. Where no
server answers the tests skip, saying how to start one; under CI=true that is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PG_URL = os.environ.get("MLPIPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
MYSQL_URL = os.environ.get("MLPIPE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")

HOW = {
    "postgresql": "start one (Debian: apt-get install postgresql, then pg_ctlcluster "
    "--skip-systemctl-redirect $(ls /etc/postgresql) main start; trust auth for 127.0.0.1), "
    "or point MLPIPE_TEST_PG_URL at one",
    "mysql": "start one (Debian: apt-get install mariadb-server, then start-stop-daemon "
    "--start --background --exec /usr/sbin/mariadbd; root without a password), or point "
    "MLPIPE_TEST_MYSQL_URL at one",
}


def _answers(url: str) -> bool:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    try:
        with socket.create_connection((u.host or "127.0.0.1", u.port or 0), timeout=2):
            return True
    except OSError:
        return False


def need(kind: str) -> str:
    url = PG_URL if kind == "postgresql" else MYSQL_URL
    if not _answers(url):
        message = f"no {kind} server answers at {url.rsplit('@', 1)[-1]}; {HOW[kind]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: a missing server is a failure)")
        pytest.skip(message)
    return url


@dataclass
class Database:
    kind: str
    server_url: str  # without a database
    name: str

    @property
    def url(self) -> str:
        return f"{self.server_url}/{self.name}"

    def engine(self):  # type: ignore[no-untyped-def]
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        return create_engine(self.url, poolclass=NullPool)

    def execute(self, *statements: str, params: list[dict] | None = None) -> None:
        from sqlalchemy import text

        engine = self.engine()
        with engine.begin() as conn:
            for stmt in statements:
                conn.execute(text(stmt), params or {})
        engine.dispose()


def admin_execute(server_url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = server_url + ("/postgres" if server_url.startswith("postgresql") else "/")
    engine = create_engine(admin, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(statement))
    engine.dispose()


def fresh_database(kind: str) -> Iterator[Database]:
    server = need(kind)
    name = f"mlpipe_test_{uuid.uuid4().hex[:12]}"
    admin_execute(server, f"CREATE DATABASE {name}")
    try:
        yield Database(kind, server, name)
    finally:
        if kind == "postgresql":
            admin_execute(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        else:
            admin_execute(server, f"DROP DATABASE IF EXISTS {name}")
