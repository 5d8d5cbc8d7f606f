"""Opening the SQLite ledger file safely: created private, a foreign, corrupt or newer file refused and left
exactly as it is, WAL mode, and the schema migrated inside one write transaction (so several processes may open a
fresh file at once)."""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from server.jobs.ledger.base import SCHEMA_VERSION, LedgerError

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"


def open_file(path: Path, busy_timeout: float, migrations: Sequence[Sequence[str]]) -> sqlite3.Connection:
    """A connection to the ledger file at `path`, created if missing, checked and migrated: `migrations[n]` takes
    the file from schema n to n + 1 (the version lives in PRAGMA user_version)."""
    _create_private(path)
    _check_header(path)  # before SQLite opens it: a foreign file is never touched
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise error(path, exc) from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # Read-only checks first: a newer, foreign or broken file must be left exactly as it is.
        _check_schema(conn, path)
        _use_wal(conn, path, busy_timeout)
        # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and each write here is
        # a request id or a result that fal deletes within the hour. A few fsyncs per paid job cost nothing.
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path, migrations)
    except sqlite3.Error as exc:
        conn.close()
        raise error(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    """Create missing directories (0o700) and the file (0o600): inputs hold the user's prompts and image URLs."""
    try:
        missing = list(itertools.takewhile(lambda p: not p.exists(), [path.parent, *path.parent.parents]))
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise LedgerError(
            f"cannot create the job ledger {path}: {exc.strerror}. Set FAL_MCP_STATE_DIR to a writable directory."
        ) from None


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise LedgerError(f"cannot read the job ledger {path}: {exc.strerror}.") from None
    if header and header != SQLITE_MAGIC:  # an empty file is a new database
        raise _corrupt(path, "not a SQLite database")


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; raises for a newer or a foreign database. Reads only."""
    # One statement, so one snapshot: a process migrating meanwhile cannot make a fresh file look foreign.
    version, objects = conn.execute(
        "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
    ).fetchone()
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"the job ledger {path} was written by a newer fal-queue-mcp (schema {version}; this version reads up "
            f"to {SCHEMA_VERSION}); upgrade fal-queue-mcp, or set FAL_MCP_STATE_DIR to use another directory."
        )
    if version == 0 and objects:
        raise LedgerError(
            f"{path} is a SQLite database but not a fal-queue-mcp job ledger; it was left unchanged. Move it aside "
            "or set FAL_MCP_STATE_DIR to another directory."
        )
    return int(version)


def _use_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    """Switch the file to WAL (it stays so). The switch answers "locked" without waiting on the busy handler
    when another process is creating the file at the same moment, so wait here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode != "wal":
        log.warning("%s: WAL mode unavailable on this filesystem; processes sharing it will wait more", path)


def _migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[Sequence[str]]) -> None:
    if _check_schema(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_schema(conn, path)  # again, under the lock: another process may have migrated meanwhile
        for steps in migrations[version:]:
            for statement in steps:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _corrupt(path: Path, detail: str) -> LedgerError:
    return LedgerError(
        f"the job ledger {path} is unreadable ({detail}). Move it aside (e.g. rename it to {path.name}.broken) "
        "and restart: a new, empty ledger will be created."
    )


def error(path: Path, exc: sqlite3.Error) -> LedgerError:
    if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return _corrupt(path, str(exc))
    if is_busy(exc):
        return LedgerError(f"the job ledger {path} stayed locked by another process ({exc}); try again.")
    return LedgerError(f"the job ledger {path} failed: {exc}.")


def is_busy(exc: sqlite3.Error) -> bool:
    return exc.sqlite_errorname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
