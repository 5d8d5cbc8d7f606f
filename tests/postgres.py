"""PostgreSQL for the tests: one local cluster per run, shared by the xdist workers (started by the first one that
needs it, stopped by the controlling process at the end), a fresh database per test, and `backend`, which runs a
test once on each ledger backend (SQLite and PostgreSQL).

Without the PostgreSQL binaries (or psycopg) the PostgreSQL cases are skipped, unless FAL_MCP_REQUIRE_POSTGRES=1
(set by CI) makes that a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.jobs.ledger import JobLedger, SqliteLedger
from tests.local_postgres import LocalPostgres, driver_missing, unavailable

REQUIRE_VARIABLE = "FAL_MCP_REQUIRE_POSTGRES"
# Set by the controlling pytest process for its xdist workers (they inherit its environment): the folder where
# the run's cluster is described (cluster.json) once a worker started it.
SHARED_VARIABLE = "PYTEST_FAL_MCP_POSTGRES"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controlling process (or the only one, without -n)
        os.environ[SHARED_VARIABLE] = tempfile.mkdtemp(prefix="fal-mcp-pg-run-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    shared = os.environ.pop(SHARED_VARIABLE, None)
    if shared is None:
        return
    described = Path(shared) / "cluster.json"
    if described.exists():
        cluster = json.loads(described.read_text())
        LocalPostgres.attach(Path(cluster["root"]), cluster["port"]).stop()
    shutil.rmtree(shared, ignore_errors=True)


def _skip_unless_possible(problem: str | None) -> None:
    """Skip the test for `problem`, or fail it when FAL_MCP_REQUIRE_POSTGRES=1 (CI); nothing when it is None."""
    if problem is not None:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_VARIABLE}=1 but PostgreSQL cannot run here: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def psycopg_installed() -> None:
    """For the cases that need the driver but no database: skipped without the [postgres] extra."""
    _skip_unless_possible(driver_missing())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    _skip_unless_possible(unavailable())
    shared = os.environ.get(SHARED_VARIABLE)
    if shared is None:  # loaded some other way: a cluster of this session's own
        with LocalPostgres() as server:
            yield server
        return
    yield shared_cluster(Path(shared))


def shared_cluster(folder: Path) -> LocalPostgres:
    """The run's cluster: started by the first worker to ask (the others wait on the lock), then attached to."""
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        described = folder / "cluster.json"
        if described.exists():
            cluster = json.loads(described.read_text())
            return LocalPostgres.attach(Path(cluster["root"]), cluster["port"])
        server = LocalPostgres().start()
        described.write_text(json.dumps({"root": str(server.root), "port": server.port}))
        return server


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The URL of a fresh, empty database (its password is never needed: trust authentication)."""
    return postgres_server.create_database()


@dataclass
class Backend:
    """Where a test's ledger lives: a SQLite file or a PostgreSQL database."""

    name: str  # "sqlite" or "postgres"
    target: str  # the file's path, or the database URL

    def open(self, **options: Any) -> JobLedger:
        return open_target(self.target, **options)

    def settings(self) -> dict[str, Any]:
        """Settings overrides that put a server's ledger here."""
        if self.name == "postgres":
            return {"database_url": self.target}
        return {"state_dir": Path(self.target).parent}

    def env(self) -> dict[str, str]:
        """Environment variables that put a server process's ledger here."""
        if self.name == "postgres":
            return {"FAL_MCP_DATABASE_URL": self.target}
        return {"FAL_MCP_STATE_DIR": str(Path(self.target).parent)}


def open_target(target: str, **options: Any) -> JobLedger:
    """A ledger on a SQLite path or a PostgreSQL URL (subprocess scripts use this too)."""
    if target.startswith(("postgresql://", "postgres://")):
        from server.jobs.ledger.postgres import PostgresLedger

        return PostgresLedger(target, **options)
    return SqliteLedger(Path(target), **options)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgres":
        return Backend("postgres", request.getfixturevalue("postgres_url"))
    return Backend("sqlite", str(tmp_path / "state" / "jobs.sqlite3"))
