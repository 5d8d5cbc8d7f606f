"""MCP tasks: what polling a task costs, against what a status look costs, in one run.

One `python -m server` over stdio, spoken to in raw 2026-07-28 JSON-RPC (each request with its own `_meta`
envelope, declaring the tasks extension), and one sandbox job that stays IN_PROGRESS, submitted as a task. The
watcher's first check is put an hour away, so nothing but the calls measured asks the upstream about the jobs.
Interleaved (rotating which goes first): `tasks/get` on the task, and `get_fal_status` on a second, plain job.
Rows: p50 of each and their ratio (target: `tasks/get` no dearer), and the upstream requests each path caused
(target: none for `tasks/get`: a task is read from the ledger; the follower alone asks the upstream).
"""

from __future__ import annotations

import subprocess
from typing import Any

import anyio

from bench.common import (
    INFO,
    PYTHON,
    ROOT,
    SEED_INPUT,
    SEED_MODEL,
    PipeSession,
    Report,
    Row,
    TimedPath,
    interleave,
    ms,
    percentile,
    progress,
    server_env,
    temp_state_dir,
    verdict,
    warm_up,
)
from server.sandbox import Sandbox, SandboxConfig

NAME = "tasks"
TASKS = "io.modelcontextprotocol/tasks"
WARM_UP = 20
TARGET_RATIO = 1.0  # tasks/get p50 / get_fal_status p50


def envelope() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
    }


class ModernSession(PipeSession):
    """Raw 2026-07-28 JSON-RPC lines over the server's pipes (no handshake: every request carries its envelope)."""

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await super().request(method, {**params, "_meta": envelope()})
        if "result" not in answer:
            raise RuntimeError(f"{method} failed: {answer.get('error')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def submit(self) -> dict[str, Any]:
        return await self.request(
            "tools/call", {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": SEED_INPUT}}
        )


async def _measure(sandbox: Sandbox, state_dir: str, n: int) -> tuple[dict[str, list[float]], dict[str, int], int]:
    times: dict[str, list[float]] = {"tasks/get": [], "get_fal_status": []}
    env = server_env(
        state_dir,
        UNIAPI_KEY=sandbox.config.key,
        FAL_MCP_BASE_URL=sandbox.base_url,
        FAL_MCP_WATCH_FIRST_INTERVAL="3600",  # the watcher is on (tasks need it) but checks nothing meanwhile
    )
    async with await anyio.open_process([PYTHON, "-m", "server"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL) as p:
        session = ModernSession(p)
        created = await session.submit()
        if created.get("resultType") != "task":
            raise RuntimeError(f"submit_fal_job did not answer with a task: {created}")
        task_id = created["taskId"]
        task_job = task_id.removeprefix("job.")
        plain_job = (await session.submit())["taskId"].removeprefix("job.")  # a task too; only its status is asked

        async def task_get() -> bool:
            return (await session.request("tasks/get", {"taskId": task_id}))["status"] == "working"

        async def status() -> bool:
            answer = await session.request(
                "tools/call", {"name": "get_fal_status", "arguments": {"request_id": plain_job}}
            )
            return not answer.get("isError") and answer["structuredContent"]["status"] == "IN_PROGRESS"

        paths: list[TimedPath] = [("tasks/get", task_get), ("get_fal_status", status)]
        await warm_up(paths, WARM_UP)
        before = {job: _reads(sandbox, job) for job in (task_job, plain_job)}
        errors = await interleave(paths, n, times)
        reads = {
            "tasks/get": _reads(sandbox, task_job) - before[task_job],
            "get_fal_status": _reads(sandbox, plain_job) - before[plain_job],
        }
        if p.stdin is not None:
            await p.stdin.aclose()
    return times, reads, errors


def _reads(sandbox: Sandbox, request_id: str) -> int:
    return sum(1 for r in sandbox.seen() if f"/requests/{request_id}" in r.path)


def run(quick: bool) -> Report:
    report = Report(NAME)
    n = 60 if quick else 300
    progress(f"tasks: {n} interleaved rounds (tasks/get, get_fal_status) over raw 2026-07-28 stdio")
    with temp_state_dir() as state_dir, Sandbox(SandboxConfig(queue_seconds=0, run_seconds=3600)) as sandbox:

        async def bounded() -> tuple[dict[str, list[float]], dict[str, int], int]:
            with anyio.fail_after(150):
                return await _measure(sandbox, state_dir, n)

        times, reads, errors = anyio.run(bounded)
    task50, status50 = percentile(times["tasks/get"], 50), percentile(times["get_fal_status"], 50)
    report.rows.append(
        Row(
            "tasks/get p50 vs get_fal_status p50 (raw JSON-RPC over stdio, same run)",
            ms(task50),
            ms(status50),
            f"{task50 / status50:.2f}x (<= {TARGET_RATIO:.2f}x)",
            verdict(task50 <= status50 * TARGET_RATIO and errors == 0),
        )
    )
    report.rows.append(
        Row(
            f"upstream requests caused by {n} tasks/get (get_fal_status: one each)",
            str(reads["tasks/get"]),
            str(reads["get_fal_status"]),
            "0 (a task is read from the ledger)",
            verdict(reads["tasks/get"] == 0 and errors == 0),
        )
    )
    report.rows.append(
        Row(
            "tasks/get p99 vs get_fal_status p99",
            ms(percentile(times["tasks/get"], 99)),
            ms(percentile(times["get_fal_status"], 99)),
            f"{n} rounds, {errors} errors",
            INFO,
        )
    )
    return report
