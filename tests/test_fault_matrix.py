"""Every upstream fault against every upstream-touching tool: each call ends in time, answers truthfully, and
never submits twice.

The matrix (counted again, from the constants below, by `test_matrix_summary`):

- 20 faults (500/502/503/504 each with and without Retry-After, 429 with `Retry-After: 1` and without, a
  connection reset, an answer that never comes, a slow (trickled) body, malformed JSON, an HTML page with 200 and
  with 502, 401, 404, a status stream that drops mid-way, and a refused connection)
  x 8 tool variants (submit_fal_job; get_fal_status; get_fal_result with wait_seconds=0, with a 2 s wait through
  the status stream, and with a 2 s wait by polling; cancel_fal_job; upload_fal_file with the fault on the
  storage token route and on the upload route) = 160 persistent cases (every matching request faulted),
- plus 11 transient faults (the retryable ones: 502/503/504 with and without Retry-After, both 429s, reset, no
  answer, slow body; injected once or twice) x 4 read variants = 44 cases where the call must succeed by retrying,
- plus a submit whose answer is dropped after the job was created, and slow bodies measured against the timeouts.

Every case gets its own sandbox upstream and its own server (with its own ledger). A module fixture runs all the
selected cases once, ten at a time, and each parametrized `test_fault_case` judges one outcome, so the matrix takes
about half a minute, not several. Timeouts are small: 0.5 s per answer, 1.5 s of retries (4 s for the transient
cases, which end as soon as a retry succeeds).

Each call must end within CALL_DEADLINE with a success or with an isError that is a plain sentence (no traceback,
no "Error executing tool", no bare exception name, no HTML, no key); a persistent fault must never be reported as a
success; a submit sends at most one request, and its ledger row says "unknown" whenever the job may exist.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.sandbox import Fault, Sandbox, SandboxConfig
from server.sandbox.media import tiny_png
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of

KEY = "matrix-canary-" + secrets.token_hex(12)
CALL_DEADLINE = 10.0  # generous: a hang is what this catches
FAST: dict[str, Any] = {
    "request_timeout": 0.5,
    "submit_timeout": 0.5,
    "retry_deadline": 1.5,
    "poll_first_interval": 0.2,
    "poll_max_interval": 0.4,
    "progress_interval": 0.5,
}
TRANSIENT_RETRY_DEADLINE = 4.0
NEVER_DELAY = 2.5  # longer than every timeout above
SLOW_BODY_SECONDS = 4.5  # ten chunks 0.45 s apart: each read is within the timeout, the whole answer is not
# The longest a call may take when every answer is cut at its 0.5 s timeout: 1.5 s of retries, one more answer,
# and slack for a loaded machine. Reading each slow answer to its end would take 4.5 s or more.
SLOW_BODY_BOUND = 4.0

JSON = "application/json"
HTML = "text/html"
DETAIL = b'{"detail": "Internal Server Error"}'


# ---- the faults -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSpec:
    name: str
    make: Callable[[str, int], list[Fault]] = lambda match, times: []
    retryable: bool = False  # a GET retries past it when it is transient
    transient_times: int = 1  # how often it may occur in a row and a GET still succeeds by retrying
    drop_stream: bool = False
    refused: bool = False
    submit_ledger: str = "rejected"  # what the ledger must say after a submit met this fault persistently


def _answer(status: int, body: bytes = DETAIL, content_type: str = JSON, **extra: Any) -> Callable[..., list[Fault]]:
    def make(match: str, times: int) -> list[Fault]:
        return [Fault(match, status=status, body=body, content_type=content_type, times=times, **extra)]

    return make


def _http(status: int, *, retry_after: str | None = None) -> FaultSpec:
    headers = {"Retry-After": retry_after} if retry_after else {}
    name = f"http{status}" + (f"-retry-after-{retry_after}" if retry_after else "")
    return FaultSpec(
        name,
        _answer(status, headers=headers),
        retryable=status in (429, 502, 503, 504),
        transient_times=1 if retry_after else 2,
        submit_ledger="unknown" if status >= 500 else "rejected",
    )


FAULTS: list[FaultSpec] = [
    *(_http(code, retry_after=ra) for code in (500, 502, 503, 504) for ra in (None, "1")),
    _http(429, retry_after="1"),
    _http(429),
    FaultSpec(
        "reset",
        lambda match, times: [Fault(match, mode="reset", times=times)],
        retryable=True,
        transient_times=2,
        submit_ledger="unknown",
    ),
    FaultSpec(
        "never-answers",
        _answer(200, b'{"status": "IN_QUEUE"}', delay=NEVER_DELAY),
        retryable=True,
        submit_ledger="unknown",
    ),
    FaultSpec(
        "slow-body",
        _answer(
            503,
            b'{"detail": "Service Unavailable, slowly: ' + b"." * 60 + b'"}',
            mode="slow_body",
            delay=SLOW_BODY_SECONDS,
        ),
        retryable=True,
        submit_ledger="unknown",
    ),
    FaultSpec("malformed-json", _answer(200, b'{"status": "IN_QUE', JSON), submit_ledger="unknown"),
    FaultSpec(
        "html-200", _answer(200, b"<html><body>Down for maintenance</body></html>", HTML), submit_ledger="unknown"
    ),
    FaultSpec("html-502", _answer(502, b"<html><body>502 Bad Gateway</body></html>", HTML), submit_ledger="unknown"),
    FaultSpec("http401", _answer(401, b'{"detail": "Invalid API key"}')),
    FaultSpec("http404", _answer(404, b'{"detail": "Not Found"}')),
    FaultSpec("stream-drops", drop_stream=True),
    FaultSpec("connection-refused", refused=True),
]
TRANSIENT = [f for f in FAULTS if f.retryable]


# ---- the tools --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolVariant:
    name: str
    tool: str
    route: Callable[[str], str]  # request id -> the fault's match string
    extra: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    needs_job: bool = True
    is_read: bool = False  # retried GETs: transient faults must be survived


TOOLS: list[ToolVariant] = [
    ToolVariant("submit", "submit_fal_job", lambda rid: "POST /fal-ai/", needs_job=False),
    ToolVariant("status", "get_fal_status", lambda rid: f"/requests/{rid}/status", is_read=True),
    ToolVariant("result-now", "get_fal_result", lambda rid: f"/requests/{rid}", {"wait_seconds": 0}, is_read=True),
    ToolVariant(
        "result-wait-stream", "get_fal_result", lambda rid: f"/requests/{rid}", {"wait_seconds": 2}, is_read=True
    ),
    ToolVariant(
        "result-wait-poll",
        "get_fal_result",
        lambda rid: f"/requests/{rid}",
        {"wait_seconds": 2},
        {"use_status_stream": False},
        is_read=True,
    ),
    ToolVariant("cancel", "cancel_fal_job", lambda rid: f"/requests/{rid}/cancel"),
    ToolVariant("upload-token", "upload_fal_file", lambda rid: "/storage/auth/token", needs_job=False),
    ToolVariant("upload-file", "upload_fal_file", lambda rid: "POST /files/upload", needs_job=False),
]
READS = [t for t in TOOLS if t.is_read]


# ---- running one case -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    tool: str
    fault: str
    times: int
    is_error: bool
    text: str
    elapsed: float
    submit_posts: int  # POSTs to a model route made by the call under test
    ledger: list[str]  # ledger statuses after the call
    problems: list[str] = field(default_factory=list)


RESULTS: list[Outcome] = []


def _dead_base() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connections are refused


def _model_posts(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.seen("POST") if r.path.startswith("/fal-ai/"))


_CLASS_DUMP = re.compile(r"^\s*[\w.]*(Error|Exception|Timeout|Exit)\b")


def clean_sentence_problems(text: str) -> list[str]:
    """Why `text` is not a plain sentence an assistant can act on (empty when it is one)."""
    problems = []
    if len(text.split()) < 5:
        problems.append("too short to be a sentence")
    if "Traceback" in text or "Error executing tool" in text:
        problems.append("a crash leaked into the answer")
    if _CLASS_DUMP.match(text):
        problems.append("the message is an exception dump")
    if "<html" in text.lower() or "<body" in text.lower():
        problems.append("an HTML page is quoted")
    if KEY in text:
        problems.append("the key is in the answer")
    return problems


async def run_case(variant: ToolVariant, fault: FaultSpec, times: int, workdir: Path) -> Outcome:
    config = SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key=KEY)
    sandbox = Sandbox(config)
    sandbox.start()
    try:
        return await _run_case(sandbox, variant, fault, times, workdir)
    finally:
        await anyio.to_thread.run_sync(sandbox.stop)


async def _run_case(sandbox: Sandbox, variant: ToolVariant, fault: FaultSpec, times: int, workdir: Path) -> Outcome:
    workdir.mkdir(parents=True)
    photo = workdir / "photo.png"
    photo.write_bytes(tiny_png())
    overrides: dict[str, Any] = {
        **FAST,
        "file_roots": (workdir,),
        "storage_token_base": sandbox.base_url,
        "state_dir": workdir / "state",
        **variant.settings,
    }
    if fault.refused:
        dead = _dead_base()
        overrides.update(base_url=dead, storage_token_base=dead)
    if times <= 2:
        # a transient fault must be retried past: room for the retries even on a loaded machine (a success
        # ends the call at once, so this costs nothing when it works)
        overrides["retry_deadline"] = TRANSIENT_RETRY_DEADLINE
    settings = make_settings(sandbox, **overrides)

    async with connect(settings) as client:
        await client.list_tools()  # the checked client's schemas, fetched before any fault
        request_id = str(uuid.uuid4())
        if variant.needs_job and not fault.refused:
            # a real job, submitted (and recorded in the ledger) before the fault is injected
            submitted = await client._client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            assert not submitted.is_error, text_of(submitted)
            request_id = submitted.structured_content["request_id"]
        if variant.needs_job:
            args: dict[str, Any] = {"request_id": request_id, **variant.extra}
            if fault.refused:
                args["model"] = SEED_MODEL  # a job this server never reached: name its model
        elif variant.tool == "submit_fal_job":
            args = {"model": SEED_MODEL, "input": SEED_INPUT}
        else:
            args = {"path": str(photo)}
        for injected in fault.make(variant.route(request_id), times):
            sandbox.inject(injected)
        if fault.drop_stream:
            sandbox.config.drop_streams_after = 1
        posts_before = _model_posts(sandbox)
        started = time.monotonic()
        with anyio.fail_after(CALL_DEADLINE):
            answer = await client.call_tool(variant.tool, args)
        elapsed = time.monotonic() - started
        posts = _model_posts(sandbox) - posts_before
        sandbox.faults.clear()
        listed = await client._client.call_tool("list_fal_jobs", {})
    # the ledger rows the call under test made (not the setup job's)
    ledger = [job["status"] for job in listed.structured_content["jobs"] if job.get("request_id") != request_id]
    outcome = Outcome(variant.name, fault.name, times, answer.is_error, text_of(answer), elapsed, posts, ledger)
    outcome.problems = _judge(variant, fault, times, outcome, answer, sandbox)
    return outcome


def _judge(
    variant: ToolVariant, fault: FaultSpec, times: int, outcome: Outcome, answer: Any, sandbox: Sandbox
) -> list[str]:
    problems: list[str] = []
    text = outcome.text
    persistent = times > 2
    if outcome.submit_posts > (1 if variant.tool == "submit_fal_job" else 0):
        problems.append(f"{outcome.submit_posts} submits were sent for one call")
    if answer.is_error:
        problems += clean_sentence_problems(text)
    elif KEY in text or KEY in repr(answer.structured_content):
        problems.append("the key is in the answer")
    breaks_the_call = not fault.drop_stream
    if persistent and breaks_the_call and not answer.is_error:
        problems.append(f"answered as a success although every request failed: {text[:200]}")
    if not breaks_the_call and answer.is_error:
        problems.append(f"an error although the tool does not need the stream: {text[:200]}")
    if not persistent and answer.is_error:
        problems.append(f"a transient fault was not retried past: {text[:200]}")
    if variant.tool == "submit_fal_job" and persistent and breaks_the_call:
        expected = "rejected" if fault.refused else fault.submit_ledger
        if outcome.ledger != [expected]:
            problems.append(f"the ledger says {outcome.ledger}, expected [{expected!r}]")
        if expected == "unknown" and "resubmit" not in text:
            problems.append("an unknown outcome does not warn against resubmitting")
        if fault.refused and "nothing was submitted" not in text:
            problems.append("a refused connection does not say that nothing was submitted")
        if fault.name == "http404" and "request id" in text:
            problems.append("a 404 on submit is blamed on a request id")
    if fault.name == "slow-body" and outcome.elapsed > SLOW_BODY_BOUND:
        problems.append(f"a slow body held the call for {outcome.elapsed:.1f} s (timeouts: 0.5 s per answer)")
    foreign = [r.host for r in sandbox.seen() if not r.host.startswith("127.0.0.1")]
    if foreign:
        problems.append(f"requests went to {foreign}")
    return problems


@dataclass(frozen=True)
class Case:
    variant: ToolVariant
    fault: FaultSpec
    times: int

    @property
    def id(self) -> str:
        kind = "persistent" if self.times > 2 else f"transient{self.times}"
        return f"{self.variant.name}-{self.fault.name}-{kind}"


CASES: list[Case] = [Case(variant, fault, 100) for variant in TOOLS for fault in FAULTS] + [
    Case(variant, fault, fault.transient_times) for variant in READS for fault in TRANSIENT
]
# Known problems in files this suite may not change: the case is expected to fail (strict: fixing it shows).
CONCURRENCY = 10  # cases in flight at once: enough to overlap the waits, few enough to keep answers prompt


async def run_cases(cases: list[Case], workdir: Path) -> dict[str, Outcome | str]:
    """Run the cases concurrently; each gets an Outcome, or a string saying how it crashed or hung."""
    outcomes: dict[str, Outcome | str] = {}
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def one(index: int, case: Case) -> None:
        async with limiter:
            try:
                outcomes[case.id] = await run_case(case.variant, case.fault, case.times, workdir / f"case-{index}")
            except Exception as exc:  # a hang (fail_after) or an exception out of the client
                outcomes[case.id] = f"{type(exc).__name__}: {exc}"

    async with anyio.create_task_group() as group:
        for index, case in enumerate(cases):
            group.start_soon(one, index, case)
    return outcomes


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | str]:
    """Every selected case, run once for the module, concurrently (the tests below only judge the outcomes)."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    cases = [case for case in CASES if case.id in selected]
    outcomes = anyio.run(run_cases, cases, tmp_path_factory.mktemp("fault-matrix"))
    RESULTS.extend(o for o in outcomes.values() if isinstance(o, Outcome))
    return outcomes


# ---- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id) for case in CASES],
)
def test_fault_case(case: Case, matrix: dict[str, Outcome | str]) -> None:
    outcome = matrix[case.id]
    assert isinstance(outcome, Outcome), f"the call crashed or hung: {outcome}"
    assert not outcome.problems, f"{'; '.join(outcome.problems)} ({outcome.elapsed:.1f} s) -- {outcome.text[:400]!r}"


@pytest.mark.anyio
async def test_dropped_submit_answer_is_unknown_and_never_resent(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key=KEY)) as sandbox:
        settings = make_settings(sandbox, **FAST, state_dir=tmp_path)
        sandbox.inject(Fault("POST /fal-ai/", mode="drop_answer", times=100))
        async with connect(settings) as client:
            with anyio.fail_after(CALL_DEADLINE):
                answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            await anyio.sleep(0.5)  # nothing is re-sent later either
            unknown = (await client.call_tool("list_fal_jobs", {"status": "unknown"})).structured_content
            everything = (await client.call_tool("list_fal_jobs", {})).structured_content
    assert answer.is_error and not clean_sentence_problems(text_of(answer))
    assert "resubmit" in text_of(answer) and "unknown" in text_of(answer)
    assert len(sandbox.jobs) == 1  # the upstream did create (and bill) the job
    assert _model_posts(sandbox) == 1
    assert unknown["count"] == 1 and everything["count"] == 1
    assert unknown["jobs"][0]["model"] == SEED_MODEL


@pytest.mark.anyio
async def test_slow_body_is_cut_at_the_request_timeout(tmp_path: Path) -> None:
    """One answer trickling for 4.5 s, each piece inside the 0.5 s read timeout, with no retries allowed."""
    with Sandbox(SandboxConfig(key=KEY)) as sandbox:
        settings = make_settings(sandbox, **{**FAST, "retry_deadline": 0.0}, state_dir=tmp_path)
        slow = b'{"status": "IN_QUEUE", "padding": "' + b"." * 100 + b'"}'
        sandbox.inject(Fault("/status", status=200, body=slow, mode="slow_body", delay=SLOW_BODY_SECONDS, times=100))
        sandbox.inject(Fault("POST /fal-ai/", status=200, body=slow, mode="slow_body", delay=SLOW_BODY_SECONDS))
        async with connect(settings) as client:
            started = time.monotonic()
            status = await client.call_tool("get_fal_status", {"request_id": "abc", "model": SEED_MODEL})
            status_seconds = time.monotonic() - started
            started = time.monotonic()
            submit = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            submit_seconds = time.monotonic() - started
    assert status.is_error and "in time" in text_of(status)
    assert status_seconds < 1.5
    assert submit.is_error and "resubmit" in text_of(submit)
    assert submit_seconds < 1.5


def test_matrix_summary() -> None:
    """Counts what ran (pytest -s shows them); the module docstring states the same counts."""
    persistent = len(FAULTS) * len(TOOLS)
    transient = len(TRANSIENT) * len(READS)
    assert (len(FAULTS), len(TOOLS), persistent) == (20, 8, 160)
    assert (len(TRANSIENT), len(READS), transient) == (11, 4, 44)
    if not RESULTS:
        pytest.skip("the matrix did not run in this session")
    submits = [o for o in RESULTS if o.tool == "submit"]
    print(
        f"\nfault matrix: {len(RESULTS)} fault x tool cases ran "
        f"({persistent} persistent + {transient} transient when complete); "
        f"{sum(o.is_error for o in RESULTS)} clean errors, {sum(not o.is_error for o in RESULTS)} successes; "
        f"max submits per submit call: {max((o.submit_posts for o in submits), default=0)}; "
        "slowest calls: "
        + ", ".join(f"{o.tool} x {o.fault} {o.elapsed:.1f} s" for o in sorted(RESULTS, key=lambda o: -o.elapsed)[:4])
    )
    assert all(o.submit_posts <= 1 for o in RESULTS)
