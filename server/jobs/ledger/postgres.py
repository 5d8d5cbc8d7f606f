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
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from server.jobs.ledger.postgres_schema import TABLE, migrate

log = logging.getLogger(__name__)

CHANNEL = "fal_mcp_jobs"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
NOW = "extract(epoch FROM clock_timestamp())::double precision"  # the database's clock, epoch seconds
UNFINISHED = "state = 'submitted' AND request_id IS NOT NULL"
END_LEASE = "watch_owner = NULL, watch_until = NULL, watch_kind = NULL"
POOL_WAIT_SECONDS = 30.0  # longest a call waits for a free connection before failing
RELAY_RETRY_SECONDS = (1.0, 30.0)  # first and longest pause before listening again after a lost connection


class PostgresLedger(JobLedger):
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

    # ---- submitting ------------------------------------------------------------------------------------------

    def begin_submit(self, endpoint_id: str, input: dict[str, Any]) -> int:
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute(
                f"INSERT INTO {TABLE} (endpoint_id, state, input, submitted_at, updated_at)"
                " VALUES (%s, 'submitting', %s, %s, %s) RETURNING id",
                (endpoint_id, self._json(input), now, now),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def mark_submitted(self, row_id: int, request_id: str, queue_position: int | None) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET state = 'submitted', request_id = %s, queue_position = %s, updated_at = %s"
            " WHERE id = %s AND state IN ('submitting', 'unknown')",
            (request_id, queue_position, self._clock(), row_id),
            request_id,
        )

    def mark_unknown(self, row_id: int, reason: str) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET state = 'unknown', error = %s, updated_at = %s WHERE id = %s AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def mark_rejected(self, row_id: int, reason: str) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET state = 'rejected', error = %s, updated_at = %s"
            " WHERE id = %s AND state = 'submitting'",
            (self._text(reason), self._clock(), row_id),
        )

    def settle_stale_submits(self, older_than: float) -> int:
        with self._transaction() as conn:
            return conn.execute(
                f"UPDATE {TABLE} SET state = 'unknown', updated_at = %s,"
                " error = 'the server stopped before the submit was answered; the job may exist'"
                " WHERE state = 'submitting' AND submitted_at < %s",
                (self._clock(), older_than),
            ).rowcount

    # ---- after the submit ------------------------------------------------------------------------------------

    def store_result(self, request_id: str, result: dict[str, Any], media_urls: list[str]) -> bool:
        now = self._clock()
        return self._change(
            f"UPDATE {TABLE} SET state = 'completed', result = %s, media_urls = %s, result_at = %s, updated_at = %s,"
            f" error = NULL, {END_LEASE} WHERE request_id = %s AND result IS NULL",
            (self._json(result), self._json(media_urls), now, now, request_id),
            request_id,
        )

    def mark_failed(self, request_id: str, error: str, *, cancelled: bool = False) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET state = %s, error = %s, updated_at = %s, {END_LEASE}"
            " WHERE request_id = %s AND result IS NULL",
            ("cancelled" if cancelled else "failed", self._text(error), self._clock(), request_id),
            request_id,
        )

    def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> bool:
        with self._transaction() as conn:
            # FOR UPDATE: two instances recording downloads of one job at once must not lose one of them
            row = conn.execute(
                f"SELECT downloads FROM {TABLE} WHERE request_id = %s FOR UPDATE", (request_id,)
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                f"UPDATE {TABLE} SET downloads = %s, updated_at = %s WHERE request_id = %s",
                (self._download_entries(row[0], url, path, sha256, size), self._clock(), request_id),
            )
            self._notify(conn, request_id)
        return True

    # ---- reading ---------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE request_id = %s", (request_id,))
        return rows[0] if rows else None

    def get_row(self, row_id: int) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE id = %s", (row_id,))
        return rows[0] if rows else None

    def list_jobs(
        self, *, state: str | None = None, endpoint_id: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[JobRow]:
        check_state(state)
        # Filters are added only when given: a parameter compared with NULL has no type PostgreSQL can infer.
        filters = ["TRUE"]
        params: dict[str, Any] = {"limit": check_limit(limit)}
        wanted = (("state", "=", state), ("endpoint_id", "=", endpoint_id), ("submitted_at", ">=", since))
        for column, operator, value in wanted:
            if value is not None:
                filters.append(f"{column} {operator} %({column})s")
                params[column] = value
        return self._select(
            f"{SELECT} WHERE {' AND '.join(filters)} ORDER BY submitted_at DESC, id DESC LIMIT %(limit)s", params
        )

    def unfinished(self, *, limit: int = 100) -> list[JobRow]:
        return self._select(f"{SELECT} WHERE {UNFINISHED} ORDER BY submitted_at, id LIMIT %s", (check_limit(limit),))

    # ---- leases ----------------------------------------------------------------------------------------------

    def claim_watch(self, lease_seconds: float, *, limit: int, submitted_since: float) -> list[JobRow]:
        with self._transaction(durable=False) as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET watch_owner = %(me)s, watch_kind = 'watch', watch_until = {NOW} + %(lease)s"
                f" WHERE id IN (SELECT id FROM {TABLE} WHERE {UNFINISHED} AND submitted_at >= %(since)s"
                f" AND (watch_until IS NULL OR watch_until < {NOW} OR (watch_owner = %(me)s AND watch_kind = 'watch'))"
                " ORDER BY submitted_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                f" RETURNING {', '.join(COLUMNS)}",
                {"me": self.instance, "lease": lease_seconds, "since": submitted_since, "limit": check_limit(limit)},
            )
            rows = [job_row(row) for row in cursor.fetchall()]
        return sorted(rows, key=lambda row: (row.submitted_at, row.id))

    def claim_wait(self, request_id: str, lease_seconds: float) -> WaitClaim:
        with self._transaction(durable=False) as conn:
            taken = conn.execute(
                f"UPDATE {TABLE} SET watch_owner = %(me)s, watch_kind = 'wait', watch_until = {NOW} + %(lease)s"
                f" WHERE request_id = %(id)s AND {UNFINISHED} AND (watch_until IS NULL OR watch_until < {NOW}"
                " OR watch_kind = 'watch' OR watch_owner = %(me)s)",
                {"me": self.instance, "lease": lease_seconds, "id": request_id},
            ).rowcount
            if taken:
                return "taken"
            busy = conn.execute(f"SELECT 1 FROM {TABLE} WHERE request_id = %s AND {UNFINISHED}", (request_id,))
            return "busy" if busy.fetchone() else "untracked"

    def renew_wait(self, request_id: str, lease_seconds: float) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET watch_until = {NOW} + %s WHERE request_id = %s AND {UNFINISHED}"
            " AND watch_owner = %s AND watch_kind = 'wait'",
            (lease_seconds, request_id, self.instance),
            durable=False,
        )

    def release(self, request_id: str) -> bool:
        return self._change(
            f"UPDATE {TABLE} SET {END_LEASE} WHERE request_id = %s AND watch_owner = %s",
            (request_id, self.instance),
            durable=False,
        )

    def release_all(self) -> int:
        with self._transaction(durable=False) as conn:
            return conn.execute(f"UPDATE {TABLE} SET {END_LEASE} WHERE watch_owner = %s", (self.instance,)).rowcount

    def lease(self, request_id: str) -> Lease | None:
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT watch_owner, watch_kind, watch_until - {NOW} FROM {TABLE}"
                " WHERE request_id = %s AND watch_owner IS NOT NULL",
                (request_id,),
            ).fetchone()
        return None if row is None else Lease(row[0], row[1], float(row[2]))

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

    def _notify(self, conn: psycopg.Connection[Any], request_id: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"id": request_id, "by": self.instance})))

    # ---- lifetime --------------------------------------------------------------------------------------------

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresLedger:
        return self

    # ---- plumbing --------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection: committed when the block ends, rolled back if it raises.
        `durable=False` (leases: lost in a crash, they only expire sooner) commits without waiting for the WAL
        flush."""
        pool = self._pool
        if pool is None:
            raise LedgerError(f"the job ledger {self._location} is closed")
        try:
            with pool.connection() as conn:
                if not durable:
                    conn.execute("SET LOCAL synchronous_commit = off")
                yield conn
        except PoolTimeout:
            raise LedgerError(
                f"the job ledger {self._location} had no free connection for {POOL_WAIT_SECONDS:.0f} s (the database "
                "is slow or unreachable, or FAL_MCP_DATABASE_POOL_SIZE is too small); try again."
            ) from None
        except psycopg.Error as exc:
            raise LedgerError(f"the job ledger {self._location} failed: {self._redact(exc)}.") from None

    def _change(
        self, sql: str, params: tuple[Any, ...], request_id: str | None = None, *, durable: bool = True
    ) -> bool:
        with self._transaction(durable=durable) as conn:
            changed = conn.execute(sql, params).rowcount > 0
            if changed and request_id is not None:
                self._notify(conn, request_id)
        return changed

    def _select(self, sql: str, params: tuple[Any, ...] | dict[str, Any]) -> list[JobRow]:
        with self._transaction() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, params)
            return [job_row(row) for row in cursor.fetchall()]

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
