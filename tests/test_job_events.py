"""Job changes as a seam (server.jobs.events), and waits as the one follower of their job (server.jobs.following),
across two instances on one ledger (both backends): two Runtimes sharing a SQLite file or a PostgreSQL database,
with the same sandbox upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
import pytest
from mcp import Client

from server.app import create_server
from server.jobs.events import JobEvents
from server.jobs.following import follow, following
from server.jobs.ledger import JobRow
from server.jobs.waiting import WaitLimits
from server.runtime import Runtime
from server.sandbox import Sandbox
from server.upstream.reports import StatusReport
from tests.helpers import SEED_INPUT, SEED_MODEL, make_settings
from tests.postgres import Backend
from tools.submit import submit

pytestmark = pytest.mark.anyio
OUTPUT = {"video": {"url": "https://v3.fal.media/files/x/output.mp4"}}


# ---- the seam in one process ----------------------------------------------------------------------------------


async def test_listeners_hear_changes_until_they_unsubscribe() -> None:
    events = JobEvents()
    heard: list[str] = []

    def broken(_: str) -> None:
        raise RuntimeError("a bad listener")

    events.subscribe(broken)  # logged and skipped: the others still hear
    unsubscribe = events.subscribe(heard.append)
    events.publish("a")
    unsubscribe()
    unsubscribe()  # idempotent
    events.publish("b")
    assert heard == ["a"]


async def test_changes_as_an_async_iterator() -> None:
    events = JobEvents()
    heard: list[str] = []

    async def listen() -> None:
        async with aclosing(events.changes()) as changes:
            async for request_id in changes:
                heard.append(request_id)
                if request_id == "last":
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(listen)
        with anyio.fail_after(10):
            while not heard:  # the iterator subscribes on its first step
                events.publish("warm-up")
                await anyio.sleep(0.01)
        events.publish("a")
        events.publish("last")
    assert heard[-2:] == ["a", "last"]
    subscribed = len(events._listeners)
    assert subscribed == 0  # closing the iterator unsubscribed it


async def test_a_watch_misses_no_change_between_its_waits() -> None:
    events = JobEvents()
    with events.watching("job-1") as watch:
        events.publish("job-2")
        assert await watch.wait(0.05) is False  # another job's change
        events.publish("job-1")  # before the wait starts: kept for it
        assert await watch.wait(5) is True
        assert await watch.wait(0.05) is False
    events.publish("job-1")  # after the block, nothing is listening


# ---- across instances -----------------------------------------------------------------------------------------


@asynccontextmanager
async def two_instances(sandbox: Sandbox, backend: Backend) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two running instances on one ledger, each relaying the other's changes."""
    settings = make_settings(sandbox, **backend.settings(), poll_first_interval=0.2, poll_max_interval=0.5)
    first, second = Runtime(settings), Runtime(settings)
    try:
        async with anyio.create_task_group() as group:
            for runtime in (first, second):
                ledger = await anyio.to_thread.run_sync(lambda runtime=runtime: runtime.jobs.ledger)
                group.start_soon(ledger.relay_changes, runtime.jobs.events.publish)
            yield first, second
            group.cancel_scope.cancel()
    finally:
        await first.aclose()
        await second.aclose()


def limits(seconds: float) -> WaitLimits:
    return WaitLimits(seconds=seconds, poll_first_interval=0.2, poll_max_interval=0.5, heartbeat=1.0)


async def relay_is_up(a: Runtime, b: Runtime) -> None:
    """Until b hears a's changes (a change made before b listens is not relayed)."""
    probe = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
    with b.jobs.events.watching(probe) as watch, anyio.fail_after(30):
        while True:
            await a.jobs.record_download(probe, "https://x/o.mp4", f"/tmp/{time.monotonic()}.mp4", "0" * 64, 1)
            if await watch.wait(0.5):
                return


async def test_a_change_made_on_one_instance_is_heard_on_the_other(sandbox: Sandbox, backend: Backend) -> None:
    async with two_instances(sandbox, backend) as (a, b):
        await relay_is_up(a, b)
        job = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
        heard: list[str] = []
        b.jobs.events.subscribe(heard.append)
        await a.jobs.keep_output(job, OUTPUT)
        with anyio.fail_after(20):
            while job not in heard:
                await anyio.sleep(0.02)


async def test_a_wait_trails_another_instances_wait_and_asks_the_upstream_nothing(
    sandbox: Sandbox, backend: Backend
) -> None:
    sandbox.config.run_seconds = 120
    async with two_instances(sandbox, backend) as (a, b):
        await relay_is_up(a, b)
        job = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
        assert await a.jobs.db(a.jobs.ledger.claim_wait, job, 60) == "taken"  # a's wait follows it
        outcome: list[StatusReport | JobRow | None] = []

        async def wait_on_b() -> None:
            async with following(b.jobs, job):
                outcome.append(await follow(b.jobs, b.waiter, SEED_MODEL, job, limits(60), lease_seconds=60))

        async with anyio.create_task_group() as group:
            group.start_soon(wait_on_b)
            await anyio.sleep(1.0)
            started = time.monotonic()
            await a.jobs.keep_output(job, OUTPUT)  # a keeps the outcome: b's wait ends, well before its 60 s
            with anyio.fail_after(20):
                while not outcome:
                    await anyio.sleep(0.02)
        noticed = time.monotonic() - started
    (row,) = outcome
    assert isinstance(row, JobRow) and row.state == "completed" and row.result == OUTPUT
    assert noticed < 20
    assert [r.path for r in sandbox.seen("GET") if job in r.path] == []  # only a followed it


async def test_a_wait_on_a_job_kept_meanwhile_returns_it_and_asks_the_upstream_nothing(
    sandbox: Sandbox, backend: Backend
) -> None:
    """The trailing wait's race, made certain: another instance kept the outcome after this wait last read the job
    and before it asked for the lease (the claim then finds no unfinished row to lease)."""
    sandbox.config.run_seconds = 120
    async with two_instances(sandbox, backend) as (a, b):
        job = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
        await a.jobs.keep_output(job, OUTPUT)
        assert await b.jobs.db(b.jobs.ledger.claim_wait, job, 60) == "untracked"
        with anyio.fail_after(20):
            async with following(b.jobs, job):
                row = await follow(b.jobs, b.waiter, SEED_MODEL, job, limits(5), lease_seconds=60)
    assert isinstance(row, JobRow) and row.state == "completed" and row.result == OUTPUT
    assert [r.path for r in sandbox.seen("GET") if job in r.path] == []


async def test_a_leading_wait_ends_once_another_instance_kept_the_outcome(sandbox: Sandbox, backend: Backend) -> None:
    sandbox.config.run_seconds = 120
    async with two_instances(sandbox, backend) as (a, b):
        await relay_is_up(a, b)
        job = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
        outcome: list[StatusReport | JobRow | None] = []

        async def wait_on_b() -> None:
            async with following(b.jobs, job):
                outcome.append(await follow(b.jobs, b.waiter, SEED_MODEL, job, limits(60), lease_seconds=60))

        async with anyio.create_task_group() as group:
            group.start_soon(wait_on_b)
            with anyio.fail_after(20):
                while not any(job in r.path for r in sandbox.seen("GET")):  # b follows the job upstream
                    await anyio.sleep(0.05)
            lease = await a.jobs.db(a.jobs.ledger.lease, job)
            assert lease is not None and (lease.owner, lease.kind) == (b.instance_id, "wait")
            await a.jobs.keep_output(job, OUTPUT)
            with anyio.fail_after(20):
                while not outcome:
                    await anyio.sleep(0.02)
        assert await b.jobs.db(b.jobs.ledger.lease, job) is None
    (row,) = outcome
    assert isinstance(row, JobRow) and row.result == OUTPUT


async def test_a_trailing_wait_takes_over_when_the_other_wait_ends(sandbox: Sandbox, backend: Backend) -> None:
    sandbox.config.run_seconds = 3
    async with two_instances(sandbox, backend) as (a, b):
        job = (await submit(a, SEED_MODEL, SEED_INPUT)).request_id
        assert await a.jobs.db(a.jobs.ledger.claim_wait, job, 60) == "taken"
        outcome: list[StatusReport | JobRow | None] = []

        async def wait_on_b() -> None:
            async with following(b.jobs, job):
                outcome.append(await follow(b.jobs, b.waiter, SEED_MODEL, job, limits(30), lease_seconds=60))

        async with anyio.create_task_group() as group:
            group.start_soon(wait_on_b)
            await anyio.sleep(0.5)
            assert await a.jobs.db(a.jobs.ledger.release, job)  # a's wait ends with the job still running
            with anyio.fail_after(30):
                while not outcome:
                    await anyio.sleep(0.05)
        # b took the lease over, followed the job upstream to the end, and gave the lease back after the call
        assert await b.jobs.db(b.jobs.ledger.lease, job) is None
    (report,) = outcome
    assert isinstance(report, StatusReport) and report.state == "COMPLETED"
    assert any(job in r.path for r in sandbox.seen("GET"))


async def test_a_stopping_instance_gives_its_leases_back(sandbox: Sandbox, backend: Backend) -> None:
    runtime = Runtime(make_settings(sandbox, **backend.settings()))
    try:
        job = (await submit(runtime, SEED_MODEL, SEED_INPUT)).request_id
        claimed = await runtime.jobs.db(runtime.jobs.ledger.claim_watch, 600, limit=10, submitted_since=0.0)
        assert [row.request_id for row in claimed] == [job]
    finally:
        await runtime.aclose()
    with backend.open() as ledger:
        assert ledger.lease(job) is None  # another instance's watcher may claim it at once


# ---- through MCP: a client listening on one instance hears what another instance changed ----------------------


async def test_a_client_listening_on_one_instance_hears_a_job_kept_by_another(
    sandbox: Sandbox, backend: Backend
) -> None:
    settings = make_settings(sandbox, **backend.settings())

    async def submit_on(client: Client) -> str:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        return str(answer.structured_content["request_id"])

    async with (
        Client(create_server(settings), mode="2026-07-28") as on_a,
        Client(create_server(settings), mode="2026-07-28") as on_b,
    ):
        job = await submit_on(on_a)
        followed = ["fal://jobs", f"fal://jobs/{job}"]
        async with on_b.listen(resource_subscriptions=followed) as subscription:
            heard: list[str] = []

            async def hear() -> None:
                async for event in subscription:
                    heard.append(event.uri)

            async with anyio.create_task_group() as group:
                group.start_soon(hear)
                with anyio.fail_after(30):
                    while "fal://jobs" not in heard:  # until b relays a's changes (it starts a moment after serving)
                        await submit_on(on_a)
                        await anyio.sleep(0.5)
                    sandbox.finish_now(job)
                    done = await on_a.call_tool("get_fal_result", {"request_id": job})
                    assert done.structured_content["done"] is True  # a kept the result: a's change, heard on b
                    while followed[1] not in heard:
                        await anyio.sleep(0.05)
                group.cancel_scope.cancel()
