"""The shared ledger: one PostgreSQL database used by several server instances at once (FAL_MCP_DATABASE_URL).

The same contract as the SQLite ledger, for a team or hosted deployment:
- each call is one short transaction on a connection from a small pool (psycopg 3, synchronous: callers run it
  in a worker thread);
- a lease claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so instances claiming at once never take
  the same job and never wait on each other;
- every change to a job's row NOTIFYs the channel inside its transaction (delivered only after commit), and each
  instance LISTENs on one connection of its own to publish other instances' changes (`relay_changes`);
- the URL's password is never put in a message: errors name the database as `location` and are redacted.

psycopg is an optional extra (`pip install "fal-queue-mcp[postgres]"`): only import this module when a database
URL is configured.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from server.jobs.ledger.base import COLUMNS, JobRow, LedgerError, check_limit, new_instance_id
from server.jobs.ledger.postgres_schema import DIALECT, migrate
from server.jobs.ledger.sql import Session, SqlLedger

log = logging.getLogger(__name__)

CHANNEL = "fal_mcp_jobs"
POOL_WAIT_SECONDS = 30.0  # longest a call waits for a free connection before failing
RELAY_RETRY_SECONDS = (1.0, 30.0)  # first and longest pause before listening again after a lost connection


class PostgresLedger(SqlLedger):
    dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
        secrets: Sequence[str] = (),
        pool_size: int = 5,
        connect_timeout: float = 10.0,
    ) -> None:
        self.instance = instance or new_instance_id()
        self._secrets = [secret for secret in secrets if secret]
        self._url = url
        self._clock = clock
        self._location = safe_location(url)
        self._passwords = _passwords(url)
        # libpq counts whole seconds and treats less than 2 as 2
        self._connect_timeout = max(2, round(connect_timeout))
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=self._connect_timeout) as conn:
                migrate(conn, self._location)
        except psycopg.Error as exc:
            raise LedgerError(
                f"cannot use the PostgreSQL job ledger at {self._location} (FAL_MCP_DATABASE_URL): "
                f"{self._redact(exc)}. Check that the database is running and reachable and that the URL is right."
            ) from None
        self._pool: ConnectionPool | None = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"connect_timeout": self._connect_timeout},
            timeout=POOL_WAIT_SECONDS,
            name="fal-queue-mcp-ledger",
            open=True,
        )

    @property
    def location(self) -> str:
        return self._location

    # ---- leases ----------------------------------------------------------------------------------------------

    def claim_watch(self, lease_seconds: float, *, limit: int, submitted_since: float) -> list[JobRow]:
        # SKIP LOCKED: instances claiming at once never take the same job and never wait on each other
        with self._write(durable=False) as cursor:
            rows = self._execute(
                cursor,
                "UPDATE {jobs} SET watch_owner = :me, watch_kind = 'watch', watch_until = {now} + :lease"
                f" WHERE id IN ({self.CLAIMABLE} FOR UPDATE SKIP LOCKED) RETURNING {', '.join(COLUMNS)}",
                {"me": self.instance, "lease": lease_seconds, "since": submitted_since, "limit": check_limit(limit)},
            ).fetchall()
        return self._oldest_first(rows)

    # ---- other instances' changes ----------------------------------------------------------------------------

    async def relay_changes(self, publish: Callable[[str], None]) -> None:
        """LISTEN on a connection of its own; after a lost connection, listen again (changes meanwhile are
        missed: waits also look at the ledger now and then)."""
        pause = RELAY_RETRY_SECONDS[0]
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=self._connect_timeout
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    pause = RELAY_RETRY_SECONDS[0]
                    async for notice in conn.notifies():
                        request_id = self._foreign_change(notice.payload)
                        if request_id is not None:
                            publish(request_id)
            except psycopg.Error as exc:
                problem = self._redact(exc)
                log.warning("listening for other instances' job changes failed (%s); again in %.0f s", problem, pause)
            await anyio.sleep(pause)
            pause = min(RELAY_RETRY_SECONDS[1], pause * 2)

    def _foreign_change(self, payload: str) -> str | None:
        try:
            change = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(change, dict) or change.get("by") == self.instance:
            return None
        request_id = change.get("id")
        return request_id if isinstance(request_id, str) else None

    # ---- lifetime --------------------------------------------------------------------------------------------

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresLedger:
        return self

    # ---- plumbing --------------------------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        """One transaction on a pooled connection: committed when the block ends, rolled back if it raises.
        `durable=False` (leases: lost in a crash, they only expire sooner) commits without waiting for the WAL
        flush."""
        pool = self._pool
        if pool is None:
            raise LedgerError(f"the job ledger {self._location} is closed")
        try:
            with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
                if not durable:
                    cursor.execute("SET LOCAL synchronous_commit = off")
                yield cursor
        except PoolTimeout:
            raise LedgerError(
                f"the job ledger {self._location} had no free connection for {POOL_WAIT_SECONDS:.0f} s (the database "
                "is slow or unreachable, or FAL_MCP_DATABASE_POOL_SIZE is too small); try again."
            ) from None
        except psycopg.Error as exc:
            raise LedgerError(f"the job ledger {self._location} failed: {self._redact(exc)}.") from None

    def _read(self) -> AbstractContextManager[psycopg.Cursor[dict[str, Any]]]:
        return self._write()

    def _changed(self, session: Session, request_id: str) -> None:
        """NOTIFY inside the changing transaction: delivered to the listeners only once it commits."""
        session.execute(
            "SELECT pg_notify(%(channel)s, %(change)s)", {"channel": CHANNEL, "change": self._change_of(request_id)}
        )

    def _change_of(self, request_id: str) -> str:
        return json.dumps({"id": request_id, "by": self.instance})

    def _redact(self, exc: BaseException) -> str:
        text = str(exc).strip().replace("\n", " ")
        for secret in self._passwords:
            text = text.replace(secret, "[redacted]")
        return self._text(text)


def safe_location(url: str) -> str:
    """The database a URL names, for messages: scheme, user, host, port and database, never the password."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: psycopg will say so; the message needs no port
        port = ""
    return f"{parts.scheme}://{user + '@' if user else ''}{host}{port}{parts.path}"


def _passwords(url: str) -> list[str]:
    found = {urlsplit(url).password or ""}
    with suppress(psycopg.Error):
        found.add(str(conninfo_to_dict(url).get("password") or ""))
    return sorted((secret for secret in found if secret), key=len, reverse=True)
