"""The embedded ledger: one SQLite file (the default; see `sqlite_file` for how it is opened and migrated).

Several server processes (Claude Desktop and Cursor at once) may share one file: WAL mode lets readers run beside
the one writer, and every write is a single short `BEGIN IMMEDIATE` transaction that waits up to `busy_timeout`
for the lock instead of failing; a lease claim reads and updates inside one, so two processes never claim the
same job. One connection per ledger, behind a lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from server.jobs.ledger.base import (
    COLUMNS,
    JobLedger,
    JobRow,
    Lease,
    LedgerError,
    WaitClaim,
    check_limit,
    check_state,
    job_row,
    new_instance_id,
)
from server.jobs.ledger.sqlite_file import error, open_file

log = logging.getLogger(__name__)

APP_NAME = "fal-queue-mcp"
FILE_NAME = "jobs.sqlite3"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
# The database's clock, in epoch seconds (the same machine's clock for every process sharing the file).
NOW = "((julianday('now') - 2440587.5) * 86400.0)"
UNFINISHED = "state = 'submitted' AND request_id IS NOT NULL"
RELAY_INTERVAL = 1.0  # seconds between looks for other processes' changes (one cheap PRAGMA when none)
RELAY_OVERLAP = 15.0  # seconds of updates read again each look: longer than any writer waits for the lock


class SqliteLedger(JobLedger):
    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.instance = instance or new_instance_id()
        self._secrets = [secret for secret in secrets if secret]
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_file(self.path, busy_timeout)

    @classmethod
    def default_path(cls, state_dir: Path | None) -> Path:
        if state_dir is None:
            import platformdirs  # only for the default directory: imported when needed

            state_dir = platformdirs.user_state_path(APP_NAME, appauthor=False)
        return state_dir / FILE_NAME

    @property
    def location(self) -> str:
        return str(self.path)

    # ---- submitting ------------------------------------------------------------------------------------------

    def begin_submit(self, endpoint_id: str, input: dict[str, Any]) -> int:
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
        return self._update(
            "UPDATE jobs SET state = 'submitted', request_id = ?, queue_position = ?, updated_at = ?"
            " WHERE id = ? AND state IN ('submitting', 'unknown')",
            (request_id, queue_position, self._clock(), row_id),
        )

    def mark_unknown(self, row_id: int, reason: str) -> bool:
        return self._update(
            "UPDATE jobs SET state = 'unknown', error = ?, updated_at = ? WHERE id = ? AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def mark_rejected(self, row_id: int, reason: str) -> bool:
        return self._update(
            "UPDATE jobs SET state = 'rejected', error = ?, updated_at = ? WHERE id = ? AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def settle_stale_submits(self, older_than: float) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'unknown', updated_at = ?,"
                " error = 'the server stopped before the submit was answered; the job may exist'"
                " WHERE state = 'submitting' AND submitted_at < ?",
                (self._clock(), older_than),
            )
        return cursor.rowcount

    # ---- after the submit ------------------------------------------------------------------------------------

    def store_result(self, request_id: str, result: dict[str, Any], media_urls: list[str]) -> bool:
        now = self._clock()
        return self._update(
            "UPDATE jobs SET state = 'completed', result = ?, media_urls = ?, result_at = ?, updated_at = ?,"
            " error = NULL, watch_owner = NULL, watch_until = NULL, watch_kind = NULL"
            " WHERE request_id = ? AND result IS NULL",
            (self._json(result), self._json(media_urls), now, now, request_id),
        )

    def mark_failed(self, request_id: str, error: str, *, cancelled: bool = False) -> bool:
        return self._update(
            "UPDATE jobs SET state = ?, error = ?, updated_at = ?,"
            " watch_owner = NULL, watch_until = NULL, watch_kind = NULL WHERE request_id = ? AND result IS NULL",
            ("cancelled" if cancelled else "failed", self._text(error), self._clock(), request_id),
        )

    def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT downloads FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE jobs SET downloads = ?, updated_at = ? WHERE request_id = ?",
                (self._download_entries(row["downloads"], url, path, sha256, size), self._clock(), request_id),
            )
        return True

    # ---- reading ---------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def get_row(self, row_id: int) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    def list_jobs(
        self, *, state: str | None = None, endpoint_id: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[JobRow]:
        check_state(state)
        return self._select(
            f"{SELECT} WHERE (:state IS NULL OR state = :state)"
            " AND (:endpoint IS NULL OR endpoint_id = :endpoint) AND (:since IS NULL OR submitted_at >= :since)"
            " ORDER BY submitted_at DESC, id DESC LIMIT :limit",
            {"state": state, "endpoint": endpoint_id, "since": since, "limit": check_limit(limit)},
        )

    def unfinished(self, *, limit: int = 100) -> list[JobRow]:
        return self._select(f"{SELECT} WHERE {UNFINISHED} ORDER BY submitted_at, id LIMIT ?", (check_limit(limit),))

    # ---- leases ----------------------------------------------------------------------------------------------

    def claim_watch(self, lease_seconds: float, *, limit: int, submitted_since: float) -> list[JobRow]:
        # BEGIN IMMEDIATE: no other process claims between the read and the update
        with self._write(durable=False) as conn:
            ids = [
                row["id"]
                for row in conn.execute(
                    f"SELECT id FROM jobs WHERE {UNFINISHED} AND submitted_at >= :since AND (watch_until IS NULL"
                    f" OR watch_until < {NOW} OR (watch_owner = :me AND watch_kind = 'watch'))"
                    " ORDER BY submitted_at, id LIMIT :limit",
                    {"since": submitted_since, "me": self.instance, "limit": check_limit(limit)},
                )
            ]
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            conn.execute(
                f"UPDATE jobs SET watch_owner = ?, watch_kind = 'watch', watch_until = {NOW} + ? WHERE id IN ({marks})",
                (self.instance, lease_seconds, *ids),
            )
            rows = conn.execute(f"{SELECT} WHERE id IN ({marks}) ORDER BY submitted_at, id", ids).fetchall()
        return [job_row(row) for row in rows]

    def claim_wait(self, request_id: str, lease_seconds: float) -> WaitClaim:
        with self._write(durable=False) as conn:
            taken = conn.execute(
                f"UPDATE jobs SET watch_owner = :me, watch_kind = 'wait', watch_until = {NOW} + :lease"
                f" WHERE request_id = :id AND {UNFINISHED} AND (watch_until IS NULL OR watch_until < {NOW}"
                " OR watch_kind = 'watch' OR watch_owner = :me)",
                {"me": self.instance, "lease": lease_seconds, "id": request_id},
            ).rowcount
            if taken:
                return "taken"
            busy = conn.execute(f"SELECT 1 FROM jobs WHERE request_id = ? AND {UNFINISHED}", (request_id,)).fetchone()
        return "busy" if busy else "untracked"

    def renew_wait(self, request_id: str, lease_seconds: float) -> bool:
        return self._update(
            f"UPDATE jobs SET watch_until = {NOW} + ? WHERE request_id = ? AND {UNFINISHED}"
            " AND watch_owner = ? AND watch_kind = 'wait'",
            (lease_seconds, request_id, self.instance),
            durable=False,
        )

    def release(self, request_id: str) -> bool:
        return self._update(
            "UPDATE jobs SET watch_owner = NULL, watch_until = NULL, watch_kind = NULL"
            " WHERE request_id = ? AND watch_owner = ?",
            (request_id, self.instance),
            durable=False,
        )

    def release_all(self) -> int:
        with self._write(durable=False) as conn:
            return conn.execute(
                "UPDATE jobs SET watch_owner = NULL, watch_until = NULL, watch_kind = NULL WHERE watch_owner = ?",
                (self.instance,),
            ).rowcount

    def lease(self, request_id: str) -> Lease | None:
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute(
                        f"SELECT watch_owner, watch_kind, watch_until - {NOW} AS left FROM jobs"
                        " WHERE request_id = ? AND watch_owner IS NOT NULL",
                        (request_id,),
                    )
                    .fetchone()
                )
            except sqlite3.Error as exc:
                raise error(self.path, exc) from None
        return None if row is None else Lease(row["watch_owner"], row["watch_kind"], row["left"])

    # ---- other processes' changes ----------------------------------------------------------------------------

    async def relay_changes(self, publish: Callable[[str], None]) -> None:
        """Every second, one `PRAGMA data_version` tells whether another connection committed; only then are the
        rows updated in the last few seconds read, and those not seen at that update time published."""
        seen: dict[str, float] = {}
        version: int | None = None
        first = True
        while True:
            try:
                changed, version = await anyio.to_thread.run_sync(self._changes_since, seen, version)
            except LedgerError as exc:
                log.info("looking for other processes' job changes: %s", exc)
                changed = []
            if not first:
                for request_id in changed:
                    publish(request_id)
            first = False
            await anyio.sleep(RELAY_INTERVAL)

    def _changes_since(self, seen: dict[str, float], version: int | None) -> tuple[list[str], int]:
        with self._lock:
            conn = self._connection()
            try:
                current = int(conn.execute("PRAGMA data_version").fetchone()[0])
                if current == version:
                    return [], current
                cutoff = self._clock() - RELAY_OVERLAP
                rows = conn.execute(
                    "SELECT request_id, updated_at FROM jobs WHERE updated_at >= ? AND request_id IS NOT NULL",
                    (cutoff,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise error(self.path, exc) from None
        changed = [row["request_id"] for row in rows if seen.get(row["request_id"]) != row["updated_at"]]
        seen.update((row["request_id"], row["updated_at"]) for row in rows)
        for request_id in [key for key, at in seen.items() if at < cutoff]:
            del seen[request_id]
        return changed, current

    # ---- lifetime --------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteLedger:
        return self

    # ---- plumbing --------------------------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One short write transaction; IMMEDIATE takes the write lock up front, so it waits, never deadlocks.

        `durable=False` (leases: lost on a power cut, they only expire sooner) commits without an fsync; the next
        durable commit syncs it along, and commits made before it were synced already."""
        with self._lock:
            conn = self._connection()
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise error(self.path, exc) from None
                raise
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")

    def _update(self, sql: str, params: tuple[Any, ...], *, durable: bool = True) -> bool:
        with self._write(durable=durable) as conn:
            return conn.execute(sql, params).rowcount > 0

    def _select(self, sql: str, params: tuple[Any, ...] | dict[str, Any]) -> list[JobRow]:
        with self._lock:
            try:
                return [job_row(row) for row in self._connection().execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise error(self.path, exc) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"the job ledger {self.path} is closed")
        return self._conn
