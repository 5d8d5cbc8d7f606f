"""The SQL both ledger backends run, written once: the schema's migrations, the row reading, the state changes,
the download bookkeeping and the leases. A backend gives its `Dialect` (table name, column types, clock,
placeholder style) and its transactions; it keeps only what really differs (how a watcher claims jobs, how it
learns of other instances' changes, how it connects).

Statements are written with `:name` placeholders and `{jobs}` / `{now}` for the table and the database's clock;
`Dialect.sql` renders them once per dialect.

To add a column: append a field to `JobRow` (base.py; `COLUMNS` follows it), append one step to `MIGRATIONS`
below (it serves both backends) and bump `SCHEMA_VERSION`.
"""

from __future__ import annotations

import functools
import json
import re
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from server.jobs.ledger.base import (
    COLUMNS,
    SCHEMA_VERSION,
    Charge,
    JobLedger,
    JobRow,
    Lease,
    SpendLine,
    WaitClaim,
    check_limit,
    check_state,
    job_row,
)
from server.route_family import route_family_of

# MIGRATIONS[n] takes a ledger from schema n to n + 1, on either backend (SQLite keeps the version in PRAGMA
# user_version, PostgreSQL in a table of its own). Append a step; never edit a released one. Each step's statements
# run in one transaction. {jobs}: the table; {id}: its primary key; {time}: a column of epoch seconds.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {jobs} (
            id             {id},
            request_id     TEXT,                               -- NULL until the upstream answers
            endpoint_id    TEXT NOT NULL,
            state          TEXT NOT NULL,
            input          TEXT NOT NULL,                      -- JSON object
            submitted_at   {time} NOT NULL,
            updated_at     {time} NOT NULL,
            queue_position INTEGER,
            error          TEXT,
            result         TEXT,                               -- JSON object
            result_at      {time},
            media_urls     TEXT NOT NULL DEFAULT '[]',         -- JSON list of URLs
            downloads      TEXT NOT NULL DEFAULT '[]'          -- JSON list of {{url, path, sha256, size}}
        )""",
        "CREATE UNIQUE INDEX {jobs}_request_id ON {jobs} (request_id) WHERE request_id IS NOT NULL",
        "CREATE INDEX {jobs}_submitted_at ON {jobs} (submitted_at)",
        "CREATE INDEX {jobs}_state ON {jobs} (state, submitted_at)",
    ),
    (
        # The lease: which instance follows the job, until when (epoch seconds), and whether for a wait.
        "ALTER TABLE {jobs} ADD COLUMN watch_owner TEXT",
        "ALTER TABLE {jobs} ADD COLUMN watch_until {time}",
        "ALTER TABLE {jobs} ADD COLUMN watch_kind TEXT",
        # Other processes' changes are found by their update time.
        "CREATE INDEX {jobs}_updated_at ON {jobs} (updated_at)",
    ),
    (
        # Listing by model (alone, or with a state) reads an index in submit order and stops at its limit, so a
        # filter that matches nothing costs one index lookup, not a scan of every job.
        "CREATE INDEX {jobs}_endpoint ON {jobs} (endpoint_id, submitted_at)",
        "CREATE INDEX {jobs}_endpoint_state ON {jobs} (endpoint_id, state, submitted_at)",
        # An instance giving its leases back at shutdown finds them without reading every job (few rows are leased).
        "CREATE INDEX {jobs}_watch_owner ON {jobs} (watch_owner) WHERE watch_owner IS NOT NULL",
    ),
    (
        # The route family a job was made on (server.route_family): recorded beside its route, the model id.
        "ALTER TABLE {jobs} ADD COLUMN route_family TEXT NOT NULL DEFAULT 'fal'",
        "UPDATE {jobs} SET route_family = 'kling' WHERE substr(endpoint_id, 1, 6) = 'kling/'",
        "UPDATE {jobs} SET route_family = 'luma' WHERE substr(endpoint_id, 1, 5) = 'luma/'",
    ),
    (
        # Money: the estimate made at submit (JSON), the cost (held, billed, estimated or released) and the day in the
        # user's time zone it counts against; a budget check sums one day's costs through the index.
        "ALTER TABLE {jobs} ADD COLUMN estimate TEXT",
        "ALTER TABLE {jobs} ADD COLUMN cost_usd {time}",
        "ALTER TABLE {jobs} ADD COLUMN cost_kind TEXT",
        "ALTER TABLE {jobs} ADD COLUMN budget_day TEXT",
        "CREATE INDEX {jobs}_budget_day ON {jobs} (budget_day, endpoint_id) WHERE budget_day IS NOT NULL",
        # Prices fetched from fal's pricing API, shared by every instance (price: JSON).
        "CREATE TABLE {jobs}_prices (price_key TEXT PRIMARY KEY, price TEXT NOT NULL, fetched_at {time} NOT NULL)",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
UNFINISHED = "state = 'submitted' AND request_id IS NOT NULL"
SPENT = "cost_kind IN ('reserved', 'billed', 'estimated')"  # base.SPENT_KINDS
# A job that ends without running gives its hold back; a finished job's hold becomes its (estimated) cost.
RELEASE_COST = (
    "cost_usd = CASE WHEN cost_kind IS NULL THEN NULL ELSE 0 END,"
    " cost_kind = CASE WHEN cost_kind IS NULL THEN NULL ELSE 'released' END"
)
KEEP_ESTIMATE = "cost_kind = CASE WHEN cost_kind = 'reserved' THEN 'estimated' ELSE cost_kind END"
END_LEASE = "watch_owner = NULL, watch_until = NULL, watch_kind = NULL"
NEWEST_FIRST = "ORDER BY submitted_at DESC, id DESC"
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {{jobs}}"


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends' SQL."""

    table: str
    id_column: str  # the primary key's definition
    time_type: str  # epoch seconds; PostgreSQL's REAL would lose ~30 s on today's epoch
    now: str  # the database's clock, epoch seconds (lease times are on it, so instances agree)
    placeholders: Literal["named", "pyformat"]  # sqlite3's :name, or psycopg's %(name)s
    returning_id: bool  # INSERT ... RETURNING id (else the driver's lastrowid)
    lock_rows: str  # appended to a read that a write in the same transaction depends on
    lock_budget: str  # run first in a transaction that checks a budget, so such checks run one at a time ("": none)

    @functools.cache  # noqa: B019  # dialects are module constants: the cache never outlives them
    def sql(self, template: str) -> str:
        text = template.format(jobs=self.table, now=self.now)
        if self.placeholders == "pyformat":
            assert "%" not in text, "a literal % would be read as a placeholder"
            text = _NAMED.sub(r"%(\1)s", text)
        return text

    def migration(self, steps: tuple[str, ...]) -> list[str]:
        return [step.format(jobs=self.table, id=self.id_column, time=self.time_type) for step in steps]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Session(Protocol):
    """One transaction's connection (sqlite3's) or cursor (psycopg's, with mapping rows)."""

    def execute(self, sql: str, params: Mapping[str, Any]) -> Any: ...


class SqlLedger(JobLedger):
    """The ledger's SQL on top of a backend's transactions. Rows come back as mappings keyed by column."""

    dialect: Dialect
    _clock: Callable[[], float]

    @abstractmethod
    def _write(self, *, durable: bool = True) -> AbstractContextManager[Session]:
        """One short write transaction. `durable=False` (leases: lost in a crash, they only expire sooner) may
        commit without waiting for the disk."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Session]:
        """A read (it never waits for a writer)."""

    def _changed(self, session: Session, request_id: str) -> None:
        """Called inside the transaction that changed a job's row (PostgreSQL tells the other instances)."""

    # ---- plumbing ------------------------------------------------------------------------------------------------

    def _execute(self, session: Session, template: str, params: Mapping[str, Any]) -> Cursor:
        cursor: Cursor = session.execute(self.dialect.sql(template), params)
        return cursor

    def _update(
        self, template: str, params: Mapping[str, Any], request_id: str | None = None, *, durable: bool = True
    ) -> int:
        """Run one UPDATE; returns how many rows changed (and tells others about `request_id` when any did)."""
        with self._write(durable=durable) as session:
            changed = self._execute(session, template, params).rowcount
            if changed and request_id is not None:
                self._changed(session, request_id)
        return changed

    def _select(self, template: str, params: Mapping[str, Any]) -> list[JobRow]:
        with self._read() as session:
            return [job_row(row) for row in self._execute(session, template, params).fetchall()]

    # ---- submitting ----------------------------------------------------------------------------------------------

    def begin_submit(self, endpoint_id: str, input: dict[str, Any], charge: Charge | None = None) -> int:
        now = self._clock()
        insert = (
            "INSERT INTO {jobs} (endpoint_id, route_family, state, input, submitted_at, updated_at, estimate, cost_usd,"
            " cost_kind, budget_day)"
            " VALUES (:endpoint, :family, 'submitting', :input, :now, :now, :estimate, :usd, :kind, :day)"
        )
        params = {
            "endpoint": endpoint_id,
            "family": route_family_of(endpoint_id),
            "input": self._json(input),
            "now": now,
            "estimate": None if charge is None or charge.estimate is None else self._json(charge.estimate),
            "usd": None if charge is None else charge.usd,
            "kind": None if charge is None or charge.usd is None else "reserved",
            "day": None if charge is None else charge.day,
        }
        with self._write() as session:
            if charge is not None and charge.check is not None:
                # The day's spend is read and the hold written in one transaction, one such transaction at a time
                # (SQLite: the write lock; PostgreSQL: an advisory lock), so two submits never share the last dollar.
                if self.dialect.lock_budget:
                    self._execute(session, self.dialect.lock_budget, {})
                charge.check(self._day_spend(session, charge.day))
            if self.dialect.returning_id:
                return int(self._execute(session, insert + " RETURNING id", params).fetchone()["id"])
            row_id: int = session.execute(self.dialect.sql(insert), params).lastrowid
        return row_id

    def _day_spend(self, session: Session, day: str) -> float:
        row = self._execute(
            session,
            f"SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM {{jobs}} WHERE budget_day = :day AND {SPENT}",
            {"day": day},
        ).fetchone()
        return float(row["usd"])

    def mark_submitted(self, row_id: int, request_id: str, queue_position: int | None) -> bool:
        return bool(
            self._update(
                "UPDATE {jobs} SET state = 'submitted', request_id = :request_id, queue_position = :position,"
                " updated_at = :now WHERE id = :row AND state IN ('submitting', 'unknown')",
                {"request_id": request_id, "position": queue_position, "now": self._clock(), "row": row_id},
                request_id,
            )
        )

    def mark_unknown(self, row_id: int, reason: str) -> bool:
        return self._settle_submit("unknown", row_id, reason)

    def mark_rejected(self, row_id: int, reason: str) -> bool:
        return self._settle_submit("rejected", row_id, reason)

    def _settle_submit(self, state: str, row_id: int, reason: str) -> bool:
        return bool(
            self._update(
                "UPDATE {jobs} SET state = :state, error = :reason, updated_at = :now"
                + (f", {RELEASE_COST}" if state == "rejected" else "")
                + " WHERE id = :row AND state = 'submitting'",
                {"state": state, "reason": self._text(reason), "now": self._clock(), "row": row_id},
            )
        )

    def settle_stale_submits(self, older_than: float) -> int:
        return self._update(
            "UPDATE {jobs} SET state = 'unknown', updated_at = :now,"
            " error = 'the server stopped before the submit was answered; the job may exist'"
            " WHERE state = 'submitting' AND submitted_at < :older_than",
            {"now": self._clock(), "older_than": older_than},
        )

    # ---- after the submit ----------------------------------------------------------------------------------------

    def store_result(self, request_id: str, result: dict[str, Any], media_urls: list[str]) -> bool:
        now = self._clock()
        return bool(
            self._update(
                "UPDATE {jobs} SET state = 'completed', result = :result, media_urls = :urls, result_at = :now,"
                f" updated_at = :now, error = NULL, {END_LEASE}, {KEEP_ESTIMATE}"
                " WHERE request_id = :id AND result IS NULL",
                {"result": self._json(result), "urls": self._json(media_urls), "now": now, "id": request_id},
                request_id,
            )
        )

    def mark_failed(self, request_id: str, error: str, *, cancelled: bool = False) -> bool:
        return bool(
            self._update(
                f"UPDATE {{jobs}} SET state = :state, error = :error, updated_at = :now, {END_LEASE}, {RELEASE_COST}"
                " WHERE request_id = :id AND result IS NULL",
                {
                    "state": "cancelled" if cancelled else "failed",
                    "error": self._text(error),
                    "now": self._clock(),
                    "id": request_id,
                },
                request_id,
            )
        )

    def settle_cost(self, request_id: str, usd: float) -> bool:
        return bool(
            self._update(
                "UPDATE {jobs} SET cost_usd = :usd, cost_kind = 'billed', updated_at = :now"
                " WHERE request_id = :id AND state = 'completed'",
                {"usd": usd, "now": self._clock(), "id": request_id},
                request_id,
            )
        )

    def spend(self, *, since_day: str) -> list[SpendLine]:
        with self._read() as session:
            rows = self._execute(
                session,
                "SELECT budget_day, endpoint_id, SUM(cost_usd) AS usd, COUNT(*) AS jobs,"
                " SUM(CASE WHEN cost_kind = 'billed' THEN cost_usd ELSE 0 END) AS billed"
                f" FROM {{jobs}} WHERE budget_day >= :since AND {SPENT}"
                " GROUP BY budget_day, endpoint_id ORDER BY budget_day, endpoint_id",
                {"since": since_day},
            ).fetchall()
        return [
            SpendLine(row["budget_day"], row["endpoint_id"], float(row["usd"]), int(row["jobs"]), float(row["billed"]))
            for row in rows
        ]

    def cached_price(self, key: str) -> tuple[dict[str, Any], float] | None:
        with self._read() as session:
            row = self._execute(
                session, "SELECT price, fetched_at FROM {jobs}_prices WHERE price_key = :key", {"key": key}
            ).fetchone()
        return None if row is None else (json.loads(row["price"]), float(row["fetched_at"]))

    def cache_price(self, key: str, price: dict[str, Any], fetched_at: float) -> None:
        with self._write() as session:
            self._execute(
                session,
                "INSERT INTO {jobs}_prices (price_key, price, fetched_at) VALUES (:key, :price, :at)"
                " ON CONFLICT (price_key) DO UPDATE SET price = excluded.price, fetched_at = excluded.fetched_at",
                {"key": key, "price": self._json(price), "at": fetched_at},
            )

    def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> bool:
        with self._write() as session:
            # The row is locked (PostgreSQL) or the file is (SQLite): two downloads of one job at once both count.
            row = self._execute(
                session,
                "SELECT downloads FROM {jobs} WHERE request_id = :id" + self.dialect.lock_rows,
                {"id": request_id},
            ).fetchone()
            if row is None:
                return False
            self._execute(
                session,
                "UPDATE {jobs} SET downloads = :downloads, updated_at = :now WHERE request_id = :id",
                {
                    "downloads": self._download_entries(row["downloads"], url, path, sha256, size),
                    "now": self._clock(),
                    "id": request_id,
                },
            )
            self._changed(session, request_id)
        return True

    # ---- reading -------------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE request_id = :id", {"id": request_id})
        return rows[0] if rows else None

    def get_row(self, row_id: int) -> JobRow | None:
        rows = self._select(f"{SELECT} WHERE id = :row", {"row": row_id})
        return rows[0] if rows else None

    def list_jobs(
        self, *, state: str | None = None, endpoint_id: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[JobRow]:
        check_state(state)
        # Only the filters given are written into the query: the planner then picks the index that serves them in
        # submit order ("x IS NULL OR ..." would hide the indexes), and PostgreSQL need not type a NULL parameter.
        filters: list[tuple[str, str, object]] = [
            ("state = :state", "state", state),
            ("endpoint_id = :endpoint", "endpoint", endpoint_id),
            ("submitted_at >= :since", "since", since),
        ]
        given = [(clause, name, value) for clause, name, value in filters if value is not None]
        where = " AND ".join(clause for clause, _, _ in given) or "1 = 1"
        params = {name: value for _, name, value in given} | {"limit": check_limit(limit)}
        return self._select(f"{SELECT} WHERE {where} {NEWEST_FIRST} LIMIT :limit", params)

    def recent_request_ids(self, *, limit: int) -> list[str]:
        with self._read() as session:
            rows = self._execute(
                session,
                f"SELECT request_id FROM {{jobs}} WHERE request_id IS NOT NULL {NEWEST_FIRST} LIMIT :limit",
                {"limit": check_limit(limit)},
            ).fetchall()
        return [row["request_id"] for row in rows]

    def unfinished(self, *, limit: int = 100) -> list[JobRow]:
        return self._select(
            f"{SELECT} WHERE {UNFINISHED} ORDER BY submitted_at, id LIMIT :limit", {"limit": check_limit(limit)}
        )

    # ---- leases --------------------------------------------------------------------------------------------------

    def claim_wait(self, request_id: str, lease_seconds: float) -> WaitClaim:
        with self._write(durable=False) as session:
            taken = self._execute(
                session,
                "UPDATE {jobs} SET watch_owner = :me, watch_kind = 'wait', watch_until = {now} + :lease"
                f" WHERE request_id = :id AND {UNFINISHED} AND (watch_until IS NULL OR watch_until < {{now}}"
                " OR watch_kind = 'watch' OR watch_owner = :me)",
                {"me": self.instance, "lease": lease_seconds, "id": request_id},
            ).rowcount
            if taken:
                return "taken"
            busy = self._execute(
                session, f"SELECT 1 AS found FROM {{jobs}} WHERE request_id = :id AND {UNFINISHED}", {"id": request_id}
            ).fetchone()
        return "busy" if busy else "untracked"

    def renew_wait(self, request_id: str, lease_seconds: float) -> bool:
        return bool(
            self._update(
                f"UPDATE {{jobs}} SET watch_until = {{now}} + :lease WHERE request_id = :id AND {UNFINISHED}"
                " AND watch_owner = :me AND watch_kind = 'wait'",
                {"lease": lease_seconds, "id": request_id, "me": self.instance},
                durable=False,
            )
        )

    def release(self, request_id: str) -> bool:
        return bool(
            self._update(
                f"UPDATE {{jobs}} SET {END_LEASE} WHERE request_id = :id AND watch_owner = :me",
                {"id": request_id, "me": self.instance},
                durable=False,
            )
        )

    def release_all(self) -> int:
        return self._update(
            f"UPDATE {{jobs}} SET {END_LEASE} WHERE watch_owner = :me", {"me": self.instance}, durable=False
        )

    def lease(self, request_id: str) -> Lease | None:
        with self._read() as session:
            row = self._execute(
                session,
                "SELECT watch_owner, watch_kind, watch_until - {now} AS seconds_left FROM {jobs}"
                " WHERE request_id = :id AND watch_owner IS NOT NULL",
                {"id": request_id},
            ).fetchone()
        return None if row is None else Lease(row["watch_owner"], row["watch_kind"], float(row["seconds_left"]))

    # ---- a watcher's claim: the candidates, oldest first -----------------------------------------------------------

    CLAIMABLE = (
        f"SELECT id FROM {{jobs}} WHERE {UNFINISHED} AND submitted_at >= :since AND (watch_until IS NULL"
        " OR watch_until < {now} OR (watch_owner = :me AND watch_kind = 'watch'))"
        " ORDER BY submitted_at, id LIMIT :limit"
    )

    @staticmethod
    def _oldest_first(rows: Iterable[Mapping[str, Any]]) -> list[JobRow]:
        return sorted((job_row(row) for row in rows), key=lambda row: (row.submitted_at, row.id))
