"""Concurrency: 200 jobs waited at once in one server process (in-memory MCP client, sandbox in a thread).

Counts the waits that end done=true, samples every 0.1 s (from a thread, so a busy event loop cannot skew it)
the ESTABLISHED TCP connections this process holds to the sandbox port, and the resident memory.
"""

from __future__ import annotations

import threading
import time

import anyio
from mcp import Client

from bench.common import (
    INFO,
    Report,
    Row,
    established_to_port,
    make_settings,
    progress,
    reset_peak_rss,
    rss_kib,
    submit_job,
    temp_state_dir,
    verdict,
)
from server.app import create_server

NAME = "concurrency"
JOBS = 200
RUN_SECONDS = 10.0
WAIT_SECONDS = 60
SUBMITS_IN_FLIGHT = 20
MEMORY_TARGET_MIB = 30.0


class Sampler:
    """Every 0.1 s: connections to the sandbox port (peak per phase) and VmRSS (peak)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.phase = "submit"
        self.peak_connections: dict[str, int] = {}
        self.peak_rss_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            connections = established_to_port(self.port)
            self.peak_connections[self.phase] = max(self.peak_connections.get(self.phase, 0), connections)
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib())
            self.samples += 1
            self._stop.wait(0.1)


def run(quick: bool) -> Report:
    del quick  # 200 concurrent waits is the point; a quick run does the same
    report = Report(NAME)
    rss_start = rss_kib()  # the server and the MCP client are imported; the sandbox (uvicorn, starlette) is not
    from server.sandbox import Sandbox, SandboxConfig

    progress(f"concurrency: {JOBS} jobs of {RUN_SECONDS:.0f} s waited at once in one server process")
    with (
        temp_state_dir() as state_dir,
        Sandbox(SandboxConfig(queue_seconds=0, run_seconds=RUN_SECONDS)) as sandbox,
    ):
        rss_sandbox = rss_kib()
        # Production timeouts (request 20 s, retry deadline 30 s), with the wait cap raised above the wait asked.
        settings = make_settings(sandbox, state_dir, test_timeouts=False, max_wait_seconds=90)
        port = int(sandbox.base_url.rsplit(":", 1)[1])
        done = errors = 0
        rss_before = 0
        peak_hwm = 0
        started = time.monotonic()

        async def main(sampler: Sampler) -> None:
            nonlocal done, errors, rss_before, peak_hwm
            async with Client(create_server(settings)) as client:
                await client.list_tools()
                rss_before = rss_kib()
                hwm_reset = reset_peak_rss()
                sampler.start()
                request_ids: list[str] = []
                limiter = anyio.Semaphore(SUBMITS_IN_FLIGHT)

                async def submit() -> None:
                    async with limiter:
                        request_ids.append(await submit_job(client))

                async with anyio.create_task_group() as group:
                    for _ in range(JOBS):
                        group.start_soon(submit)
                sampler.phase = "wait"

                async def wait(request_id: str) -> None:
                    nonlocal done, errors
                    try:
                        answer = await client.call_tool(
                            "get_fal_result", {"request_id": request_id, "wait_seconds": WAIT_SECONDS}
                        )
                    except Exception:
                        errors += 1
                        return
                    if answer.is_error:
                        errors += 1
                    elif answer.structured_content.get("done") is True:
                        done += 1

                async with anyio.create_task_group() as group:
                    for request_id in request_ids:
                        group.start_soon(wait, request_id)
                if hwm_reset:
                    peak_hwm = rss_kib("VmHWM")

        sampler = Sampler(port)
        try:

            async def bounded() -> None:
                with anyio.fail_after(RUN_SECONDS + WAIT_SECONDS + 60):
                    await main(sampler)

            anyio.run(bounded)
        finally:
            sampler.stop()
        seconds = time.monotonic() - started
        requests = len(sandbox.seen())

    limit = settings.max_connections
    report.rows.append(
        Row(
            f"concurrency: {JOBS} waits of {RUN_SECONDS:.0f} s jobs, done=true",
            f"{done} of {JOBS} ({errors} errors)",
            "",
            f"all {JOBS}",
            verdict(done == JOBS and errors == 0),
        )
    )
    peak = max(sampler.peak_connections.values(), default=0)
    report.rows.append(
        Row(
            "concurrency: peak ESTABLISHED connections to the upstream",
            f"{peak} (submits {sampler.peak_connections.get('submit', 0)}, "
            f"waits {sampler.peak_connections.get('wait', 0)})",
            "",
            f"<= pool limit {limit}",
            verdict(peak <= limit and sampler.samples > 0),
        )
    )
    peak_rss = max(sampler.peak_rss_kib, peak_hwm)
    growth_mib = (peak_rss - rss_before) / 1024
    report.rows.append(
        Row(
            "concurrency: resident memory growth (peak - before)",
            f"+{growth_mib:.1f} MiB",
            f"before {rss_before / 1024:.0f} MiB",
            f"<= {MEMORY_TARGET_MIB:.0f} MiB",
            verdict(growth_mib <= MEMORY_TARGET_MIB),
        )
    )
    report.rows.append(
        Row(
            "concurrency: sandbox's own share (same process)",
            f"+{(rss_sandbox - rss_start) / 1024:.1f} MiB to import and start it",
            "",
            f"{requests} upstream requests in {seconds:.1f} s, {sampler.samples} samples",
            INFO,
        )
    )
    return report
