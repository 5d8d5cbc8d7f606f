"""Watching the unfinished jobs in the ledger, so each result is kept as soon as its job completes, even if
nobody asks in time (fal discards results within the hour).

Each job is checked on the same adaptive policy as a wait (first check soon after submit, then backing off
to a capped interval), a bounded number of jobs per round, and jobs older than a limit are left alone. Every
round claims (or renews) the leases of the jobs it checks, so when several instances share a ledger each job is
watched by one of them, and the jobs of an instance that died are taken over once their leases expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from server.errors import FalError, JobFailedError
from server.jobs.keeping import Jobs
from server.jobs.ledger import JobRow, LedgerError
from server.settings import Settings

if TYPE_CHECKING:
    from server.upstream.routes import Upstream

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 1.5
TICK_SECONDS = 1.0  # how often the ledger is scanned for due jobs; checks themselves follow each job's interval
STALE_SUBMIT_MARGIN = 60.0  # seconds beyond the longest a submit can take


class Watcher:
    def __init__(
        self,
        jobs: Jobs,
        upstream: Callable[[], Upstream],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # `upstream` makes (or returns) the client on the first check: an idle server with no unfinished job never
        # loads the HTTP stack nor builds its TLS context (a few MiB).
        self._jobs = jobs
        self._upstream = upstream
        self._settings = settings
        self._clock = clock
        self._next: dict[str, float] = {}
        self._interval: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except LedgerError as exc:  # a passing database problem (a shared database restarting): next round
                log.warning("watching jobs: %s", exc)
            await anyio.sleep(TICK_SECONDS)

    async def round(self) -> int:
        """Check every due job once; returns how many were checked."""
        settings = self._settings
        jobs = self._jobs
        now = self._clock()
        # A submit outlives neither its timeout nor its retries; a row still 'submitting' after that is orphaned.
        await jobs.db(jobs.ledger.settle_stale_submits, now - STALE_SUBMIT_MARGIN - _submit_budget(settings))
        # Only the jobs this instance holds the lease of (claimed or renewed now): one follower per job.
        rows = await jobs.db(
            jobs.ledger.claim_watch,
            settings.watch_lease,
            limit=settings.watch_max_jobs,
            submitted_since=now - settings.watch_max_age,
        )
        checked = 0
        live = set()
        for row in rows:
            if row.request_id is None or now - row.submitted_at > settings.watch_max_age:
                continue
            live.add(row.request_id)
            if row.request_id in jobs.followed:
                continue  # a wait is following it and will keep its result
            due = self._next.setdefault(row.request_id, row.submitted_at + settings.watch_first_interval)
            if due > now or not await self._still_leased(row.request_id):
                continue  # not due; or a wait (of any instance) took the job over since the claim, and follows it
            checked += 1
            try:
                finished = await self.check(row)
            except FalError as exc:  # a passing upstream problem: try again on the next interval
                log.info("watching %s: %s", row.request_id, exc.message)
                finished = False
            except Exception as exc:  # anything else is this job's alone: the other jobs are still watched
                log.warning("watching %s failed (%s); it is tried again later", row.request_id, type(exc).__name__)
                finished = False
            if not finished:
                interval = self._interval.get(row.request_id, settings.watch_first_interval)
                self._interval[row.request_id] = min(settings.watch_max_interval, interval * BACKOFF_FACTOR)
                self._next[row.request_id] = self._clock() + self._interval[row.request_id]
        for gone in set(self._next) - live:  # finished elsewhere, or too old: forget the schedule
            self._next.pop(gone, None)
            self._interval.pop(gone, None)
        return checked

    async def check(self, row: JobRow) -> bool:
        """Check one unfinished job: True once its outcome is kept."""
        assert row.request_id is not None
        upstream = self._upstream()
        report = await upstream.status(row.endpoint_id, row.request_id, with_logs=False)
        if report.state != "COMPLETED":
            return False
        if report.failed:
            failure = JobFailedError(f"The job failed: {report.error}", error_type=report.error_type)
            await self._jobs.keep_failure(row.request_id, failure)
            return True
        try:
            fetched = await upstream.result(row.endpoint_id, row.request_id)
        except JobFailedError as exc:
            await self._jobs.keep_failure(row.request_id, exc)
            return True
        if fetched.output is None:
            return False
        await self._jobs.keep_output(row.request_id, fetched.output, fetched.billable_units)
        return True

    async def _still_leased(self, request_id: str) -> bool:
        """One cheap ledger read saves an upstream request: between a round's claim and a check, a wait may take
        the job (its lease), and then it alone asks the upstream."""
        ledger = self._jobs.ledger
        lease = await self._jobs.db(ledger.lease, request_id)
        return lease is not None and lease.owner == ledger.instance and lease.kind == "watch"


def _submit_budget(settings: Settings) -> float:
    return settings.submit_timeout + settings.connect_timeout + settings.retry_deadline
