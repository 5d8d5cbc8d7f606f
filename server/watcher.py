"""Watching the unfinished jobs in the ledger, so each result is kept as soon as its job completes, even if
nobody asks in time (fal discards results within the hour).

Each job is checked on the same adaptive policy as a wait (first check soon after submit, then backing off
to a capped interval), a bounded number of jobs per round, and jobs older than a limit are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from server.errors import FalError
from server.runtime import Runtime
from server.settings import Settings

if TYPE_CHECKING:
    from server.ledger import JobRow

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 1.5
TICK_SECONDS = 1.0  # how often the ledger is scanned for due jobs; checks themselves follow each job's interval
STALE_SUBMIT_MARGIN = 60.0  # seconds beyond the longest a submit can take

Check = Callable[[Runtime, "JobRow"], Awaitable[bool]]


class Watcher:
    def __init__(self, rt: Runtime, check: Check, *, clock: Callable[[], float] = time.time) -> None:
        self._rt = rt
        self._check = check
        self._clock = clock
        self._next: dict[str, float] = {}
        self._interval: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await self.round()
            await anyio.sleep(TICK_SECONDS)

    async def round(self) -> int:
        """Check every due job once; returns how many were checked."""
        settings = self._rt.settings
        now = self._clock()
        # A submit outlives neither its timeout nor its retries; a row still 'submitting' after that is orphaned.
        await self._rt.db(self._rt.ledger.settle_stale_submits, now - STALE_SUBMIT_MARGIN - _submit_budget(settings))
        rows = await self._rt.db(self._rt.ledger.unfinished, limit=settings.watch_max_jobs)
        checked = 0
        live = set()
        for row in rows:
            if row.request_id is None or now - row.submitted_at > settings.watch_max_age:
                continue
            live.add(row.request_id)
            if row.request_id in self._rt.waits:
                continue  # a wait is following it and will keep its result
            due = self._next.setdefault(row.request_id, row.submitted_at + settings.watch_first_interval)
            if due > now:
                continue
            checked += 1
            try:
                finished = await self._check(self._rt, row)
            except FalError as exc:  # a passing upstream problem: try again on the next interval
                log.info("watching %s: %s", row.request_id, exc.message)
                finished = False
            if not finished:
                interval = self._interval.get(row.request_id, settings.watch_first_interval)
                self._interval[row.request_id] = min(settings.watch_max_interval, interval * BACKOFF_FACTOR)
                self._next[row.request_id] = self._clock() + self._interval[row.request_id]
        for gone in set(self._next) - live:  # finished elsewhere, or too old: forget the schedule
            self._next.pop(gone, None)
            self._interval.pop(gone, None)
        return checked


def _submit_budget(settings: Settings) -> float:
    return settings.submit_timeout + settings.connect_timeout + settings.retry_deadline
