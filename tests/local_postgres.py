"""A throwaway PostgreSQL cluster on 127.0.0.1, for the tests and the benchmarks (no pytest in here).

The server binaries refuse to run as root, so as root they run as the `postgres` system user (the data and socket
directories, in a temporary directory, belong to it). Durability is switched off (fsync, synchronous commit):
the cluster lives as long as the test session. Clients connect over TCP with trust authentication; URLs carry a
password anyway, so tests can check it never shows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.servers import free_port

SEARCH_PATHS = ("/usr/local/bin", "/usr/local/pgsql/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
SYSTEM_USER = "postgres"


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for directory in SEARCH_PATHS:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def driver_missing() -> str | None:
    """Why the PostgreSQL ledger's driver cannot be loaded here, or None when it can."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        return 'psycopg is not installed (pip install ".[postgres]")'
    return None


def unavailable() -> str | None:
    """Why a local cluster cannot run here, or None when it can."""
    if find_binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found"
    if (missing := driver_missing()) is not None:
        return missing
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no {SYSTEM_USER!r} user to run PostgreSQL (useradd --system postgres)"
    return None


class LocalPostgres:
    def __init__(self) -> None:
        self.password = "pw-" + secrets.token_hex(6)  # never checked (trust), never to be shown
        self.port = 0
        self._bin = find_binaries()
        self._root: Path | None = None
        self._databases = 0

    def start(self) -> LocalPostgres:
        if self._bin is None:
            raise RuntimeError("PostgreSQL server binaries not found")
        self._root = Path(tempfile.mkdtemp(prefix="fal-mcp-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(self._root, user.pw_uid, user.pw_gid)
        data = self._root / "data"
        self._run("initdb", "-D", str(data), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.port = free_port()
        options = (
            f"-k {self._root} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=300"
        )
        log = self._root / "server.log"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        return self

    @classmethod
    def attach(cls, root: Path, port: int) -> LocalPostgres:
        """The cluster another LocalPostgres started in `root` (`.root`), listening on `port`."""
        server = cls()
        server._root, server.port = root, port
        return server

    @property
    def root(self) -> Path | None:
        """The cluster's directory (data, socket, log) while it runs."""
        return self._root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self._root is None:
            return
        with contextlib.suppress(RuntimeError):  # already stopped: only the files are left to remove
            self._run("pg_ctl", "-D", str(self._root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, program: str, *args: str) -> None:
        assert self._bin is not None and self._root is not None
        extra: dict[str, Any] = {"user": SYSTEM_USER} if os.geteuid() == 0 else {}
        result = subprocess.run(
            [str(self._bin / program), *args],
            cwd=self._root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **extra,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-2000:]
            raise RuntimeError(f"{program} failed (exit {result.returncode}): {output}")
