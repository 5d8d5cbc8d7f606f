"""The job ledger's interface, shared by its two backends (SQLite, embedded; PostgreSQL, for several instances).

Protocol-free (no MCP, no HTTP). A row is written *before* a submit is sent and updated as the job moves on, so
no request id or result is lost across restarts. Calls are synchronous and thread-safe; async callers run them
in a worker thread. Callers pass only the model input, never a key, and cap sizes; still, every text a writer
stores (inputs, reasons, results, URLs) has the secrets given at opening cut out first, since much of it comes
from an upstream that may echo the key back.

Leases make one instance the follower of each unfinished job: the watcher claims the jobs it will check (and
renews them every round), a `get_fal_result` wait takes its job's lease (from a watcher too), storing an outcome
clears it, and a lease its holder stopped renewing (a killed instance) expires and is taken over. Lease times
are on the database's clock, so instances on machines whose clocks disagree still agree on expiry.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from server.errors import redact, scrub_secrets

STATES = frozenset({"submitting", "submitted", "unknown", "rejected", "completed", "failed", "cancelled"})
MAX_LIST_LIMIT = 200  # jobs one listing returns at most (list_fal_jobs)
# Both backends share one list of migrations (sql.MIGRATIONS): schema 1 is the jobs table, 2 adds the lease columns,
# 3 the indexes that keep listing fast at a million jobs, 4 the route family each job was made on, 5 money (each
# job's estimate and cost, the price cache).
SCHEMA_VERSION = 5
JSON_COLUMNS = ("input", "result", "media_urls", "downloads", "estimate")
# What a job's `cost_usd` is: held against the budget until the job ends ('reserved'), the upstream's bill
# ('billed'), the estimate kept because the upstream told no bill ('estimated'), or nothing ('released': refused,
# failed or cancelled before running, none of which is billed).
COST_KINDS = frozenset({"reserved", "billed", "estimated", "released"})
SPENT_KINDS = ("reserved", "billed", "estimated")  # what counts against a budget

LeaseKind = Literal["watch", "wait"]
# What a wait found when it asked for its job's lease: it follows the job now ('taken'), another instance's wait
# follows it ('busy'), or the ledger has no unfinished row to lease (no such job, or already finished).
WaitClaim = Literal["taken", "busy", "untracked"]


class LedgerError(Exception):
    """The ledger cannot be used; the message says what is wrong and what to do (and never holds a password)."""


@dataclass(frozen=True)
class JobRow:
    """One job's row; its fields are the columns read (`COLUMNS`), in order."""

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
    # The route family the job was made on (fal, kling, luma); `endpoint_id` is its route (the model id).
    route_family: str = "fal"
    estimate: dict[str, Any] | None = None  # the price estimate made at submit (server.money), if any
    cost_usd: float | None = None
    cost_kind: str | None = None  # one of COST_KINDS, None when no price was known
    budget_day: str | None = None  # YYYY-MM-DD in the user's time zone: the day the job counts against


@dataclass(frozen=True)
class Charge:
    """The money a submit puts on its row: the estimate (JSON), the USD held against `day`, and `check`, run on that
    day's spend (costs and holds of the day's other jobs) inside the transaction that writes the row; it raises to
    refuse the submit, and then no row is written. Concurrent submits run their checks one at a time."""

    estimate: dict[str, Any] | None
    usd: float | None
    day: str
    check: Callable[[float], None] | None = None


@dataclass(frozen=True)
class SpendLine:
    """Spend of one model on one day: cost (billed, estimated and held), and how many jobs."""

    day: str
    endpoint_id: str
    usd: float
    jobs: int
    billed_usd: float


COLUMNS = tuple(column.name for column in fields(JobRow))


@dataclass(frozen=True)
class Lease:
    owner: str  # the instance following the job
    kind: LeaseKind
    seconds_left: float  # negative once expired


def new_instance_id() -> str:
    """A random name for one running server: its leases' owner, and how the upstream can tell instances apart."""
    return secrets.token_hex(4)


class JobLedger(ABC):
    """Mutators return whether a row changed: False for an unknown id or a transition that no longer applies.

    `instance` names this server process: the owner of the leases it takes through this ledger.
    """

    instance: str
    _secrets: Sequence[str] = ()

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the ledger lives, for messages (a path, or a database URL without its password)."""

    # ---- submitting: keyed by row id, since there is no request id yet ---------------------------------------

    @abstractmethod
    def begin_submit(self, endpoint_id: str, input: dict[str, Any], charge: Charge | None = None) -> int:
        """Record a job about to be submitted (state 'submitting'). Committed before this returns. With a `charge`,
        its check and the row's write are one atomic step across processes and instances."""

    @abstractmethod
    def mark_submitted(self, row_id: int, request_id: str, queue_position: int | None) -> bool:
        """The upstream accepted the job. Also allowed after mark_unknown, should the request id turn up later."""

    @abstractmethod
    def mark_unknown(self, row_id: int, reason: str) -> bool:
        """The submit's outcome is unknown (timeout, dropped answer): a job may be running and billed."""

    @abstractmethod
    def mark_rejected(self, row_id: int, reason: str) -> bool:
        """The upstream surely refused the submit (4xx, connect error): nothing was started."""

    @abstractmethod
    def settle_stale_submits(self, older_than: float) -> int:
        """Rows still 'submitting' since before `older_than` (epoch) belong to a process that died mid-submit:
        mark them 'unknown' (the job may exist). Returns how many were settled."""

    # ---- after the submit: keyed by request id ---------------------------------------------------------------

    @abstractmethod
    def store_result(self, request_id: str, result: dict[str, Any], media_urls: list[str]) -> bool:
        """Keep the output (state 'completed') and end any lease. The first stored result wins."""

    @abstractmethod
    def mark_failed(self, request_id: str, error: str, *, cancelled: bool = False) -> bool:
        """State 'failed' (or 'cancelled') and end any lease; never overrides a stored result."""

    @abstractmethod
    def settle_cost(self, request_id: str, usd: float) -> bool:
        """The upstream's bill for a finished job ('billed'), replacing its estimate or hold."""

    @abstractmethod
    def spend(self, *, since_day: str) -> list[SpendLine]:
        """What jobs cost from `since_day` (YYYY-MM-DD) on, by day and model: costs and open holds."""

    @abstractmethod
    def cached_price(self, key: str) -> tuple[dict[str, Any], float] | None:
        """A price kept by `cache_price` (JSON) and when it was fetched (epoch seconds)."""

    @abstractmethod
    def cache_price(self, key: str, price: dict[str, Any], fetched_at: float) -> None:
        """Keep a fetched price for every instance sharing this ledger (replacing an older one)."""

    @abstractmethod
    def record_download(self, request_id: str, url: str, path: str, sha256: str, size: int) -> bool:
        """Add a downloaded file; a new download to the same path replaces the old entry."""

    # ---- reading ---------------------------------------------------------------------------------------------

    @abstractmethod
    def get(self, request_id: str) -> JobRow | None: ...

    @abstractmethod
    def get_row(self, row_id: int) -> JobRow | None: ...

    @abstractmethod
    def list_jobs(
        self, *, state: str | None = None, endpoint_id: str | None = None, since: float | None = None, limit: int = 20
    ) -> list[JobRow]:
        """Jobs newest first; `since` keeps those submitted at or after that epoch time."""

    @abstractmethod
    def recent_request_ids(self, *, limit: int) -> list[str]:
        """The request ids of the `limit` jobs submitted last, newest first (ids only: no row is read whole)."""

    @abstractmethod
    def unfinished(self, *, limit: int = 100) -> list[JobRow]:
        """Jobs submitted but not yet completed, failed or cancelled, oldest first."""

    # ---- leases: one follower per job ------------------------------------------------------------------------

    @abstractmethod
    def claim_watch(self, lease_seconds: float, *, limit: int, submitted_since: float) -> list[JobRow]:
        """Lease up to `limit` unfinished jobs submitted at or after `submitted_since` to this instance's watcher,
        oldest first: those nobody holds, whose lease expired, or that this watcher holds already (renewed).
        Jobs another instance holds are skipped, never waited for. Returns the jobs held, each now for
        `lease_seconds` more."""

    @abstractmethod
    def claim_wait(self, request_id: str, lease_seconds: float) -> WaitClaim:
        """Take the job's lease for a wait of this instance. A watcher's lease is taken over (the wait follows
        the job more closely); another instance's unexpired wait keeps it ('busy')."""

    @abstractmethod
    def renew_wait(self, request_id: str, lease_seconds: float) -> bool:
        """Extend this instance's wait lease; False once it is no longer held (expired and taken, or finished)."""

    @abstractmethod
    def release(self, request_id: str) -> bool:
        """Give up this instance's lease on the job, so any instance's watcher may claim it at once."""

    @abstractmethod
    def release_all(self) -> int:
        """Give up every lease this instance holds (at shutdown). Returns how many."""

    @abstractmethod
    def lease(self, request_id: str) -> Lease | None:
        """Who follows the job now, if anyone (expired leases included, with negative seconds left)."""

    # ---- changes made by other instances ---------------------------------------------------------------------

    @abstractmethod
    async def relay_changes(self, publish: Callable[[str], None]) -> None:
        """Run until cancelled, calling `publish(request_id)` (on the caller's event loop) for each job whose row
        another instance changed. Changes this instance makes are its own to publish. At least once: a change may
        be relayed twice, or late after a lost connection; never crashes on a broken database (it retries)."""

    # ---- lifetime --------------------------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Idempotent; any later call raises LedgerError."""

    def __enter__(self) -> JobLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- what writers store: the secrets cut out ---------------------------------------------------------------

    def _text(self, text: str) -> str:
        """A free text (an error, a reason) as stored: secrets cut out, and NUL characters, which PostgreSQL's TEXT
        refuses (an upstream error holding one would leave its job unsettled), replaced by U+FFFD on both backends.
        JSON columns need no such care: json.dumps writes a NUL as \\u0000."""
        for secret in self._secrets:
            text = redact(text, secret)
        return text.replace("\x00", "\ufffd")

    def _json(self, value: object) -> str:
        return dumps(scrub_secrets(value, self._secrets) if self._secrets else value)

    def _download_entries(self, current: str, url: str, path: str, sha256: str, size: int) -> str:
        """The downloads JSON list with a new entry; an older entry for the same path is replaced."""
        entry = scrub_secrets({"url": url, "path": path, "sha256": sha256, "size": size}, self._secrets)
        return dumps([d for d in json.loads(current) if d.get("path") != entry["path"]] + [entry])


# ---- shared by the backends -----------------------------------------------------------------------------------


def job_row(values: Mapping[str, Any]) -> JobRow:
    decoded = {name: values[name] for name in COLUMNS}
    for key in JSON_COLUMNS:
        if decoded[key] is not None:
            decoded[key] = json.loads(decoded[key])
    return JobRow(**decoded)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


def check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}; one of {', '.join(sorted(STATES))}")
