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

import anyio

from server.jobs.ledger import sql
from server.jobs.ledger.base import JobRow, LedgerError, check_limit, new_instance_id
from server.jobs.ledger.sql import Dialect, SqlLedger
from server.jobs.ledger.sqlite_file import error, open_file

log = logging.getLogger(__name__)

APP_NAME = "fal-queue-mcp"
FILE_NAME = "jobs.sqlite3"
# The database's clock, in epoch seconds (the same machine's clock for every process sharing the file).
NOW = "((julianday('now') - 2440587.5) * 86400.0)"
DIALECT = Dialect(
    table="jobs",
    id_column="INTEGER PRIMARY KEY AUTOINCREMENT",  # AUTOINCREMENT: an id is never reused
    time_type="REAL",
    now=NOW,
    placeholders="named",
    returning_id=False,  # RETURNING needs SQLite 3.35; Python may bring an older one
    lock_rows="",  # a write transaction (BEGIN IMMEDIATE) holds the whole file
    lock_budget="",  # the write transaction (BEGIN IMMEDIATE) already runs alone
)
SELECT = DIALECT.sql(sql.SELECT)
MIGRATIONS = [DIALECT.migration(steps) for steps in sql.MIGRATIONS]
RELAY_INTERVAL = 1.0  # seconds between looks for other processes' changes (one cheap PRAGMA when none)
RELAY_OVERLAP = 15.0  # seconds of updates read again each look: longer than any writer waits for the lock


class SqliteLedger(SqlLedger):
    dialect = DIALECT

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
        self._conn: sqlite3.Connection | None = open_file(self.path, busy_timeout, MIGRATIONS)

    @classmethod
    def default_path(cls, state_dir: Path | None) -> Path:
        if state_dir is None:
            import platformdirs  # only for the default directory: imported when needed

            state_dir = platformdirs.user_state_path(APP_NAME, appauthor=False)
        return state_dir / FILE_NAME

    @property
    def location(self) -> str:
        return str(self.path)

    # ---- leases ----------------------------------------------------------------------------------------------

    def claim_watch(self, lease_seconds: float, *, limit: int, submitted_since: float) -> list[JobRow]:
        # BEGIN IMMEDIATE: no other process claims between the read and the update
        with self._write(durable=False) as conn:
            params = {"since": submitted_since, "me": self.instance, "limit": check_limit(limit)}
            ids = [row["id"] for row in self._execute(conn, self.CLAIMABLE, params).fetchall()]
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            conn.execute(
                f"UPDATE jobs SET watch_owner = ?, watch_kind = 'watch', watch_until = {NOW} + ? WHERE id IN ({marks})",
                (self.instance, lease_seconds, *ids),
            )
            return self._oldest_first(conn.execute(f"{SELECT} WHERE id IN ({marks})", ids).fetchall())

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

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Reads run outside any transaction (WAL: they never wait for a writer), under this ledger's lock."""
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise error(self.path, exc) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"the job ledger {self.path} is closed")
        return self._conn
