"""Waiting for a job, bounded in time and in upstream requests, with a heartbeat for progress reports.

The status stream is used where the route family and the provider have one (a single request for the whole
wait; only the fal queue route has one); otherwise, or when it drops, status is polled on an adaptive schedule:
quick at first, backing off to a capped interval with jitter. Cancelling the wait (the caller's cancel scope) stops
it at once and leaves the job running.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import anyio

from server.errors import FalError, RateLimitedError, UpstreamUnavailableError
from server.upstream.reports import StatusReport
from server.upstream.routes import Upstream

POLL_BACKOFF_FACTOR = 1.5
POLL_JITTER = 0.1  # +-10%, so many waiting clients don't poll in lockstep

OnUpdate = Callable[[StatusReport | None, float], Awaitable[None]]


@dataclass
class WaitLimits:
    seconds: float
    poll_first_interval: float
    poll_max_interval: float
    heartbeat: float
    # A job submitted a moment ago is surely still queued: its first poll can wait (one request fewer per job).
    first_poll_delay: float = 0.0


class Waiter:
    """Shared by all waits of one server: the stream slots bound how many connections streams may hold."""

    def __init__(self, upstream: Upstream, max_streams: int) -> None:
        self._upstream = upstream
        self._stream_slots = anyio.Semaphore(max_streams) if max_streams > 0 else None

    async def wait(
        self, endpoint_id: str, request_id: str, limits: WaitLimits, on_update: OnUpdate | None = None
    ) -> StatusReport | None:
        """Wait until the job completes or `limits.seconds` pass; return the last status seen (None if none).

        `on_update(report, elapsed)` is called on every change and at least every `limits.heartbeat` seconds.
        An upstream that is unavailable for a while does not end the wait (polling goes on); if it was unavailable
        for the whole wait, so that no status was ever seen, that failure is raised rather than reporting a
        status nobody saw. So is a wait whose requests all went without a status (a stream that never answered or
        was refused, a poll cut off by the wait's end): which of a request's own timeout and the wait's end comes
        first is up to the scheduler, and the answer must not depend on it. Only a wait that sent nothing (it
        ended before its first poll was due) ends with no status and no failure.
        """
        started = time.monotonic()
        latest: StatusReport | None = None
        reported: StatusReport | None = None
        trouble: FalError | None = None
        asked = False  # a request went out (then a wait that saw no status failed)
        changed = anyio.Event()

        def publish(report: StatusReport) -> None:
            nonlocal latest, changed
            latest = report
            changed.set()
            changed = anyio.Event()

        def struggle(problem: FalError) -> None:
            nonlocal trouble
            trouble = problem

        def asking() -> None:
            nonlocal asked
            asked = True

        async def follow() -> None:
            if await self._try_stream(endpoint_id, request_id, publish, asking):
                return
            await self._poll(endpoint_id, request_id, limits, publish, struggle, asking)

        async def heartbeat() -> None:
            if on_update is None:
                await anyio.sleep_forever()
                return
            nonlocal reported
            while True:
                event = changed
                with anyio.move_on_after(limits.heartbeat):
                    await event.wait()
                reported = latest
                await on_update(latest, time.monotonic() - started)

        failure: Exception | None = None
        with anyio.move_on_after(limits.seconds):
            async with anyio.create_task_group() as group:
                group.start_soon(heartbeat)
                try:
                    await follow()
                except Exception as exc:  # re-raised below, unwrapped from the task group
                    failure = exc
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if latest is None and trouble is not None:
            raise trouble
        if latest is None and asked:
            raise UpstreamUnavailableError(
                f"The upstream gave no status for this job within the {limits.seconds:g} s wait (its answers were "
                "late or unusable); try again in a minute."
            )
        if on_update is not None and latest is not None and latest is not reported:
            await on_update(latest, time.monotonic() - started)
        return latest

    async def _try_stream(
        self,
        endpoint_id: str,
        request_id: str,
        publish: Callable[[StatusReport], None],
        asking: Callable[[], None],
    ) -> bool:
        """Follow the status stream to completion; False when there is none, it is busy, or it dropped."""
        settings = self._upstream.settings
        adapter = self._upstream.adapter(endpoint_id)
        if not settings.use_status_stream or adapter.stream_supported is False or self._stream_slots is None:
            return False
        from server.upstream.stream import StreamRefused  # only the fal queue route streams

        try:
            self._stream_slots.acquire_nowait()
        except anyio.WouldBlock:
            return False  # every stream slot is taken: poll, so the pool never runs dry
        try:
            asking()
            async with aclosing(adapter.status_stream(endpoint_id, request_id)) as reports:
                async for report in reports:
                    adapter.stream_supported = True
                    publish(report)
                    if report.state == "COMPLETED":
                        return True
        except StreamRefused as refused:
            if refused.permanent:
                adapter.stream_supported = False
        finally:
            self._stream_slots.release()
        return False

    async def _poll(
        self,
        endpoint_id: str,
        request_id: str,
        limits: WaitLimits,
        publish: Callable[[StatusReport], None],
        struggle: Callable[[FalError], None],
        asking: Callable[[], None],
    ) -> None:
        interval = limits.poll_first_interval
        await anyio.sleep(limits.first_poll_delay)
        while True:
            asking()
            try:
                report = await self._upstream.status(endpoint_id, request_id, on_retry=struggle)
            except (UpstreamUnavailableError, RateLimitedError) as problem:
                struggle(problem)  # worth trying again while the wait lasts; any other failure ends it
            else:
                publish(report)
                if report.state == "COMPLETED":
                    return
            await anyio.sleep(interval * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER))  # noqa: S311
            interval = min(limits.poll_max_interval, interval * POLL_BACKOFF_FACTOR)
