"""Money on the submit path: what pricing and a budget check add to a submit, in one run.

Two in-memory MCP clients against one sandbox, each with a server of its own: today's submit (no price known, no
cap: nothing priced, nothing checked), and a submit priced from a FAL_MCP_PRICES table under a daily budget (the
estimate, the per-job rules, and the day's spend read and the hold written in one ledger transaction). Calls are
interleaved (rotating which goes first) so both see the same machine noise. Target: the priced submit's p50 at most
1 ms above today's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench.common import SEED_INPUT, SEED_MODEL, Report, Row, make_settings, ms, percentile, progress, temp_state_dir
from bench.common import verdict as judged
from server.app import create_server
from server.sandbox import Sandbox, SandboxConfig

NAME = "money"
TARGET_EXTRA_P50_S = 0.001
WARM_UP = 20


async def _measure(sandbox: Sandbox, plain_dir: str, priced_dir: str, n: int) -> dict[str, list[float]]:
    prices = Path(priced_dir) / "prices.json"
    prices.write_text(json.dumps({SEED_MODEL: {"unit": "second", "unit_price": 0.05}}))
    common: dict[str, Any] = {"provider": "uniapi", "uniapi_key": sandbox.config.key, "fal_key": None}
    plain = create_server(make_settings(sandbox, plain_dir, **common))
    priced = create_server(
        make_settings(sandbox, priced_dir, prices_file=prices, daily_budget=1_000_000.0, max_job_cost=100.0, **common)
    )
    times: dict[str, list[float]] = {"today": [], "priced": []}
    async with Client(plain) as today, Client(priced) as money:
        paths = [("today", today), ("priced", money)]

        async def submit(client: Any) -> float:
            started = time.perf_counter()
            answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            elapsed = time.perf_counter() - started
            if answer.is_error:
                raise RuntimeError(answer.content[0].text)
            return elapsed

        for _ in range(WARM_UP):
            for _, client in paths:
                await submit(client)
        for i in range(n):
            for name, client in paths[i % 2 :] + paths[: i % 2]:
                times[name].append(await submit(client))
    return times


def run(quick: bool) -> Report:
    report = Report(NAME)
    n = 60 if quick else 300
    progress(f"money: {n} interleaved submits, today's and priced under a daily budget")
    with (
        temp_state_dir() as plain_dir,
        temp_state_dir() as priced_dir,
        Sandbox(SandboxConfig(queue_seconds=3600, run_seconds=3600)) as sandbox,
    ):
        times = anyio.run(_measure, sandbox, plain_dir, priced_dir, n)
    today, priced = percentile(times["today"], 50), percentile(times["priced"], 50)
    extra = priced - today
    report.rows.append(
        Row(
            "submit p50: priced + budget check vs today's",
            ms(priced),
            ms(today),
            f"{extra * 1000:+.2f} ms (target <= +{TARGET_EXTRA_P50_S * 1000:.0f} ms)",
            judged(extra <= TARGET_EXTRA_P50_S),
        )
    )
    return report
