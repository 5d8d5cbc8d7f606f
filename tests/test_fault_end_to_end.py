"""A few cases of the fault matrix end to end, through MCP: the failure reaches the assistant as an `isError`
result holding the same plain sentence, the ledger says the same, and what must succeed succeeds.

The whole matrix runs against the core in `test_fault_matrix.py`; these are the cases that cover each tool and
each way a failure travels (a refusal, an unknown submit outcome, a wait, a transient fault retried past).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.sandbox import Sandbox, SandboxConfig
from server.sandbox.media import tiny_png
from tests.fault_matrix import CALL_DEADLINE, CASE_BY_ID, KEY, Case, Outcome, judge
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of
from tests.servers import refused_url

pytestmark = pytest.mark.anyio

END_TO_END = [
    "submit-http503-persistent",  # the outcome is unknown: recorded so, with a warning not to resubmit
    "submit-connection-refused-persistent",  # nothing was sent: rejected
    "status-html-200-persistent",
    "result-now-http503-transient2",  # retried past: a success
    "result-wait-stream-never-answers-persistent",  # a wait in which nothing answered is an error, not "running"
    "result-wait-stream-stream-drops-persistent",  # the stream drops: polling finishes the wait
    "cancel-reset-persistent",
    "upload-token-http401-persistent",
]


def _model_posts(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.seen("POST") if r.path == f"/{SEED_MODEL}")


def _arguments(case: Case, request_id: str, photo: Path) -> dict[str, Any]:
    if case.variant.tool == "submit_fal_job":
        return {"model": SEED_MODEL, "input": SEED_INPUT}
    if case.variant.tool == "upload_fal_file":
        return {"path": str(photo)}
    arguments: dict[str, Any] = {"request_id": request_id}
    if case.fault.refused:
        arguments["model"] = SEED_MODEL  # a job this server never reached: name its model
    if case.variant.waits:
        arguments["wait_seconds"] = case.wait_seconds()
    return arguments


@pytest.mark.parametrize("case_id", END_TO_END)
async def test_fault_through_mcp(case_id: str, tmp_path: Path) -> None:
    case = CASE_BY_ID[case_id]
    config = SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key=KEY)
    config.drop_streams_after = 1 if case.fault.drop_stream else None
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny_png())
    with Sandbox(config) as sandbox:
        overrides: dict[str, Any] = {
            **case.settings(),
            "max_wait_seconds": case.wait_seconds(),
            "file_roots": (tmp_path,),
            "storage_token_base": sandbox.base_url,
            "state_dir": tmp_path / "state",
        }
        if case.fault.refused:
            overrides.update(base_url=refused_url(), storage_token_base=refused_url())
        async with connect(make_settings(sandbox, **overrides)) as client:
            await client.list_tools()  # the checked client's schemas, fetched before any fault
            request_id = str(uuid.uuid4())
            if case.variant.needs_job and not case.fault.refused:
                submitted = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
                assert not submitted.is_error, text_of(submitted)
                request_id = submitted.structured_content["request_id"]
            for injected in case.fault.make(case.variant.route(SEED_MODEL, request_id), case.times):
                sandbox.inject(injected)
            posts_before = _model_posts(sandbox)
            started = time.monotonic()
            with anyio.fail_after(CALL_DEADLINE):
                answer = await client.call_tool(case.variant.tool, _arguments(case, request_id, photo))
            elapsed = time.monotonic() - started
            posts = _model_posts(sandbox) - posts_before
            sandbox.faults.clear()
            listed = await client.call_tool("list_fal_jobs", {})
    text = text_of(answer)
    ledger = [job["status"] for job in listed.structured_content["jobs"] if job.get("request_id") != request_id]
    outcome = Outcome(
        case,
        error=text if answer.is_error else None,
        shown=text + repr(answer.structured_content),
        elapsed=elapsed,
        submit_posts=posts,
        ledger=ledger if case.variant.name == "submit" else [],
    )
    problems = judge(outcome, sandbox.seen())
    assert not problems, f"{'; '.join(problems)} ({elapsed:.1f} s) -- {text[:400]!r}"
    assert answer.is_error == (not case.must_succeed)
    if answer.is_error:
        assert answer.structured_content is None  # an error is the sentence alone
