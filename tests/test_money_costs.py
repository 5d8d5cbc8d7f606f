"""What a job cost, after it finished: fal's billable units read from the result fetch, the bill kept in the ledger
(or the estimate, marked as one), and shown in get_fal_result, list_fal_jobs, fal://jobs/{id} and fal://spend;
describe_fal_model's price. All against the sandbox, which prices its models itself (server/sandbox/billing.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from server.jobs.watcher import Watcher
from server.money.balance import uniapi_balance
from server.runtime import Runtime, open_runtime
from server.sandbox import Fault, Sandbox
from server.sandbox.billing import SANDBOX_STARTING_BALANCE, SANDBOX_UNIT_PRICES
from server.settings import Settings
from server.upstream.reports import billable_units
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings
from tests.postgres import Backend
from tools.catalog.sandbox_rules import CatalogRules
from tools.submit import submit

pytestmark = pytest.mark.anyio
FLUX = "fal-ai/flux/dev"
SECOND = SANDBOX_UNIT_PRICES["second"]
# The seed job is 5 s; the sandbox bills 5.008 s of it, as fal bills a little over a clip's nominal length.
ESTIMATE = round(5 * SECOND, 6)
BILL = round(5.008 * SECOND, 6)


# ---- the header -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "units"), [("5", 5.0), ("3.008", 3.008), (" 0.5 ", 0.5), ("0", 0.0)])
def test_billable_units_are_read_fractional(text: str, units: float) -> None:
    assert billable_units(text) == units


@pytest.mark.parametrize(
    "junk", [None, "", "abc", "-1", "nan", "inf", "1e3", "1_000", "5,2", "٣", "0x10", "1" * 40, "3.", ".5", "5 s"]
)
def test_billable_units_that_are_not_a_count_are_none(junk: str | None) -> None:
    assert billable_units(junk) is None


# ---- helpers ----------------------------------------------------------------------------------------------------


@asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        yield rt


async def charged_job(rt: Runtime, model: str = SEED_MODEL, body: dict[str, Any] | None = None) -> str:
    """A job submitted through the submit path: quoted, its estimate held on its row, then sent."""
    answer = await submit(rt, model, dict(SEED_INPUT if body is None else body))
    assert answer.request_id is not None and answer.cost_estimate is not None, answer.notes
    return answer.request_id


async def submitted(client: Any) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
    assert not answer.is_error and answer.structured_content["cost_estimate"]["usd"] == ESTIMATE, answer.content
    return str(answer.structured_content["request_id"])


def uniapi_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    """Through UniAPI (its balance route), with a fal key for fal's prices: the sandbox's own set-up."""
    return make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, **overrides)


async def read_json(client: Any, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents
    return json.loads(contents[0].text)


# ---- the adapter ------------------------------------------------------------------------------------------------


async def test_the_result_fetch_reads_the_billable_units(sandbox: Sandbox, settings: Settings) -> None:
    async with runtime(settings) as rt:
        video = await rt.upstream.submit(SEED_MODEL, SEED_INPUT)
        image = await rt.upstream.submit(FLUX, {"prompt": "a lighthouse", "image_size": "landscape_16_9"})
        for job in (video, image):
            sandbox.finish_now(job.request_id)
        assert (await rt.upstream.result(SEED_MODEL, video.request_id)).billable_units == 5.008
        # one 1024x576 image: fal rounds each image up to a whole megapixel
        assert (await rt.upstream.result(FLUX, image.request_id)).billable_units == 1.0
        for said, read in (("3.008", 3.008), ("lots", None), ("-2", None), ("", None)):
            output = json.dumps({"video": {"url": f"{sandbox.base_url}/files/x/output.mp4"}}).encode()
            headers = {"x-fal-billable-units": said}
            sandbox.inject(Fault(f"GET /fal-ai/kling-video/requests/{video.request_id}", 200, output, headers))
            report = await rt.upstream.result(SEED_MODEL, video.request_id)
            assert report.output is not None and report.billable_units == read, said


async def test_the_uniapi_flavor_tells_no_billable_units(sandbox: Sandbox) -> None:
    sandbox.config.flavor = "uniapi"
    async with runtime(uniapi_settings(sandbox)) as rt:
        job = await rt.upstream.submit(SEED_MODEL, SEED_INPUT)
        sandbox.finish_now(job.request_id)
        report = await rt.upstream.result(SEED_MODEL, job.request_id)
    assert report.output is not None and report.billable_units is None


# ---- keeping the bill -------------------------------------------------------------------------------------------


async def test_a_finished_job_is_billed_from_the_header_on_both_backends(sandbox: Sandbox, backend: Backend) -> None:
    async with runtime(make_settings(sandbox, **backend.settings())) as rt:
        request_id = await charged_job(rt)
        held = await rt.jobs.get(request_id)
        assert held is not None and (held.cost_usd, held.cost_kind) == (ESTIMATE, "reserved")
        sandbox.finish_now(request_id)
        report = await rt.upstream.result(SEED_MODEL, request_id)
        assert report.output is not None
        billed = await rt.jobs.keep_output(request_id, report.output, report.billable_units)
        row = await rt.jobs.get(request_id)
        spent = await rt.money.summary(ask_balance=False)
    assert billed == BILL
    assert row is not None and (row.cost_usd, row.cost_kind, row.state) == (BILL, "billed", "completed")
    assert row.estimate is not None and row.estimate["usd"] == ESTIMATE  # the estimate is kept beside the bill
    assert spent.today_usd == BILL and spent.by_model == {SEED_MODEL: BILL}


async def test_without_the_header_the_estimate_stands_marked(sandbox: Sandbox, settings: Settings) -> None:
    async with runtime(settings) as rt:
        request_id = await charged_job(rt)
        sandbox.finish_now(request_id)
        report = await rt.upstream.result(SEED_MODEL, request_id)
        assert report.output is not None
        assert await rt.jobs.keep_output(request_id, report.output, None) is None
        row = await rt.jobs.get(request_id)
    assert row is not None and (row.cost_usd, row.cost_kind) == (ESTIMATE, "estimated")


async def test_units_without_an_estimate_bill_nothing(sandbox: Sandbox, settings: Settings) -> None:
    """A job submitted with no price known has no unit price to bill its units at: no cost is made up."""
    async with runtime(settings) as rt:
        job = await rt.upstream.submit(SEED_MODEL, SEED_INPUT)
        row_id = await rt.jobs.db(rt.jobs.ledger.begin_submit, SEED_MODEL, SEED_INPUT)
        await rt.jobs.db(rt.jobs.ledger.mark_submitted, row_id, job.request_id, None)
        assert await rt.jobs.keep_output(job.request_id, {"video": {"url": "https://x/y.mp4"}}, 5.008) is None
        row = await rt.jobs.get(job.request_id)
    assert row is not None and row.state == "completed" and (row.cost_usd, row.cost_kind) == (None, None)


async def test_the_watcher_keeps_the_bill(sandbox: Sandbox, settings: Settings) -> None:
    async with runtime(settings) as rt:
        request_id = await charged_job(rt)
        sandbox.finish_now(request_id)
        row = await rt.jobs.get(request_id)
        assert row is not None
        assert await Watcher(rt.jobs, lambda: rt.upstream, rt.settings).check(row) is True
        kept = await rt.jobs.get(request_id)
    assert kept is not None and (kept.cost_usd, kept.cost_kind) == (BILL, "billed")


# ---- what the assistant sees ------------------------------------------------------------------------------------


async def test_a_billed_job_shows_its_cost_everywhere(sandbox: Sandbox) -> None:
    settings = uniapi_settings(sandbox)
    async with connect(settings) as client:
        request_id = await submitted(client)
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
        assert listed["jobs"][0]["cost"] == {"usd": ESTIMATE, "kind": "estimated"}  # held while it runs
        assert re.fullmatch(
            rf"Spent \${ESTIMATE:.2f} today \(\d{{4}}-\d\d-\d\d\), \${ESTIMATE:.2f} this month\.", listed["spend"]
        )
        result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 10})
        assert not result.is_error and result.structured_content["done"] is True
        assert result.structured_content["cost"] == {"usd": BILL, "kind": "billed"}
        again = (await client.call_tool("get_fal_result", {"request_id": request_id})).structured_content
        assert again["cost"] == {"usd": BILL, "kind": "billed"}  # served from the ledger
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
        assert listed["jobs"][0]["cost"] == {"usd": BILL, "kind": "billed"}
        assert (await read_json(client, f"fal://jobs/{request_id}"))["cost"] == {"usd": BILL, "kind": "billed"}
        spend = await read_json(client, "fal://spend")
    assert (spend["today_usd"], spend["month_usd"], spend["by_model"]) == (BILL, BILL, {SEED_MODEL: BILL})
    # the balance as UniAPI's usage route told it at submit (kept a minute: a balance only ever informs)
    assert spend["balance"] == {"usd": SANDBOX_STARTING_BALANCE, "used_usd": 0.0, "source": "UniAPI /v1/billing/usage"}
    assert f"account balance ${SANDBOX_STARTING_BALANCE:.2f}" in spend["summary"]
    assert "daily_budget" not in spend  # none set
    assert [r.path for r in sandbox.seen("GET") if "billing" in r.path] == ["/v1/billing/usage"]
    async with httpx.AsyncClient() as http:  # the sandbox's own books: the job was billed off its balance
        after = await uniapi_balance(http, sandbox.base_url, sandbox.config.key, seconds=5)
    assert (after.usd, after.used_usd) == (round(SANDBOX_STARTING_BALANCE - BILL, 6), BILL)


async def test_an_unbilled_job_shows_its_estimate_marked(sandbox: Sandbox) -> None:
    sandbox.config.flavor = "uniapi"  # no billable units told
    settings = uniapi_settings(sandbox, daily_budget=2.0)
    async with connect(settings) as client:
        request_id = await submitted(client)
        result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 10})
        assert result.structured_content["cost"] == {"usd": ESTIMATE, "kind": "estimated"}
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
        spend = await read_json(client, "fal://spend")
    assert listed["jobs"][0]["cost"] == {"usd": ESTIMATE, "kind": "estimated"}
    assert f"${2.0 - ESTIMATE:.2f} of the $2.00 daily budget left" in listed["spend"]
    assert (spend["daily_budget"], spend["left_today"]) == (2.0, round(2.0 - ESTIMATE, 6))


async def test_a_failed_job_gives_its_hold_back(sandbox: Sandbox, settings: Settings) -> None:
    sandbox.fail_next.append("content policy violation")
    async with connect(settings) as client:
        request_id = await submitted(client)
        failed = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 10})
        assert failed.is_error
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
    assert listed["jobs"][0]["cost"] == {"usd": 0.0, "kind": "released"}
    assert "spend" not in listed  # nothing spent, no budget: no line


async def test_a_job_with_no_price_shows_no_cost(sandbox: Sandbox, settings: Settings) -> None:
    async with connect(settings) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": "fal-ai/not-priced", "input": {"prompt": "x"}})
        request_id = submitted.structured_content["request_id"]
        result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 10})
        listed = (await client.call_tool("list_fal_jobs", {})).structured_content
    assert result.structured_content["done"] is True and "cost" not in result.structured_content
    assert "cost" not in listed["jobs"][0] and "spend" not in listed


# ---- describe_fal_model's price ---------------------------------------------------------------------------------


async def test_describe_shows_the_price_and_the_cache_survives_a_restart(sandbox: Sandbox) -> None:
    settings = make_settings(sandbox)

    def pricing_calls() -> int:
        return sum(1 for r in sandbox.seen("GET") if r.path == "/v1/models/pricing")

    async with connect(settings) as client:
        described = (await client.call_tool("describe_fal_model", {"model": SEED_MODEL})).structured_content
        assert described["price"].startswith(f"{SECOND:g} USD per second (fal pricing API, as of ")
        await client.call_tool("describe_fal_model", {"model": SEED_MODEL})
    assert pricing_calls() == 1
    async with connect(settings) as client:  # a restart: the price comes from the ledger
        again = (await client.call_tool("describe_fal_model", {"model": SEED_MODEL})).structured_content
    assert again["price"] == described["price"] and pricing_calls() == 1
    async with connect(make_settings(sandbox, state_dir=settings.state_dir, price_cache_seconds=0)) as client:
        await client.call_tool("describe_fal_model", {"model": SEED_MODEL})  # too old now: asked again
    assert pricing_calls() == 2


async def test_describe_says_why_no_price_is_known(sandbox: Sandbox) -> None:
    no_fal_key = make_settings(sandbox, provider="uniapi", uniapi_key=sandbox.config.key, fal_key=None)
    async with connect(no_fal_key) as client:
        described = (await client.call_tool("describe_fal_model", {"model": SEED_MODEL})).structured_content
    assert described["price"] == (
        "no price is known for this model: none in FAL_MCP_PRICES, and fal's pricing API needs a fal key"
    )


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault("/v1/models/pricing", status=500), "HTTP 500"),
        (Fault("/v1/models/pricing", status=200, body=b"\x00<html>garbage"), "not JSON"),
        (Fault("/v1/models/pricing", status=200, body=b'{"prices": "none"}'), "no list of prices"),
        (Fault("/v1/models/pricing", status=200, body=b"{}", delay=30), "ReadTimeout"),
        (Fault("/v1/models/pricing", mode="reset"), "could not be reached"),
    ],
)
async def test_a_failing_pricing_api_never_blocks_a_description_or_a_result(
    sandbox: Sandbox, fault: Fault, says: str
) -> None:
    sandbox.inject(fault)
    settings = make_settings(sandbox, pricing_timeout=0.5)
    async with connect(settings) as client:
        described = await client.call_tool("describe_fal_model", {"model": SEED_MODEL})
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        result = await client.call_tool(
            "get_fal_result", {"request_id": submitted.structured_content["request_id"], "wait_seconds": 10}
        )
    assert not described.is_error and described.structured_content["input_schema"]
    assert described.structured_content["price"].startswith("no price is known for this model: ")
    assert says in described.structured_content["price"], described.structured_content["price"]
    assert not result.is_error and result.structured_content["done"] is True


# ---- the sandbox's prices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "unit"),
    [
        (SEED_MODEL, "second"),  # a video model with a duration
        ("fal-ai/veo3", "second"),
        ("fal-ai/minimax/video-01", "video"),  # a video model without one
        (FLUX, "megapixel"),  # an image model with an image size
        ("fal-ai/flux-pro/v1.1-ultra", "image"),  # an image model without one
        ("fal-ai/not-catalogued", None),
    ],
)
def test_the_sandbox_prices_each_model_in_its_unit(model: str, unit: str | None) -> None:
    assert CatalogRules().price_unit(model) == unit
