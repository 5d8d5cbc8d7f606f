"""Per-call overhead: get_fal_status through MCP over stdio vs the same status GET made directly with httpx.

Both against one sandbox job that stays IN_PROGRESS. Calls are interleaved (rotating which goes first) so all
distributions see the same machine noise; the overhead is the difference of their percentiles (see README.md
for why), with the percentiles of paired differences printed as a cross-check. Two diagnostic paths split the
overhead: the same tools/call as raw JSON-RPC lines to a second `python -m server` (no client library), and the
trivial baseline server's echo tool over raw JSON-RPC (the SDK's own floor, no upstream call).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process
from mcp import Client

from bench.common import (
    BASELINE_COMMAND,
    INFO,
    LIST_TOOLS_SESSION,
    PYTHON,
    ROOT,
    SEED_INPUT,
    SEED_MODEL,
    PipeSession,
    Report,
    Row,
    TimedPath,
    auth_headers,
    interleave,
    ms,
    percentile,
    progress,
    server_env,
    status_url,
    stdio_params,
    submit_job,
    temp_state_dir,
    verdict,
    warm_up,
)
from server.sandbox import Sandbox, SandboxConfig

NAME = "call_overhead"
TARGET_P50_S = 0.0015
TARGET_P99_S = 0.005
TARGET_BEYOND_FLOOR_P50_S = 0.0005  # what this server adds beyond the SDK's own cost of a no-op tool
WARM_UP = 20


class RawSession(PipeSession):
    """Tool calls as raw JSON-RPC lines, after the list-tools session's handshake (ids 1 and 2; calls from 101)."""

    def __init__(self, process: Process) -> None:
        super().__init__(process, first_id=100)

    async def start(self) -> None:
        await self.send(LIST_TOOLS_SESSION)  # initialize, initialized, tools/list
        await self.answer(2)

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (await self.request("tools/call", {"name": name, "arguments": arguments}))["result"]
        return result


async def _measure(sandbox: Sandbox, state_dir: str, n: int) -> tuple[dict[str, list[float]], int]:
    times: dict[str, list[float]] = {"mcp": [], "direct": [], "raw": [], "echo": []}
    # Each server its own state directory: a shared ledger would have each one watching the other's job.
    mcp_dir, raw_dir = Path(state_dir) / "mcp", Path(state_dir) / "raw"
    mcp_dir.mkdir()
    raw_dir.mkdir()
    raw_env = server_env(str(raw_dir), UNIAPI_KEY=sandbox.config.key, FAL_MCP_BASE_URL=sandbox.base_url)
    async with (
        Client(stdio_params(sandbox, str(mcp_dir))) as client,
        httpx.AsyncClient(trust_env=False) as http,
        await anyio.open_process([PYTHON, "-m", "server"], env=raw_env, cwd=ROOT, stderr=subprocess.DEVNULL) as process,
        await anyio.open_process(BASELINE_COMMAND, env=raw_env, cwd=ROOT, stderr=subprocess.DEVNULL) as trivial,
    ):
        raw = RawSession(process)
        await raw.start()
        echo = RawSession(trivial)
        await echo.start()
        request_id = await submit_job(client)
        submitted = await raw.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        raw_request_id = submitted["structuredContent"]["request_id"]
        url, headers = status_url(sandbox, request_id), auth_headers(sandbox)

        async def via_mcp() -> bool:
            answer = await client.call_tool("get_fal_status", {"request_id": request_id})
            return not answer.is_error and answer.structured_content["status"] == "IN_PROGRESS"

        async def via_raw() -> bool:
            answer = await raw.call("get_fal_status", {"request_id": raw_request_id})
            return not answer.get("isError") and answer["structuredContent"]["status"] == "IN_PROGRESS"

        async def via_echo() -> bool:  # the SDK's own floor: a tool that does nothing, same transport
            answer = await echo.call("echo", {"text": request_id})
            return not answer.get("isError")

        async def direct() -> bool:
            response = await http.get(url, params={"logs": "1"}, headers=headers)
            return response.status_code in (200, 202) and response.json().get("status") == "IN_PROGRESS"

        paths: list[TimedPath] = [("direct", direct), ("mcp", via_mcp), ("raw", via_raw), ("echo", via_echo)]
        await warm_up(paths, WARM_UP)
        errors = await interleave(paths, n, times)  # rotating which path goes first
        for child in (process, trivial):
            if child.stdin is not None:
                await child.stdin.aclose()  # end of input: the server exits
    return times, errors


def run(quick: bool) -> Report:
    report = Report(NAME)
    n = 60 if quick else 300
    progress(f"per-call overhead: {n} interleaved rounds (direct GET, MCP client, raw JSON-RPC, SDK floor)")
    with temp_state_dir() as state_dir, Sandbox(SandboxConfig(queue_seconds=0, run_seconds=3600)) as sandbox:

        async def bounded() -> tuple[dict[str, list[float]], int]:
            with anyio.fail_after(150):
                return await _measure(sandbox, state_dir, n)

        times, errors = anyio.run(bounded)
    direct = times["direct"]
    # The target rows time what a host sends and gets: JSON-RPC lines over the server's stdio. The Python mcp
    # Client rows below add that library's own work (it validates every answer against the tool's outputSchema),
    # which is the client's cost, not the server's; they are kept beside them so the difference is visible.
    for q, target in ((50, TARGET_P50_S), (99, TARGET_P99_S)):
        raw, base = percentile(times["raw"], q), percentile(direct, q)
        report.rows.append(
            Row(
                f"per-call overhead p{q}: get_fal_status as JSON-RPC over stdio vs direct GET",
                ms(raw),
                ms(base),
                f"+{(raw - base) * 1000:.2f} ms (<= {target * 1000:.1f} ms)",
                verdict(raw - base <= target and errors == 0),
            )
        )
    for q in (50, 99):
        ours, base = percentile(times["mcp"], q), percentile(direct, q)
        report.rows.append(
            Row(
                f"per-call overhead p{q}, diagnostic: through the Python mcp Client (adds its validation) vs direct",
                ms(ours),
                ms(base),
                f"+{(ours - base) * 1000:.2f} ms",
                INFO,
            )
        )
    report.rows.append(
        Row(
            "diagnostic: MCP SDK floor, trivial server's echo tool via raw JSON-RPC (no upstream call)",
            f"p50 {ms(percentile(times['echo'], 50))}, p99 {ms(percentile(times['echo'], 99))}",
            "",
            "the whole time is SDK + stdio overhead",
            INFO,
        )
    )
    # ours - direct GET - SDK floor: what is left is this server's own work per call (validation, the job
    # memory, answer building), the upstream request and the SDK's dispatch taken out.
    raw50, direct50, echo50 = (percentile(times[path], 50) for path in ("raw", "direct", "echo"))
    beyond = raw50 - direct50 - echo50
    report.rows.append(
        Row(
            "per-call overhead p50 beyond the SDK floor: JSON-RPC over stdio - direct GET - SDK floor",
            ms(raw50),
            f"{ms(direct50)} + {ms(echo50)}",
            f"{beyond * 1000:+.2f} ms (<= {TARGET_BEYOND_FLOOR_P50_S * 1000:.1f} ms)",
            verdict(beyond <= TARGET_BEYOND_FLOOR_P50_S and errors == 0),
        )
    )
    paired = [m - d for m, d in zip(times["mcp"], direct, strict=True)]
    report.rows.append(
        Row(
            "per-call overhead, mcp Client: paired differences (cross-check)",
            f"p50 +{percentile(paired, 50) * 1000:.2f} ms, p99 +{percentile(paired, 99) * 1000:.2f} ms",
            f"{n} rounds, {errors} errors",
            "",
            INFO,
        )
    )
    return report
