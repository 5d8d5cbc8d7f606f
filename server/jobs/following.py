"""A `get_fal_result` wait as the job's one follower, across every instance sharing the ledger.

The wait takes the job's lease (also from a watcher, which then leaves the job alone), renews it while it lasts
and gives it back when the call ends, so exactly one instance asks the upstream about the job at a time. When
another instance's wait holds the lease, this one asks the upstream nothing: it waits for the job's outcome to
be kept (the job's change wakes it, whichever instance keeps it) and takes the lease over should the other wait
end first. A leading wait also ends as soon as another instance kept the job's outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio

from server.jobs.events import JobWatch
from server.jobs.keeping import FINISHED, Jobs
from server.jobs.ledger import JobRow, LedgerError
from server.jobs.waiting import OnUpdate, Waiter, WaitLimits
from server.upstream.reports import StatusReport

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0  # how often a wait whose job another instance follows looks at the ledger and the lease


@asynccontextmanager
async def following(jobs: Jobs, request_id: str) -> AsyncIterator[None]:
    """Mark the job followed by this process for the block (the watcher leaves it alone); when the last such
    block ends, a lease one of its waits took is given back, so a watcher can claim the job at once."""
    jobs.followed[request_id] += 1
    try:
        yield
    finally:
        jobs.followed[request_id] -= 1
        if jobs.followed[request_id] <= 0:
            del jobs.followed[request_id]
            if request_id in jobs.wait_leases:
                jobs.wait_leases.discard(request_id)
                with anyio.CancelScope(shield=True):
                    try:
                        await jobs.db(jobs.ledger.release, request_id)
                    except LedgerError as exc:
                        log.warning("could not give the lease on %s back (it expires by itself): %s", request_id, exc)


async def follow(
    jobs: Jobs,
    waiter: Waiter,
    endpoint_id: str,
    request_id: str,
    limits: WaitLimits,
    on_update: OnUpdate | None = None,
    *,
    lease_seconds: float,
) -> StatusReport | JobRow | None:
    """Wait for the job (inside `following`) for at most `limits.seconds`: the last status seen while leading,
    the job's row once its outcome is kept (by any instance), or None when no status was seen."""
    started: float | None = None
    with jobs.events.watching(request_id) as watch:
        while True:
            claim = await jobs.db(jobs.ledger.claim_wait, request_id, lease_seconds)
            if started is None:  # the wait's own time starts once it knows who follows the job (a durable write)
                started = time.monotonic()
            left = limits.seconds - (time.monotonic() - started)
            if left <= 0:
                return None
            if claim == "taken":
                jobs.wait_leases.add(request_id)
            if claim == "untracked":
                # No unfinished row: not in the ledger, or its outcome was kept (by any instance) since the caller
                # last looked, as when a trailing wait's leader kept it between this wait's look and its claim.
                row = await jobs.get(request_id)
                if row is not None and row.state in FINISHED:
                    return row
            if claim != "busy":  # 'untracked' (not in the ledger): follow it as before, with no lease
                leased = lease_seconds if claim == "taken" else None
                limits = replace(limits, seconds=left)
                return await _lead(jobs, waiter, watch, endpoint_id, request_id, limits, on_update, leased)
            # Another instance's wait follows the job: wait for its outcome, and ask for the lease again now and then.
            if on_update is not None:
                await on_update(None, time.monotonic() - started)
            await watch.wait(min(RETRY_SECONDS, left))
            row = await jobs.get(request_id)
            if row is not None and row.state in FINISHED:
                return row


async def _lead(
    jobs: Jobs,
    waiter: Waiter,
    watch: JobWatch,
    endpoint_id: str,
    request_id: str,
    limits: WaitLimits,
    on_update: OnUpdate | None,
    lease_seconds: float | None,
) -> StatusReport | JobRow | None:
    """Follow the job upstream, renewing the lease, until the wait ends or another instance kept the outcome."""
    outcome: StatusReport | JobRow | None = None
    failure: Exception | None = None

    async def upstream() -> None:
        nonlocal outcome, failure
        try:
            outcome = await waiter.wait(endpoint_id, request_id, limits, on_update)
        except Exception as exc:  # re-raised below, unwrapped from the task group
            failure = exc
        group.cancel_scope.cancel()

    async def kept_elsewhere() -> None:
        nonlocal outcome
        while True:
            await watch.wait()
            row = await jobs.get(request_id)
            if row is not None and row.state in FINISHED:
                outcome = row
                group.cancel_scope.cancel()
                return

    async with anyio.create_task_group() as group:
        group.start_soon(upstream)
        group.start_soon(kept_elsewhere)
        if lease_seconds is not None:
            group.start_soon(_renew, jobs, request_id, lease_seconds)
    if failure is not None:
        raise failure
    return outcome


async def _renew(jobs: Jobs, request_id: str, lease_seconds: float) -> None:
    while True:
        await anyio.sleep(lease_seconds / 3)
        try:
            held = await jobs.db(jobs.ledger.renew_wait, request_id, lease_seconds)
        except LedgerError as exc:  # a passing database problem: the lease may still be renewed in time
            log.warning("renewing the lease on %s: %s", request_id, exc)
            continue
        if not held:
            log.info("the lease on %s was lost (it expired); another instance may follow the job too", request_id)
            return
