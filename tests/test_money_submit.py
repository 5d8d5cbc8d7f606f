"""Money on the submit path, through the MCP tools: the estimate before paying (hand-computed), a dry run, the caps
and the assistant's ceiling (nothing sent when refused), and asking the person above FAL_MCP_CONFIRM_ABOVE on both
protocol versions: accepted, declined, cancelled, and a client that cannot be asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from server.app import create_server
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings

pytestmark = pytest.mark.anyio
PER_SECOND = 0.05  # SEED_MODEL's price in the table below; its input asks for 5 s: $0.25
ESTIMATE = 0.25


def _money(sandbox: Sandbox, tmp_path: Path, **overrides: Any) -> Settings:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({SEED_MODEL: {"unit": "second", "unit_price": PER_SECOND, "currency": "USD"}}))
    return make_settings(sandbox, prices_file=prices, **overrides)


def _unpriced(sandbox: Sandbox, **overrides: Any) -> Settings:
    """Through UniAPI with no fal key: no price table, and fal's pricing API (the sandbox prices its models) unasked."""
    return make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None, **overrides)


async def _submit(client: Any, **arguments: Any) -> Any:
    return await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT, **arguments})


def _text(result: Any) -> str:
    return str(result.content[0].text)


async def test_a_submit_carries_its_estimate(sandbox: Sandbox, tmp_path: Path) -> None:
    async with connect(_money(sandbox, tmp_path)) as client:
        answer = await _submit(client, input=dict(SEED_INPUT, duration="10"))
    estimate = answer.structured_content["cost_estimate"]
    assert estimate["usd"] == pytest.approx(0.50) and estimate["quantity"] == 10.0
    assert (estimate["unit"], estimate["unit_price"]) == ("second", PER_SECOND)
    assert estimate["source"] == "price table (FAL_MCP_PRICES)" and estimate["as_of"]
    assert len(sandbox.seen("POST")) == 1


async def test_without_a_price_the_answer_says_so_plainly(sandbox: Sandbox) -> None:
    async with connect(_unpriced(sandbox)) as client:
        answer = await _submit(client)
    assert "cost_estimate" not in answer.structured_content
    assert any(note.startswith("No cost estimate: no price is known") for note in answer.structured_content["notes"])


async def test_a_dry_run_prices_and_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    async with connect(_money(sandbox, tmp_path)) as client:
        answer = await _submit(client, dry_run=True)
        jobs = await client.call_tool("list_fal_jobs", {})
    assert answer.structured_content["cost_estimate"]["usd"] == pytest.approx(ESTIMATE)
    assert "request_id" not in answer.structured_content and "Dry run" in answer.structured_content["next"]
    assert not sandbox.seen("POST")
    assert jobs.structured_content["jobs"] == []


@pytest.mark.parametrize(
    ("overrides", "arguments", "says"),
    [
        ({"max_job_cost": 0.20}, {}, "FAL_MCP_MAX_JOB_COST"),
        ({"daily_budget": 0.20}, {}, "FAL_MCP_DAILY_BUDGET"),
        ({}, {"max_cost_usd": 0.10}, "max_cost_usd"),
        ({"max_job_cost": 0.20}, {"dry_run": True}, "FAL_MCP_MAX_JOB_COST"),  # a dry run tells the same
    ],
)
async def test_a_cap_refuses_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, overrides: dict[str, Any], arguments: dict[str, Any], says: str
) -> None:
    async with connect(_money(sandbox, tmp_path, **overrides)) as client:
        answer = await _submit(client, **arguments)
        jobs = await client.call_tool("list_fal_jobs", {})
    assert answer.is_error and says in _text(answer) and "$0.25" in _text(answer)
    assert not sandbox.seen("POST")
    assert jobs.structured_content["jobs"] == []


async def test_no_argument_raises_a_cap(sandbox: Sandbox, tmp_path: Path) -> None:
    async with connect(_money(sandbox, tmp_path, max_job_cost=0.20)) as client:
        answer = await _submit(client, max_cost_usd=100.0)
    assert answer.is_error and "FAL_MCP_MAX_JOB_COST" in _text(answer)
    assert not sandbox.seen("POST")


async def test_an_unpriced_model_under_a_cap_is_refused_unless_allowed(sandbox: Sandbox) -> None:
    async with connect(_unpriced(sandbox, daily_budget=5.0)) as client:
        refused = await _submit(client)
    assert refused.is_error and "FAL_MCP_ALLOW_UNPRICED" in _text(refused)
    assert not sandbox.seen("POST")
    async with connect(_unpriced(sandbox, daily_budget=5.0, allow_unpriced=True)) as client:
        allowed = await _submit(client)
    assert not allowed.is_error and len(sandbox.seen("POST")) == 1


async def test_the_daily_budget_counts_what_was_spent(sandbox: Sandbox, tmp_path: Path) -> None:
    async with connect(_money(sandbox, tmp_path, daily_budget=0.60)) as client:
        first, second, third = [await _submit(client) for _ in range(3)]
    assert not first.is_error and not second.is_error
    assert third.is_error and "only $0.10 of FAL_MCP_DAILY_BUDGET" in _text(third)
    assert len(sandbox.seen("POST")) == 2


# ---- asking the person ------------------------------------------------------------------------------------------

VERSIONS = ["legacy", "2026-07-28"]  # 2025-11-25 (elicitation/create mid-call) and the input-required round trip


def _answering(action: str, confirm: bool = True) -> Any:
    asked: list[str] = []

    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=action, content={"confirm": confirm} if action == "accept" else None)

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


@pytest.mark.parametrize("mode", VERSIONS)
@pytest.mark.parametrize(
    ("action", "confirm", "submitted"),
    [("accept", True, True), ("accept", False, False), ("decline", True, False), ("cancel", True, False)],
)
async def test_above_the_threshold_the_person_is_asked(
    sandbox: Sandbox, tmp_path: Path, mode: str, action: str, confirm: bool, submitted: bool
) -> None:
    callback = _answering(action, confirm)
    server = create_server(_money(sandbox, tmp_path, confirm_above=0.10))
    async with Client(server, mode=mode, elicitation_callback=callback) as client:
        answer = await _submit(client)
    assert callback.asked == [callback.asked[0]] and callback.asked[0].startswith(f"Spend about $0.25 on {SEED_MODEL}?")
    assert bool(sandbox.seen("POST")) is submitted
    if submitted:
        assert answer.structured_content["cost_estimate"]["usd"] == pytest.approx(ESTIMATE)
    else:
        assert answer.is_error and "did not agree to spend about $0.25" in _text(answer)


@pytest.mark.parametrize("mode", VERSIONS)
async def test_a_client_that_cannot_be_asked_is_told_how_to_resubmit(
    sandbox: Sandbox, tmp_path: Path, mode: str
) -> None:
    server = create_server(_money(sandbox, tmp_path, confirm_above=0.10))
    async with Client(server, mode=mode) as client:
        refused = await _submit(client)
        assert refused.is_error and "max_cost_usd=0.25" in _text(refused) and "Ask the user" in _text(refused)
        assert not sandbox.seen("POST")
        agreed = await _submit(client, max_cost_usd=0.25)  # the person said yes to the assistant
    assert not agreed.is_error and len(sandbox.seen("POST")) == 1


async def test_below_the_threshold_nobody_is_asked(sandbox: Sandbox, tmp_path: Path) -> None:
    callback = _answering("decline")
    server = create_server(_money(sandbox, tmp_path, confirm_above=1.0))
    async with Client(server, mode="2026-07-28", elicitation_callback=callback) as client:
        answer = await _submit(client)
    assert not answer.is_error and callback.asked == []
