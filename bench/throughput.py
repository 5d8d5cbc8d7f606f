"""Throughput: get_fal_status calls with 20 in flight on ONE stdio connection of ONE server process.

20 tasks (one per sandbox job) x 50 sequential calls each, against the same 1,000 status GETs made directly
with httpx from 20 concurrent tasks. A stdio server has exactly one client, so concurrency is requests in
flight on that connection.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import httpx
from mcp import Client

from bench.common import (
    INFO,
    Report,
    Row,
    auth_headers,
    ms,
    percentile,
    progress,
    status_url,
    stdio_params,
    submit_job,
    temp_state_dir,
    verdict,
)
from server.sandbox import Sandbox, SandboxConfig

NAME = "throughput"
TASKS = 20


class Burst:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.seconds = 0.0

    @property
    def calls(self) -> int:
        return len(self.latencies)


async def _burst(call: Callable[[int], Awaitable[bool]], per_task: int) -> Burst:
    burst = Burst()

    async def worker(task: int) -> None:
        for _ in range(per_task):
            started = time.perf_counter()
            try:
                ok = await call(task)
            except Exception:
                ok = False
            burst.latencies.append(time.perf_counter() - started)
            burst.errors += not ok

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for task in range(TASKS):
            group.start_soon(worker, task)
    burst.seconds = time.perf_counter() - started
    return burst


async def _measure(sandbox: Sandbox, state_dir: str, per_task: int) -> tuple[Burst, Burst]:
    async with Client(stdio_params(sandbox, state_dir)) as client, httpx.AsyncClient(trust_env=False) as http:
        request_ids = [await submit_job(client) for _ in range(TASKS)]
        headers = auth_headers(sandbox)

        async def via_mcp(task: int) -> bool:
            answer = await client.call_tool("get_fal_status", {"request_id": request_ids[task]})
            return not answer.is_error and answer.structured_content["status"] == "IN_PROGRESS"

        async def direct(task: int) -> bool:
            response = await http.get(status_url(sandbox, request_ids[task]), params={"logs": "1"}, headers=headers)
            return response.status_code in (200, 202) and response.json().get("status") == "IN_PROGRESS"

        await _burst(via_mcp, 2)  # warm-up: connections opened on both sides
        await _burst(direct, 2)
        ours = await _burst(via_mcp, per_task)
        base = await _burst(direct, per_task)
    return ours, base


def run(quick: bool) -> Report:
    report = Report(NAME)
    per_task = 10 if quick else 50
    total = per_task * TASKS
    progress(f"throughput: {total} calls, {TASKS} in flight, MCP stdio then direct")
    with temp_state_dir() as state_dir, Sandbox(SandboxConfig(queue_seconds=0, run_seconds=3600)) as sandbox:

        async def bounded() -> tuple[Burst, Burst]:
            with anyio.fail_after(180):
                return await _measure(sandbox, state_dir, per_task)

        ours, base = anyio.run(bounded)
    report.rows.append(
        Row(
            f"throughput: {total} get_fal_status, {TASKS} in flight, errors",
            str(ours.errors),
            str(base.errors),
            "must be 0",
            verdict(ours.errors == 0 and ours.calls == total),
        )
    )
    report.rows.append(
        Row(
            "throughput: calls/s (total time)",
            f"{ours.calls / ours.seconds:.0f}/s ({ours.seconds:.2f} s)",
            f"{base.calls / base.seconds:.0f}/s ({base.seconds:.2f} s)",
            f"{(ours.calls / ours.seconds) / (base.calls / base.seconds):.2f}x of direct",
            INFO,
        )
    )
    for q in (50, 99):
        ours_q, base_q = percentile(ours.latencies, q), percentile(base.latencies, q)
        report.rows.append(
            Row(f"throughput: p{q} latency", ms(ours_q), ms(base_q), f"{ours_q / base_q:.2f}x of direct", INFO)
        )
    return report
