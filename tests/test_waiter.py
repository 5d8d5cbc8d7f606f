"""The waiting logic on its own (no MCP): the status stream, the polling fallback and its schedule, the heartbeat,
the cap, cancellation, and what a wait in which the upstream never answered reports.

Against the real sandbox upstream, except the polling schedule, which is read from the sleeps the waiter asks for
(a scripted upstream answers at once), so that it does not depend on how fast the machine is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from server.errors import UpstreamUnavailableError
from server.jobs import waiting
from server.jobs.waiting import POLL_BACKOFF_FACTOR, POLL_JITTER, Waiter, WaitLimits
from server.sandbox import Fault, Sandbox
from server.upstream.client import create_http_client
from server.upstream.reports import StatusReport
from server.upstream.routes import Upstream as Routes
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings

pytestmark = pytest.mark.anyio
GENEROUS = 30.0  # seconds: a bound that only a hang reaches


@dataclass
class Upstream:
    """A queue client on the sandbox, with every request it sends counted as it is sent."""

    client: Routes
    sandbox: Sandbox
    sent: list[str] = field(default_factory=list)
    sent_changed: anyio.Event = field(default_factory=anyio.Event)

    def sent_to(self, suffix: str) -> int:
        return sum(1 for path in self.sent if path.endswith(suffix))

    async def until_sent(self, suffix: str, count: int) -> None:
        with anyio.fail_after(GENEROUS):
            while self.sent_to(suffix) < count:
                await self.sent_changed.wait()

    async def submit(self) -> str:
        return (await self.client.submit(SEED_MODEL, SEED_INPUT)).request_id


@asynccontextmanager
async def upstream_on(sandbox: Sandbox, **overrides: Any) -> AsyncIterator[Upstream]:
    settings = make_settings(sandbox, **({"request_timeout": 5.0, "retry_deadline": 10.0} | overrides))
    async with create_http_client(settings) as http:
        upstream = Upstream(Routes(settings, http), sandbox)

        async def count(request: httpx.Request) -> None:
            upstream.sent.append(request.url.path)
            upstream.sent_changed.set()
            upstream.sent_changed = anyio.Event()

        http.event_hooks["request"].append(count)
        yield upstream


def limits(seconds: float, *, first: float = 0.1, most: float = 0.3, heartbeat: float = 5.0) -> WaitLimits:
    return WaitLimits(seconds=seconds, poll_first_interval=first, poll_max_interval=most, heartbeat=heartbeat)


# ---- the stream, and the fallback to polling ---------------------------------------------------------------------


async def test_a_streamed_wait_reports_each_change_and_ends_when_the_job_does(sandbox: Sandbox) -> None:
    sandbox.config.queue_seconds, sandbox.config.run_seconds = 0.5, 1.5
    updates: list[tuple[str | None, int, float]] = []

    async def on_update(report: StatusReport | None, elapsed: float) -> None:
        updates.append((report.state if report else None, len(report.logs) if report else 0, elapsed))

    async with upstream_on(sandbox) as upstream:
        request_id = await upstream.submit()
        started = time.monotonic()
        report = await Waiter(upstream.client, max_streams=2).wait(SEED_MODEL, request_id, limits(40), on_update)
        waited = time.monotonic() - started
    assert report is not None and report.state == "COMPLETED" and not report.failed
    assert waited < GENEROUS  # it ended with the job, not after the 40 s it could have waited
    assert upstream.sent_to("/status/stream") == 1 and upstream.sent_to("/status") == 0  # one request in all
    states = [state for state, _, _ in updates]
    assert "IN_PROGRESS" in states and states[-1] == "COMPLETED"
    assert max(logs for _, logs, _ in updates) == sandbox.config.log_lines
    elapsed = [seconds for _, _, seconds in updates]
    assert elapsed == sorted(elapsed)


@pytest.mark.parametrize("refusal", [404, 405])
async def test_a_refused_stream_falls_back_to_polling_and_is_remembered(sandbox: Sandbox, refusal: int) -> None:
    sandbox.inject(Fault("/status/stream", status=refusal, body=b'{"detail": "Not Found"}'))
    async with upstream_on(sandbox) as upstream:
        waiter = Waiter(upstream.client, max_streams=2)
        for _ in range(2):
            report = await waiter.wait(SEED_MODEL, await upstream.submit(), limits(GENEROUS))
            assert report is not None and report.state == "COMPLETED"
    assert upstream.sent_to("/status/stream") == 1  # refused once, then remembered: the second wait polled
    assert upstream.sent_to("/status") >= 2
    assert upstream.client.family("fal").stream_supported is False


async def test_a_stream_dropping_mid_way_falls_back_to_polling(sandbox: Sandbox) -> None:
    sandbox.config.drop_streams_after = 1
    async with upstream_on(sandbox) as upstream:
        request_id = await upstream.submit()
        report = await Waiter(upstream.client, max_streams=2).wait(SEED_MODEL, request_id, limits(GENEROUS))
    assert report is not None and report.state == "COMPLETED"
    assert upstream.sent_to("/status/stream") == 1 and upstream.sent_to("/status") >= 1
    # a dropped stream is no refusal: the next wait streams again
    assert (
        upstream.client.family("fal").stream_supported is True
    )  # a dropped stream is no refusal: the next wait streams again


async def test_waits_beyond_the_stream_slots_poll(sandbox: Sandbox) -> None:
    async with upstream_on(sandbox) as upstream:
        waiter = Waiter(upstream.client, max_streams=1)
        first, second = await upstream.submit(), await upstream.submit()
        reports: list[StatusReport | None] = []

        async def wait(request_id: str) -> None:
            reports.append(await waiter.wait(SEED_MODEL, request_id, limits(GENEROUS)))

        async with anyio.create_task_group() as group:
            group.start_soon(wait, first)
            await upstream.until_sent("/status/stream", 1)  # the first wait holds the only slot
            group.start_soon(wait, second)
    assert [r.state if r else None for r in reports] == ["COMPLETED", "COMPLETED"]
    assert upstream.sent_to("/status/stream") == 1  # the first wait's
    polled = [path for path in upstream.sent if path.endswith("/status")]
    assert polled and all(second in path for path in polled)  # the second wait polled


# ---- polling: its schedule, the heartbeat, the cap ----------------------------------------------------------------


class SleepRecorder:
    """Stands in for `anyio` inside the waiter: every sleep it asks for is recorded and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await anyio.lowlevel.checkpoint()


class ScriptedUpstream:
    """What the waiter uses of the queue client: status answers from a script, and no stream."""

    def __init__(self, states: list[str], settings: Any) -> None:
        self._states = list(states)
        self.settings = settings
        self.stream_supported: bool | None = False
        self.polls = 0

    def adapter(self, endpoint_id: str) -> ScriptedUpstream:
        return self  # one family, with no stream

    async def status(self, endpoint_id: str, request_id: str, **_: Any) -> StatusReport:
        self.polls += 1
        return StatusReport(self._states.pop(0))  # type: ignore[arg-type]


async def test_polling_starts_quick_and_backs_off_to_its_cap(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = SleepRecorder()
    monkeypatch.setattr(waiting, "anyio", recorder)
    states = ["IN_QUEUE", *["IN_PROGRESS"] * 8, "COMPLETED"]
    scripted = ScriptedUpstream(states, make_settings(sandbox, use_status_stream=False))
    waiter = Waiter(scripted, max_streams=0)  # type: ignore[arg-type]
    wait = WaitLimits(seconds=GENEROUS, poll_first_interval=0.2, poll_max_interval=1.0, heartbeat=5.0)
    report = await waiter.wait(SEED_MODEL, "abc", wait)
    assert report is not None and report.state == "COMPLETED"
    assert scripted.polls == len(states)
    first_delay, *intervals = recorder.asked
    assert first_delay == 0.0  # a job of unknown age is polled at once
    expected = [min(1.0, 0.2 * POLL_BACKOFF_FACTOR**n) for n in range(len(states) - 1)]
    assert len(intervals) == len(expected)
    for asked, planned in zip(intervals, expected, strict=True):
        assert planned * (1 - POLL_JITTER) <= asked <= planned * (1 + POLL_JITTER)
    assert len({round(i, 6) for i in intervals}) > 1  # jittered, not a fixed beat
    assert max(intervals) <= 1.0 * (1 + POLL_JITTER)


async def test_a_young_job_is_first_polled_after_its_first_interval(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = SleepRecorder()
    monkeypatch.setattr(waiting, "anyio", recorder)
    scripted = ScriptedUpstream(["COMPLETED"], make_settings(sandbox, use_status_stream=False))
    wait = WaitLimits(GENEROUS, poll_first_interval=1.0, poll_max_interval=2.0, heartbeat=5.0, first_poll_delay=0.7)
    await Waiter(scripted, max_streams=0).wait(SEED_MODEL, "abc", wait)  # type: ignore[arg-type]
    assert recorder.asked == [0.7]


async def test_the_heartbeat_reports_while_nothing_changes(sandbox: Sandbox) -> None:
    sandbox.config.queue_seconds = 600  # queued for the whole wait
    updates: list[StatusReport | None] = []

    async def on_update(report: StatusReport | None, elapsed: float) -> None:
        updates.append(report)

    async with upstream_on(sandbox, use_status_stream=False) as upstream:
        request_id = await upstream.submit()
        wait = limits(2.0, first=0.5, most=0.5, heartbeat=0.1)
        report = await Waiter(upstream.client, max_streams=0).wait(SEED_MODEL, request_id, wait, on_update)
    assert report is not None and report.state == "IN_QUEUE"  # still queued: the last status seen
    # about 20 beats in 2 s; a few are enough to show it beats without a change
    assert len(updates) >= 4
    assert {u.state for u in updates if u is not None} == {"IN_QUEUE"}


async def test_a_wait_ends_at_its_limit_with_the_last_status(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 600
    async with upstream_on(sandbox) as upstream:
        request_id = await upstream.submit()
        started = time.monotonic()
        report = await Waiter(upstream.client, max_streams=2).wait(SEED_MODEL, request_id, limits(1.0))
        waited = time.monotonic() - started
    assert report is not None and report.state in ("IN_QUEUE", "IN_PROGRESS")
    assert waited < GENEROUS


# ---- cancelling a wait ------------------------------------------------------------------------------------------


async def test_cancelling_a_polled_wait_stops_it_at_once_and_leaves_the_job(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 600
    async with upstream_on(sandbox, use_status_stream=False) as upstream:
        request_id = await upstream.submit()
        waiter = Waiter(upstream.client, max_streams=0)
        async with anyio.create_task_group() as group:
            group.start_soon(waiter.wait, SEED_MODEL, request_id, limits(GENEROUS, first=0.05, most=0.05))
            await upstream.until_sent("/status", 3)  # it is polling
            group.cancel_scope.cancel()
        polls = upstream.sent_to("/status")
        await anyio.sleep(0.5)  # at 0.05 s a poll, a wait still running would have polled again by now
        assert upstream.sent_to("/status") == polls
    assert sandbox.seen("PUT") == []  # the job is not cancelled
    assert not sandbox.jobs[request_id].cancelled


async def test_cancelling_a_streamed_wait_frees_its_stream_slot(sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 600
    async with upstream_on(sandbox) as upstream:
        request_id = await upstream.submit()
        waiter = Waiter(upstream.client, max_streams=1)
        for streams in (1, 2):
            seen = anyio.Event()

            async def on_update(report: StatusReport | None, elapsed: float, seen: anyio.Event = seen) -> None:
                seen.set()

            async with anyio.create_task_group() as group:
                group.start_soon(waiter.wait, SEED_MODEL, request_id, limits(GENEROUS, heartbeat=0.1), on_update)
                with anyio.fail_after(GENEROUS):
                    await seen.wait()
                group.cancel_scope.cancel()
            # the wait streamed, and its slot is free again: the next wait streams too
            assert upstream.sent_to("/status/stream") == streams
        assert upstream.sent_to("/status") == 0
    assert not sandbox.jobs[request_id].cancelled


# ---- a wait in which the upstream never answered -----------------------------------------------------------------


async def test_a_wait_whose_stream_never_answered_reports_it(sandbox: Sandbox) -> None:
    """The stream's request outlives the wait (its own timeout is longer): the wait must not end as a quiet
    "no status yet", as if the upstream were fine."""
    async with upstream_on(sandbox, request_timeout=20.0) as upstream:
        request_id = await upstream.submit()
        sandbox.inject(Fault(f"/requests/{request_id}", status=504, delay=120, times=100))
        with pytest.raises(UpstreamUnavailableError) as raised:
            await Waiter(upstream.client, max_streams=1).wait(SEED_MODEL, request_id, limits(1.0))
    assert "gave no status" in str(raised.value)


async def test_a_wait_whose_only_request_was_a_refused_stream_reports_it(sandbox: Sandbox) -> None:
    """The stream is refused and the wait ends before the first poll is due: the one request made got no status,
    and the answer must say so however the time fell (on a loaded machine a refusal can take the whole wait)."""
    async with upstream_on(sandbox) as upstream:
        request_id = await upstream.submit()
        sandbox.inject(Fault(f"/requests/{request_id}/status/stream", status=401, body=b'{"detail": "Invalid key"}'))
        wait = WaitLimits(1.0, poll_first_interval=1.0, poll_max_interval=1.0, heartbeat=5.0, first_poll_delay=30.0)
        with pytest.raises(UpstreamUnavailableError) as raised:
            await Waiter(upstream.client, max_streams=1).wait(SEED_MODEL, request_id, wait)
    assert "gave no status" in str(raised.value)
    assert upstream.sent_to("/status/stream") == 1 and upstream.sent_to("/status") == 0


async def test_a_wait_in_which_every_poll_failed_reports_the_failure(sandbox: Sandbox) -> None:
    async with upstream_on(sandbox, use_status_stream=False, retry_deadline=0.3) as upstream:
        request_id = await upstream.submit()
        sandbox.inject(Fault(f"/requests/{request_id}/status", status=503, times=1000))
        with pytest.raises(UpstreamUnavailableError) as raised:
            await Waiter(upstream.client, max_streams=0).wait(SEED_MODEL, request_id, limits(1.5))
    assert "HTTP 503" in str(raised.value)


async def test_a_wait_shorter_than_the_first_poll_is_no_failure(sandbox: Sandbox) -> None:
    """Nothing was asked, so nothing failed: the wait ends with no status, which is not an error."""
    async with upstream_on(sandbox, use_status_stream=False) as upstream:
        request_id = await upstream.submit()
        wait = WaitLimits(0.2, poll_first_interval=1.0, poll_max_interval=1.0, heartbeat=5.0, first_poll_delay=5.0)
        report = await Waiter(upstream.client, max_streams=0).wait(SEED_MODEL, request_id, wait)
    assert report is None
    assert upstream.sent_to("/status") == 0
