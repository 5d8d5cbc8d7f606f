"""MCP tasks (2026-07-28, `io.modelcontextprotocol/tasks`) as a raw client sees them, over a stdio subprocess and
over stateless HTTP: a submit from a client declaring the extension becomes a task, followed to its result by the
server's own watcher; failures, cancelling, bad task ids; every other client and protocol version gets today's
answers; `notifications/tasks` on a listen stream; a submit that asks the person before anything is paid."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server.app import create_server
from server.http_transport import http_app
from server.sandbox import FAIL_MARKER, Sandbox, SandboxConfig
from tests.helpers import INITIALIZED, SEED_INPUT, SEED_MODEL, jsonrpc_line, make_settings, server_env
from tests.raw_mcp import TASKS, RawHttp, RawStdio, envelope
from tests.servers import serving_in_thread
from tests.stdio_session import StdioSession
from tools.catalog.sandbox_rules import CatalogRules

WHERE = ["stdio", "http-stateless"]
FAST_WATCH = {"watch_jobs": True, "watch_first_interval": 0.2, "watch_max_interval": 0.5}
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
MISSING_CAPABILITY = -32021
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def raw(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[Any]:
    """A raw 2026-07-28 client of a server whose watcher follows jobs quickly (`request.param`: where)."""
    yield from _raw(request.param, sandbox)


def _raw(where: str, sandbox: Sandbox) -> Iterator[Any]:
    if where == "stdio":
        env = server_env(
            sandbox,
            FAL_MCP_WATCH_FIRST_INTERVAL=str(FAST_WATCH["watch_first_interval"]),
            FAL_MCP_WATCH_MAX_INTERVAL=str(FAST_WATCH["watch_max_interval"]),
        )
        client: Any = RawStdio(env)
        try:
            yield client
        finally:
            client.close()
        return
    yield from _raw_http(sandbox)


def _raw_http(sandbox: Sandbox, **settings: Any) -> Iterator[Any]:
    """A raw client over stateless HTTP to a server in this process (`settings`: more of them)."""
    server = create_server(make_settings(sandbox, **FAST_WATCH, **settings), legacy_subscriptions=False)
    with serving_in_thread(http_app(server, host="127.0.0.1", token=None, stateless=True)) as port:
        client = RawHttp(f"http://127.0.0.1:{port}/mcp")
        try:
            yield client
        finally:
            client.close()


def submit(raw: Any, *, declare: bool = True, **input: Any) -> dict[str, Any]:
    answer = raw.request(
        "tools/call",
        {"name": "submit_fal_job", "arguments": {"model": SEED_MODEL, "input": SEED_INPUT | input}},
        declare=declare,
    )
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


def get(raw: Any, task_id: str) -> dict[str, Any]:
    answer = raw.request("tasks/get", {"taskId": task_id})
    assert "result" in answer, answer
    task: dict[str, Any] = answer["result"]
    return task


def poll(raw: Any, task_id: str, until: Callable[[dict[str, Any]], bool], seconds: float = 30) -> list[dict[str, Any]]:
    """Every tasks/get answer until `until` holds, polling at the pollIntervalMs the server advises."""
    seen = [get(raw, task_id)]
    deadline = time.monotonic() + seconds
    while not until(seen[-1]):
        assert time.monotonic() < deadline, f"the task never got there: {seen[-1]}"
        time.sleep(seen[-1].get("pollIntervalMs", 200) / 1000)
        seen.append(get(raw, task_id))
    return seen


def request_id_of(task_id: str) -> str:
    assert task_id.startswith("job.")
    return task_id[len("job.") :]


# ---- a generation as a task ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", WHERE, indirect=True)
def test_a_submit_becomes_a_task_that_completes_with_get_fal_results_answer(raw: Any, sandbox: Sandbox) -> None:
    created = submit(raw)
    assert created["resultType"] == "task" and created["status"] == "working", created
    assert created["ttlMs"] is None and created["pollIntervalMs"] > 0 and created["statusMessage"]
    assert created["createdAt"].endswith("Z") and created["lastUpdatedAt"] >= created["createdAt"]
    request_id = request_id_of(created["taskId"])
    assert [r for r in sandbox.seen("POST") if "/requests" not in r.path]  # submitted upstream, once
    seen = poll(raw, created["taskId"], lambda task: task["status"] != "working")
    assert {task["resultType"] for task in seen} == {"complete"}
    done = seen[-1]
    assert done["status"] == "completed" and "pollIntervalMs" not in done
    # The result is get_fal_result's answer, whole: it is all the model sees (a host may not show statusMessage).
    plain = raw.request(
        "tools/call", {"name": "get_fal_result", "arguments": {"request_id": request_id}}, declare=False
    )
    expected = {key: value for key, value in plain["result"].items() if key != "_meta"}
    assert done["result"] == expected
    assert done["result"]["structuredContent"]["done"] is True
    assert any(block["type"] == "resource_link" for block in done["result"]["content"])
    assert len(sandbox.seen("POST")) == 1


@pytest.mark.parametrize("raw", WHERE, indirect=True)
def test_a_failed_generation_is_a_completed_task_whose_result_is_an_error(raw: Any) -> None:
    created = submit(raw, prompt=f"a cat {FAIL_MARKER}")
    done = poll(raw, created["taskId"], lambda task: task["status"] != "working")[-1]
    assert done["status"] == "completed"  # failed is for protocol-level failures only
    assert done["result"]["isError"] is True
    assert "failed" in done["result"]["content"][0]["text"]


@pytest.mark.parametrize("raw", WHERE, indirect=True)
def test_cancelling_a_task_cancels_the_job_upstream_and_it_stays_cancelled(raw: Any, sandbox: Sandbox) -> None:
    sandbox.config.run_seconds = 60.0
    task_id = submit(raw)["taskId"]
    acked = raw.request("tasks/cancel", {"taskId": task_id})
    assert acked["result"]["resultType"] == "complete", acked
    assert [r for r in sandbox.seen("PUT") if r.path.endswith("/cancel")]
    assert get(raw, task_id)["status"] == "cancelled"
    time.sleep(3 * FAST_WATCH["watch_max_interval"])  # watcher rounds pass: the upstream's own report changes nothing
    again = raw.request("tasks/cancel", {"taskId": task_id})
    assert "result" in again and get(raw, task_id)["status"] == "cancelled"
    assert "result" not in get(raw, task_id)


@pytest.mark.parametrize("where", WHERE)
def test_a_route_that_cannot_cancel_says_so_and_the_task_keeps_running(where: str) -> None:
    config = SandboxConfig(queue_seconds=0.2, run_seconds=60.0, key="test-key-0123456789", flavor="uniapi")
    with Sandbox(config, CatalogRules()) as uniapi:
        for raw in _raw(where, uniapi):
            task_id = submit(raw)["taskId"]
            refused = raw.request("tasks/cancel", {"taskId": task_id})
            assert "does not support cancelling" in refused["error"]["message"], refused
            assert "keeps running" in refused["error"]["message"]
            assert get(raw, task_id)["status"] == "working"


@pytest.mark.parametrize("raw", WHERE, indirect=True)
def test_an_unknown_or_malformed_task_id_is_an_error_that_says_what_to_do(raw: Any) -> None:
    unknown = ["job.00000000-0000-4000-8000-000000000000", "input.AAAAAAAAAAAAAAAAAAAAAAAA"]
    for task_id in [*unknown, "../../etc", "job.a/b", 7, None]:
        for method in ("tasks/get", "tasks/update", "tasks/cancel"):
            params: dict[str, Any] = {"taskId": task_id}
            if method == "tasks/update":
                params["inputResponses"] = {}
            answer = raw.request(method, params)
            assert answer["error"]["code"] == INVALID_PARAMS, (method, task_id, answer)
            said = answer["error"]["message"]
            assert ("is known here" if task_id in unknown else "is not a task of this server") in said, said


# ---- everything else unchanged ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", WHERE, indirect=True)
def test_a_client_that_does_not_declare_the_extension_gets_the_plain_answer(raw: Any) -> None:
    plain = submit(raw, declare=False)
    assert plain.get("resultType") != "task" and "taskId" not in plain
    assert plain["structuredContent"]["request_id"] and plain["structuredContent"]["status"] == "IN_QUEUE"
    # Nor are the task methods served to it, nor a task stream: -32021, the extension named (SEP-2575).
    task_id = f"job.{plain['structuredContent']['request_id']}"
    for method in ("tasks/get", "tasks/cancel"):
        refused = raw.request(method, {"taskId": task_id}, declare=False)
        assert refused["error"]["code"] == MISSING_CAPABILITY, refused
    answer = raw.request("subscriptions/listen", {"notifications": {"taskIds": [task_id]}}, declare=False)
    assert answer["error"]["code"] == MISSING_CAPABILITY
    assert answer["error"]["data"]["requiredCapabilities"]["extensions"] == {TASKS: {}}


def test_a_2025_11_25_session_never_sees_a_task(sandbox: Sandbox) -> None:
    env = server_env(sandbox, FAL_MCP_WATCH_FIRST_INTERVAL="0.2")
    session = StdioSession(env)
    try:
        hello = session.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                # Declaring the extension means nothing at 2025-11-25 (SEP-2663).
                "capabilities": {"extensions": {TASKS: {}}},
                "clientInfo": {"name": "legacy", "version": "0"},
            },
        )
        session.write(jsonrpc_line(INITIALIZED))
        answer = session.call("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = answer["result"]["structuredContent"]["request_id"]
        lookup = session.request("tasks/get", {"taskId": f"job.{request_id}"})
    finally:
        session.finish()
    assert hello["result"]["protocolVersion"] == "2025-11-25"
    assert "resultType" not in answer["result"] and "taskId" not in answer["result"]
    assert lookup["error"]["code"] == METHOD_NOT_FOUND


# ---- notifications/tasks -----------------------------------------------------------------------------------------


def test_a_listen_stream_carries_the_task_until_it_completes(sandbox: Sandbox) -> None:
    env = server_env(sandbox, FAL_MCP_WATCH_FIRST_INTERVAL="0.2", FAL_MCP_WATCH_MAX_INTERVAL="0.5")
    raw = RawStdio(env)
    try:
        task_id = submit(raw)["taskId"]
        listen = {
            "jsonrpc": "2.0",
            "id": "listen-1",
            "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id]}, "_meta": envelope(declare=True)},
        }
        raw.session.write(jsonrpc_line(listen))
        deadline = time.monotonic() + 30
        while not any(n["params"]["status"] == "completed" for n in _task_notes(raw.session)):
            assert time.monotonic() < deadline, raw.session.stderr()[-2000:]
            time.sleep(0.1)
        final = get(raw, task_id)
        notes = _task_notes(raw.session)
        acks = [m for m in _messages(raw.session) if m.get("method") == "notifications/subscriptions/acknowledged"]
    finally:
        raw.close()
    assert acks and acks[0]["params"]["notifications"]["taskIds"] == [task_id]
    assert notes[0]["params"]["status"] == "working"  # where it stood when the stream opened
    assert all(n["params"]["taskId"] == task_id and "ttlMs" in n["params"] for n in notes)
    assert all(n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1" for n in notes)
    completed = next(n["params"] for n in notes if n["params"]["status"] == "completed")
    assert completed["result"] == final["result"]  # as tasks/get answers it


def _messages(session: StdioSession) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(session.lines)]


def _task_notes(session: StdioSession) -> list[dict[str, Any]]:
    return [m for m in _messages(session) if m.get("method") == "notifications/tasks"]


# ---- input during a task ---------------------------------------------------------------------------------------

PRICE_PER_SECOND = 0.05  # the price table below: SEED_MODEL's 5 s clip costs about $0.25


@pytest.fixture
def confirming(sandbox: Sandbox, tmp_path: Any) -> Iterator[Any]:
    """A raw 2026-07-28 client of a server that asks the person before any job over $0.10 (the money issue's
    FAL_MCP_CONFIRM_ABOVE), its price from a FAL_MCP_PRICES table."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({SEED_MODEL: {"unit": "second", "unit_price": PRICE_PER_SECOND}}))
    yield from _raw_http(sandbox, prices_file=prices, confirm_above=0.10)


def test_a_submit_that_needs_an_answer_waits_in_input_required_until_tasks_update(
    confirming: Any, sandbox: Sandbox
) -> None:
    raw = confirming
    created = submit(raw)
    task_id = created["taskId"]
    assert created["resultType"] == "task" and created["status"] == "input_required", created
    assert not sandbox.seen("POST")  # nothing is submitted (nor paid) before the answer
    waiting = get(raw, task_id)
    assert waiting["status"] == "input_required" and list(waiting["inputRequests"]) == ["confirm_cost"]
    question = waiting["inputRequests"]["confirm_cost"]
    assert question["method"] == "elicitation/create"
    assert question["params"]["message"].startswith(f"Spend about $0.25 on {SEED_MODEL}?")
    ignored = raw.request("tasks/update", {"taskId": task_id, "inputResponses": {"never_asked": {"action": "accept"}}})
    assert "result" in ignored and get(raw, task_id)["status"] == "input_required"
    acked = raw.request(
        "tasks/update", {"taskId": task_id, "inputResponses": {"confirm_cost": {"action": "accept", "content": {}}}}
    )
    assert acked["result"]["resultType"] == "complete"
    done = poll(raw, task_id, lambda task: task["status"] in TERMINAL)[-1]
    assert done["taskId"] == task_id and done["status"] == "completed"
    assert done["result"]["structuredContent"]["done"] is True
    assert len(sandbox.seen("POST")) == 1


def test_a_declined_answer_completes_the_task_with_the_submits_refusal(confirming: Any, sandbox: Sandbox) -> None:
    raw = confirming
    task_id = submit(raw)["taskId"]
    raw.request("tasks/update", {"taskId": task_id, "inputResponses": {"confirm_cost": {"action": "decline"}}})
    done = poll(raw, task_id, lambda task: task["status"] in TERMINAL)[-1]
    assert done["status"] == "completed" and done["result"]["isError"] is True
    assert "did not agree to spend about $0.25" in done["result"]["content"][0]["text"]
    assert not sandbox.seen("POST")


def test_cancelling_a_task_waiting_for_an_answer_submits_nothing(confirming: Any, sandbox: Sandbox) -> None:
    raw = confirming
    task_id = submit(raw)["taskId"]
    assert "result" in raw.request("tasks/cancel", {"taskId": task_id})
    done = poll(raw, task_id, lambda task: task["status"] in TERMINAL)[-1]
    assert done["status"] == "cancelled"
    assert not sandbox.seen("POST")
