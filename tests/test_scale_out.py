"""Several instances on one ledger, as real processes against one sandbox: HTTP instances on PostgreSQL (any
instance serves any request; an instance killed mid-wait loses nothing; one poller per job) and stdio processes
on SQLite (one poller per job). The sandbox tells instances apart by the `instance/<id>` in their User-Agent."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.jobs.ledger import JobLedger
from server.sandbox import Sandbox, SeenRequest
from tests.helpers import SEED_INPUT, SEED_MODEL, server_env, text_of
from tests.instances import HttpInstance, http_instances
from tests.postgres import Backend, open_target

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
FAST_WATCH = {"FAL_MCP_WATCH_FIRST_INTERVAL": "0.3", "FAL_MCP_WATCH_MAX_INTERVAL": "0.6"}


def instance_env(sandbox: Sandbox, backend: Backend, **extra: str) -> dict[str, str]:
    return server_env(sandbox, FAL_MCP_LOG_LEVEL="INFO", **extra) | backend.env()


def upstream_reads(sandbox: Sandbox, request_id: str) -> list[SeenRequest]:
    """The status, status stream and result requests for one job."""
    return [r for r in sandbox.seen("GET") if f"/requests/{request_id}" in r.path]


def readers(sandbox: Sandbox, request_id: str) -> set[str | None]:
    return {r.instance for r in upstream_reads(sandbox, request_id)}


async def submit(client: Any, tag: str) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": dict(SEED_INPUT, prompt=tag)})
    assert not answer.is_error, text_of(answer)
    return str(answer.structured_content["request_id"])


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.1)
    del what


def all_kept(ledger: JobLedger, request_ids: list[str]) -> bool:
    return all((row := ledger.get(request_id)) is not None and row.state == "completed" for request_id in request_ids)


@asynccontextmanager
async def ledger_of(backend: Backend) -> AsyncIterator[JobLedger]:
    with open_target(backend.target) as ledger:
        yield ledger


# ---- HTTP instances on PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def pg(postgres_url: str) -> Backend:
    return Backend("postgres", postgres_url)


async def test_submit_on_one_instance_list_wait_and_fetch_on_another(sandbox: Sandbox, pg: Backend) -> None:
    sandbox.config.run_seconds = 2.0
    env = instance_env(sandbox, pg, FAL_MCP_PROGRESS_INTERVAL="0.3")
    updates: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(message)

    with http_instances(2, env) as (a, b):
        async with Client(a.url) as on_a:
            request_id = await submit(on_a, "through a")
        async with Client(b.url) as on_b:
            listed = (await on_b.call_tool("list_fal_jobs", {})).structured_content
            waited = await on_b.call_tool(
                "get_fal_result", {"request_id": request_id, "wait_seconds": 30}, progress_callback=on_progress
            )
            status = (await on_b.call_tool("get_fal_status", {"request_id": request_id})).structured_content
        sandbox.expire(request_id)  # fal discarded it: both instances answer from the ledger
        async with Client(b.url) as on_b, Client(a.url) as on_a:
            again_b = await on_b.call_tool("get_fal_result", {"request_id": request_id})
            again_a = await on_a.call_tool("get_fal_result", {"request_id": request_id})
        logs = a.output() + b.output()
    assert [job["request_id"] for job in listed["jobs"]] == [request_id]
    assert waited.structured_content["done"] is True, text_of(waited)
    assert updates, "no progress reached the client"
    assert status["outcome"] == "succeeded"
    for again in (again_a, again_b):
        assert again.structured_content["output"] == waited.structured_content["output"]
        assert "ledger" in again.structured_content["next"]
    (submitter,) = {r.instance for r in sandbox.seen("POST")}
    assert submitter is not None
    assert len(readers(sandbox, request_id)) == 1 and submitter not in readers(sandbox, request_id)  # b followed
    assert "pw-" not in logs and pg.target not in logs  # the database URL's password never shows


async def test_an_instance_killed_mid_wait_loses_nothing(sandbox: Sandbox, pg: Backend) -> None:
    sandbox.config.run_seconds = 6.0
    env = instance_env(sandbox, pg, FAL_MCP_WATCH_LEASE="3", **FAST_WATCH)
    with http_instances(2, env) as (a, _):
        async with ledger_of(pg) as ledger, anyio.create_task_group() as group:
            async with Client(a.url) as on_a:
                jobs = [await submit(on_a, f"job {n}") for n in range(3)]
            (a_id,) = {r.instance for r in sandbox.seen("POST")}
            waited = jobs[0]

            async def wait_on_a() -> None:
                async with Client(a.url) as client:
                    await client.call_tool("get_fal_result", {"request_id": waited, "wait_seconds": 40})

            group.start_soon(wait_on_a)
            # a's wait holds the job's lease and follows it upstream
            await until(lambda: (lease := ledger.lease(waited)) is not None and lease.kind == "wait", 30, "a's lease")
            lease = ledger.lease(waited)
            assert lease is not None and lease.owner == a_id
            await until(lambda: a_id in readers(sandbox, waited), 30, "a follows the job")
            a.kill()
            killed_at = len(sandbox.seen())
            group.cancel_scope.cancel()  # the client's call died with the instance

        async with ledger_of(pg) as ledger:
            await until(lambda: all_kept(ledger, jobs), 60, "b keeps every result")
            b_lease = ledger.lease(waited)
        after_kill = [r for r in sandbox.seen()[killed_at:] if f"/requests/{waited}" in r.path]
        assert after_kill and {r.instance for r in after_kill} - {a_id}, "b took the job over"
        assert a_id not in {r.instance for r in after_kill}
        assert b_lease is None  # kept: the lease ended with it
        assert len(sandbox.seen("POST")) == len(jobs) == len(set(jobs))  # one submit per job, never re-sent

        restarted = HttpInstance(env)
        try:
            restarted.wait_ready()
            async with Client(restarted.url) as again:
                listed = (await again.call_tool("list_fal_jobs", {})).structured_content
                result = await again.call_tool("get_fal_result", {"request_id": waited})
        finally:
            restarted.stop()
    assert {job["request_id"] for job in listed["jobs"]} == set(jobs)
    assert {job["status"] for job in listed["jobs"]} == {"completed"}
    assert result.structured_content["done"] is True and "ledger" in result.structured_content["next"]


async def test_one_poller_per_job_across_http_instances(sandbox: Sandbox, pg: Backend) -> None:
    sandbox.config.run_seconds = 3.0
    env = instance_env(sandbox, pg, **FAST_WATCH)
    with http_instances(2, env) as instances:
        jobs: list[str] = []
        for n, instance in enumerate(instances * 3):
            async with Client(instance.url) as client:
                jobs.append(await submit(client, f"job {n}"))
        async with ledger_of(pg) as ledger:
            await until(lambda: all_kept(ledger, jobs), 60, "every result kept by a watcher")
    assert len({r.instance for r in sandbox.seen("POST")}) == 2  # both instances submitted
    polled_by = {request_id: readers(sandbox, request_id) for request_id in jobs}
    assert all(len(instances) == 1 for instances in polled_by.values()), polled_by


# ---- stdio processes on SQLite --------------------------------------------------------------------------------


async def test_one_poller_per_job_across_stdio_processes_on_sqlite(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.run_seconds = 3.0
    local = Backend("sqlite", str(tmp_path / "jobs.sqlite3"))
    env = instance_env(sandbox, local, **FAST_WATCH)
    params = StdioServerParameters(command=sys.executable, args=["-m", "server"], env=env, cwd=str(ROOT))
    jobs: list[str] = []
    with anyio.fail_after(120):
        async with Client(params) as first, Client(params) as second:
            for n in range(6):
                jobs.append(await submit((first, second)[n % 2], f"job {n}"))
            async with ledger_of(local) as ledger:
                await until(lambda: all_kept(ledger, jobs), 60, "every result kept by a watcher")
    assert len({r.instance for r in sandbox.seen("POST")}) == 2
    polled_by = {request_id: readers(sandbox, request_id) for request_id in jobs}
    assert all(len(instances) == 1 for instances in polled_by.values()), polled_by


def test_instances_are_told_apart_by_a_random_name_only() -> None:
    seen = SeenRequest("GET", "/x", "", "h", None, b"", user_agent="fal-queue-mcp/0.1 instance/0a1b2c3d")
    assert seen.instance == "0a1b2c3d"
    assert SeenRequest("GET", "/x", "", "h", None, b"").instance is None


# ---- MCP tasks across instances --------------------------------------------------------------------------------


async def test_a_task_created_through_one_instance_is_read_to_completion_through_another(
    sandbox: Sandbox, pg: Backend
) -> None:
    """Stateless HTTP on PostgreSQL: the task lives in the ledger, not in the instance that made it. The creating
    instance is killed with SIGKILL straight after; the other keeps the job's result and answers the task."""
    from tests.raw_mcp import RawHttp

    sandbox.config.run_seconds = 3.0
    env = instance_env(sandbox, pg, FAL_MCP_HTTP_STATELESS="true", FAL_MCP_WATCH_LEASE="3", **FAST_WATCH)
    with http_instances(2, env) as (a, b):
        on_a, on_b = RawHttp(a.url), RawHttp(b.url)
        try:
            arguments = {"model": SEED_MODEL, "input": dict(SEED_INPUT, prompt="a task across instances")}
            created = on_a.request("tools/call", {"name": "submit_fal_job", "arguments": arguments})["result"]
            task_id = created["taskId"]
            first = on_b.request("tasks/get", {"taskId": task_id})["result"]  # created means readable anywhere
            a.kill()
            with anyio.fail_after(60):
                task = first
                while task["status"] == "working":
                    await anyio.sleep(task["pollIntervalMs"] / 1000)
                    task = on_b.request("tasks/get", {"taskId": task_id})["result"]
        finally:
            on_a.close()
            on_b.close()
    assert created["resultType"] == "task" and first["taskId"] == task_id and first["status"] == "working"
    assert task["status"] == "completed" and task["result"]["structuredContent"]["done"] is True
    request_id = task_id.removeprefix("job.")
    (a_id,) = {r.instance for r in sandbox.seen("POST")}
    assert readers(sandbox, request_id) - {a_id}, "the surviving instance followed the job"
    assert len(sandbox.seen("POST")) == 1  # one submit, never re-sent
