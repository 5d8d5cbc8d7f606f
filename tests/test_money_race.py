"""A budget that holds across processes: two real server processes sharing one ledger (SQLite file, or PostgreSQL as
two instances) take twenty submits at once against a daily budget that fits five, and exactly five reach the
upstream; the others are refused with the setting, the estimate and what is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.sandbox import Sandbox
from tests.helpers import SEED_INPUT, SEED_MODEL, jsonrpc_line, server_env
from tests.postgres import Backend
from tests.stdio_session import StdioSession

PER_JOB = 0.25  # SEED_MODEL's 5 s at $0.05 a second (the price table below)
BUDGET = 5 * PER_JOB
EACH = 10


@pytest.mark.xdist_group("money_race")
def test_twenty_concurrent_submits_against_a_budget_of_five(sandbox: Sandbox, backend: Backend, tmp_path: Path) -> None:
    sandbox.config.run_seconds = 60  # nothing finishes: every hold stays open
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({SEED_MODEL: {"unit": "second", "unit_price": 0.05}}))
    env = (
        server_env(sandbox, FAL_MCP_PRICES=str(prices), FAL_MCP_DAILY_BUDGET=str(BUDGET), FAL_MCP_WATCH_JOBS="false")
        | backend.env()
    )  # both servers on one ledger
    sessions = [StdioSession(env) for _ in range(2)]
    try:
        for session in sessions:
            session.initialize("racer")
        for session in sessions:  # every call written at once: the two servers run them concurrently
            session.send(
                [
                    jsonrpc_line(
                        {
                            "jsonrpc": "2.0",
                            "id": 100 + n,
                            "method": "tools/call",
                            "params": {
                                "name": "submit_fal_job",
                                "arguments": {"model": SEED_MODEL, "input": dict(SEED_INPUT, prompt=f"race {n}")},
                            },
                        }
                    )
                    for n in range(EACH)
                ]
            )
        ids = {100 + n for n in range(EACH)}
        answers = [answer for session in sessions for answer in session.wait_for(ids).values() if answer["id"] in ids]
    finally:
        for session in sessions:
            session.finish()
    assert len(answers) == 2 * EACH
    results = [answer["result"] for answer in answers]
    passed = [result for result in results if not result.get("isError")]
    refused = [result["content"][0]["text"] for result in results if result.get("isError")]
    assert len(passed) == 5
    assert len(sandbox.seen("POST")) == 5
    assert len(refused) == 15 and all("FAL_MCP_DAILY_BUDGET" in text and "$0.25" in text for text in refused)
    assert all("only $0.00" in text for text in refused)
