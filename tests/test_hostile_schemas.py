"""What real clients trip on: Gemini refuses integer enums, pydantic-ai's OpenAI conversion closes objects that
do not say additionalProperties, strict-mode clients send "" for every filter they leave out, resources/read of
something unknown must be "not found" (not an internal error), and NaN/Infinity must not be forwarded."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from server.errors import InvalidRequestError
from server.runtime import Runtime
from server.sandbox import Sandbox
from server.settings import Settings
from tests.helpers import (
    INITIALIZED,
    SEED_INPUT,
    SEED_MODEL,
    connect,
    initialize_request,
    jsonrpc_line,
    server_env,
    text_of,
)
from tools.catalog.validation import InputInvalidError, check_input
from tools.schema import numeric_enums_as_ranges
from tools.submit import submit

pytestmark = pytest.mark.anyio
SORA = "fal-ai/sora-2/text-to-video"


def _nodes(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            found.append(node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


# ---- integer enums ---------------------------------------------------------------------------------------------


async def test_no_published_schema_has_a_non_string_enum(settings: Settings) -> None:
    async with connect(settings) as client:
        listed = await client.list_tools()
    for tool in listed.tools:
        for node in _nodes([tool.input_schema, tool.output_schema]):
            enum = node.get("enum")
            assert enum is None or all(isinstance(value, str) for value in enum), (tool.name, node)
    submit_schema = next(tool for tool in listed.tools if tool.name == "submit_fal_job").input_schema
    sora = next(d for d in submit_schema["$defs"].values() if d.get("description") == SORA)
    duration = sora["properties"]["duration"]
    assert (duration["type"], duration["minimum"], duration["maximum"]) == ("integer", 4, 20)
    assert "4, 8, 12, 16, 20" in duration["description"]


def test_local_validation_keeps_the_exact_integer_choices() -> None:
    assert check_input(SORA, {"prompt": "a fox", "duration": 8}).body["duration"] == 8
    with pytest.raises(InputInvalidError, match="duration"):
        check_input(SORA, {"prompt": "a fox", "duration": 5})  # within the published range, not a choice


def test_numeric_enums_become_ranges_and_string_enums_stay() -> None:
    schema = {
        "properties": {
            "steps": {"type": "integer", "enum": [10, 2, 30], "description": "Steps."},
            "scale": {"type": "number", "enum": [0.5, 1.5]},
            "size": {"type": "string", "enum": ["a", "b"]},
            "flag": {"enum": [True, False]},
        }
    }
    out = numeric_enums_as_ranges(schema)["properties"]
    assert out["steps"] == {"type": "integer", "minimum": 2, "maximum": 30, "description": "Steps. One of 10, 2, 30."}
    assert out["scale"] == {"type": "number", "minimum": 0.5, "maximum": 1.5, "description": "One of 0.5, 1.5."}
    assert out["size"] == schema["properties"]["size"] and out["flag"] == schema["properties"]["flag"]


# ---- open objects ----------------------------------------------------------------------------------------------


async def test_submit_input_and_its_catch_all_say_additional_properties(settings: Settings) -> None:
    async with connect(settings) as client:
        listed = await client.list_tools()
    submit_schema = next(tool for tool in listed.tools if tool.name == "submit_fal_job").input_schema
    field = submit_schema["properties"]["input"]
    # {}: open, as `true` is, but a schema (google-genai's converter cannot read a boolean; test_client_frameworks)
    assert field["type"] == "object" and field["additionalProperties"] == {}
    catch_all = field["anyOf"][-1]
    assert "$ref" not in catch_all and catch_all["additionalProperties"] == {}


# ---- strict-mode clients send "" for what they leave out -------------------------------------------------------


async def test_list_fal_jobs_takes_empty_filters_as_absent(settings: Settings) -> None:
    async with connect(settings) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        listed = await client.call_tool("list_fal_jobs", {"status": "", "model": "", "since": "", "limit": 20})
        blank = await client.call_tool("list_fal_jobs", {"status": " "})  # not empty: a wrong status
        wrong = await client.call_tool("list_fal_jobs", {"status": "done"})
    assert not listed.is_error, text_of(listed)
    assert [job["request_id"] for job in listed.structured_content["jobs"]] == [
        submitted.structured_content["request_id"]
    ]
    assert blank.is_error and wrong.is_error and "status must be one of" in text_of(wrong)


# ---- resources/read of something unknown -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "fal://models/fal-ai/not-catalogued",
        "fal://models/..%2F..%2Fetc",
        "fal://jobs/764cabcf-91d2-4a5e-b2f4-0123456789ab",
        "fal://jobs/..",
    ],
)
async def test_reading_an_unknown_model_or_job_is_not_found(settings: Settings, uri: str) -> None:
    async with connect(settings) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(uri)
    assert caught.value.code == INVALID_PARAMS  # -32602, the SDK's "not found"; not -32603 (internal error)


# ---- NaN and Infinity ------------------------------------------------------------------------------------------

NON_FINITE = [
    (SEED_MODEL, {**SEED_INPUT, "cfg_scale": math.nan}, "input.cfg_scale"),
    (SEED_MODEL, {**SEED_INPUT, "extra": {"weights": [1.0, math.inf]}}, "input.extra.weights[1]"),
    ("fal-ai/not-catalogued/model", {"prompt": "x", "strength": -math.inf}, "input.strength"),
]


@pytest.mark.parametrize(("model", "body", "where"), NON_FINITE, ids=["nan", "nested-inf", "uncatalogued"])
async def test_non_finite_numbers_are_refused_not_forwarded(
    sandbox: Sandbox, settings: Settings, model: str, body: dict[str, Any], where: str
) -> None:
    rt = Runtime(settings)
    try:
        with pytest.raises(InvalidRequestError, match="not a JSON number") as caught:
            await submit(rt, model, body)
    finally:
        await rt.aclose()
    assert where in caught.value.message
    assert sandbox.seen("POST") == []


def test_nan_in_a_json_rpc_line_is_refused(sandbox: Sandbox) -> None:
    """Over stdio, as a client writing NaN into its JSON (Python's json does by default) would send it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(sandbox),
    )
    assert process.stdin is not None and process.stdout is not None
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "submit_fal_job", "arguments": {"model": "fal-ai/x/y", "input": {"seed": math.nan}}},
    }
    for message in (initialize_request("nan"), INITIALIZED, call):
        process.stdin.write(jsonrpc_line(message))
        process.stdin.flush()
    watchdog = threading.Timer(60, process.kill)  # only a hang reaches it (then the exit code below is wrong)
    watchdog.start()
    answer: dict[str, Any] = {}
    # stop at the answer: reading on would wait for a line the server never writes
    while answer.get("id") != 2 and (line := process.stdout.readline()):
        answer = json.loads(line)
    process.communicate()  # closes stdin: the server exits on end of input
    watchdog.cancel()
    assert b"NaN" in jsonrpc_line(call)  # the line really carried a NaN literal
    assert answer["result"]["isError"] is True and "not a JSON number" in answer["result"]["content"][0]["text"]
    assert process.returncode == 0
    assert sandbox.seen("POST") == []
