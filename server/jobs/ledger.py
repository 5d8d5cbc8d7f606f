"""The durable job ledger: every job this server submits, kept in an embedded SQLite file.

Protocol-free (no MCP, no HTTP). A row is written *before* a submit is sent and updated as the job moves on, so
no request id or result is lost across restarts. Several server processes (Claude Desktop and Cursor at once)
may share one file: WAL mode lets readers run beside the one writer, and every write is a single short
`BEGIN IMMEDIATE` transaction that waits up to `busy_timeout` for the lock instead of failing.

Calls are synchronous and thread-safe (one connection per Ledger, behind a lock); async callers run them with
`anyio.to_thread.run_sync`. Callers pass only the model input, never a key, and cap sizes; still, every text
a writer stores (inputs, reasons, results, URLs) has the secrets given at opening cut out first, since much of
it comes from an upstream that may echo the key back.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from server.errors import redact, scrub_secrets

log = logging.getLogger(__name__)

APP_NAME = "fal-queue-mcp"
FILE_NAME = "jobs.sqlite3"
SQLITE_MAGIC = b"SQLite format 3\x00"
STATES = frozenset({"submitting", "submitted", "unknown", "rejected", "completed", "failed", "cancelled"})

# MIGRATIONS[n] takes a file from schema n to n + 1 (the version lives in PRAGMA user_version). To change the
# schema, append a step; never edit a released one. Statements run one by one inside one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE jobs (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused
            request_id     TEXT,                               -- NULL until the upstream answers
            endpoint_id    TEXT NOT NULL,
            state          TEXT NOT NULL,
            input          TEXT NOT NULL,                      -- JSON object
            submitted_at   REAL NOT NULL,
            updated_at     REAL NOT NULL,
            queue_position INTEGER,
            error          TEXT,
            result         TEXT,                               -- JSON object
            result_at      REAL,
            media_urls     TEXT NOT NULL DEFAULT '[]',         -- JSON list of URLs
            downloads      TEXT NOT NULL DEFAULT '[]'          -- JSON list of {url, path, sha256, size}
        )""",
        "CREATE UNIQUE INDEX jobs_request_id ON jobs (request_id) WHERE request_id IS NOT NULL",
        "CREATE INDEX jobs_submitted_at ON jobs (submitted_at)",
        "CREATE INDEX jobs_state ON jobs (state, submitted_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
JSON_COLUMNS = ("input", "result", "media_urls", "downloads")


class LedgerError(Exception):
    """The ledger file cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class JobRow:
    id: int
    request_id: str | None
    endpoint_id: str
    state: str  # one of STATES
    input: dict[str, Any]
    submitted_at: float
    updated_at: float
    queue_position: int | None
    error: str | None
    result: dict[str, Any] | None
    result_at: float | None
    media_urls: list[str]
    downloads: list[dict[str, Any]]


class Ledger:
    """Mutators return whether a row changed: False for an unknown id or a transition that no longer applies."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        secrets: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._secrets = [secret for secret in secrets if secret]
        self._lock = threading.Lock()
        _create_private(self.path)
        _check_header(self.path)  # before SQLite opens it: a foreign file is never touched
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _error(self.path, exc) from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Read-only checks first: a newer, foreign or broken file must be left exactly as it is.
            _check_schema(conn, self.path)
            _use_wal(conn, self.path, busy_timeout)
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and each write here is
            # a request id or a result that fal deletes within the hour. A few fsyncs per paid job cost nothing.
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, self.path)
        except sqlite3.Error as exc:
            conn.close()
            raise _error(self.path, exc) from None
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def default_path(cls, state_dir: Path | None) -> Path:
        base = state_dir if state_dir is not None else platformdirs.user_state_path(APP_NAME, appauthor=False)
        return base / FILE_NAME

    # ---- submitting: keyed by row id, since there is no request id yet ---------------------------------------

    def begin_submit(self, endpoint_id: str, input: dict[str, Any]) -> int:
        """Record a job about to be submitted (state 'submitting'). Committed before this returns."""
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs (endpoint_id, state, input, submitted_at, updated_at)"
                " VALUES (?, 'submitting', ?, ?, ?)",
                (endpoint_id, self._json(input), now, now),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def mark_submitted(self, row_id: int, request_id: str, queue_position: int | None) -> bool:
        """The upstream accepted the job. Also allowed after mark_unknown, should the request id turn up later."""
        return self._update(
            "UPDATE jobs SET state = 'submitted', request_id = ?, queue_position = ?, updated_at = ?"
            " WHERE id = ? AND state IN ('submitting', 'unknown')",
            (request_id, queue_position, self._clock(), row_id),
        )

    def mark_unknown(self, row_id: int, reason: str) -> bool:
        """The submit's outcome is unknown (timeout, dropped answer): a job may be running and billed."""
        return self._update(
            "UPDATE jobs SET state = 'unknown', error = ?, updated_at = ? WHERE id = ? AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def mark_rejected(self, row_id: int, reason: str) -> bool:
        """The upstream surely refused the submit (4xx, connect error): nothing was started."""
        return self._update(
            "UPDATE jobs SET state = 'rejected', error = ?, updated_at = ? WHERE id = ? AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def settle_stale_submits(self, older_than: float) -> int:
        """Rows still 'submitting' since before `older_than` (epoch) belong to a process that died mid-submit:
        mark them 'unknown' (the job may exist). Returns how many were settled."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'unknown', updated_at = ?,"
                " error = 'the server stopped before the submit was answered; the job may exist'"
                " WHERE state = 'submitting' AND submitted_at < ?",
                (self._clock(), older_than),
            )
        return cursor.rowcount

    # ---- after the submit: keyed by request id ---------------------------------------------------------------

    def store_result(self, request_id: str, result: dict[str, Any], media_urls: list[str]) -> bool:
        """Keep the output (state 'completed'). The first stored result wins: a later call changes nothing."""
        now = self._clock()
        return self._update(
            "UPDATE jobs SET state = 'completed', result = ?, media_urls = ?, result_at = ?, updated_at = ?,"
            " error = NULL WHERE request_id = ? AND result IS NULL",
            (self._json(result), self._json(media_urls), now, now, request_id),
        )

    def mark_failed(self, request_id: str, error: str, *, cancelled: bool = False) -> bool:
        """State 'failed' (or 'cancelled'); never overrides a stored result."""
        return self._update(
            "UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE request_id = ? AND result IS NULL",
            ("cancelled" if cancelled else "failed", self._text(error), self._clock(), request_id),
        )

    def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> bool:
        """Add a downloaded file; a new download to the same path replaces the old entry."""
        entry = scrub_secrets({"url": url, "path": path, "sha256": sha256, "size": size}, self._secrets)
        with self._write() as conn:
            row = conn.execute("SELECT downloads FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                return False
            downloads = [d for d in json.loads(row["downloads"]) if d.get("path") != path] + [entry]
            conn.execute(
                "UPDATE jobs SET downloads = ?, updated_at = ? WHERE request_id = ?",
                (_dumps(downloads), self._clock(), request_id),
            )
        return True

    # ---- reading ---------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> JobRow | None:
        rows = self._select("SELECT * FROM jobs WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def get_row(self, row_id: int) -> JobRow | None:
        rows = self._select("SELECT * FROM jobs WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    def list_jobs(
        self, *, state: str | None = None, endpoint_id: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[JobRow]:
        """Jobs newest first; `since` keeps those submitted at or after that epoch time."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(sorted(STATES))}")
        return self._select(
            "SELECT * FROM jobs WHERE (:state IS NULL OR state = :state)"
            " AND (:endpoint IS NULL OR endpoint_id = :endpoint) AND (:since IS NULL OR submitted_at >= :since)"
            " ORDER BY submitted_at DESC, id DESC LIMIT :limit",
            {"state": state, "endpoint": endpoint_id, "since": since, "limit": _check_limit(limit)},
        )

    def unfinished(self, *, limit: int = 100) -> list[JobRow]:
        """Jobs submitted but not yet completed, failed or cancelled, oldest first (for the watcher)."""
        return self._select(
            "SELECT * FROM jobs WHERE state = 'submitted' ORDER BY submitted_at, id LIMIT ?", (_check_limit(limit),)
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------------------------

    def _text(self, text: str) -> str:
        for secret in self._secrets:
            text = redact(text, secret)
        return text

    def _json(self, value: object) -> str:
        return _dumps(scrub_secrets(value, self._secrets) if self._secrets else value)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; IMMEDIATE takes the write lock up front, so it waits, never deadlocks."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _error(self.path, exc) from None
                raise

    def _update(self, sql: str, params: tuple[Any, ...]) -> bool:
        with self._write() as conn:
            return conn.execute(sql, params).rowcount > 0

    def _select(self, sql: str, params: tuple[Any, ...] | dict[str, Any]) -> list[JobRow]:
        with self._lock:
            try:
                return [_job_row(row) for row in self._connection().execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise _error(self.path, exc) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"the job ledger {self.path} is closed")
        return self._conn


def _job_row(row: sqlite3.Row) -> JobRow:
    values = dict(zip(row.keys(), row, strict=True))
    for key in JSON_COLUMNS:
        if values[key] is not None:
            values[key] = json.loads(values[key])
    return JobRow(**values)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


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
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode != "wal":
        log.warning("%s: WAL mode unavailable on this filesystem; processes sharing it will wait more", path)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if _check_schema(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_schema(conn, path)  # again, under the lock: another process may have migrated meanwhile
        for steps in MIGRATIONS[version:]:
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


def _error(path: Path, exc: sqlite3.Error) -> LedgerError:
    if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return _corrupt(path, str(exc))
    if _is_busy(exc):
        return LedgerError(f"the job ledger {path} stayed locked by another process ({exc}); try again.")
    return LedgerError(f"the job ledger {path} failed: {exc}.")


def _is_busy(exc: sqlite3.Error) -> bool:
    return exc.sqlite_errorname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
