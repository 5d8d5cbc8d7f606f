"""The upstream fault matrix: which faults, which calls, and how each outcome is judged.

Shared by the run against the protocol-free core (`test_fault_matrix.py`: the queue client, the waiter, fal
storage and the submit use case, every case at once against a few sandboxes) and by the handful of the same
cases run end to end through MCP (`test_fault_end_to_end.py`).

Timing is generous on purpose, so that a loaded machine changes how long a case takes, never its verdict: an
answer gets ANSWER_SECONDS (healthy and scripted answers come back in milliseconds), an answer that never comes
is held far longer than that, and a slow body trickles for far longer than the budget that must cut it. A wait
expected to fail is short (its verdict does not depend on timing); a wait expected to succeed is long (it ends as
soon as the job does).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.sandbox import Fault, SeenRequest

KEY = "matrix-canary-" + secrets.token_hex(12)
ANSWER_SECONDS = 4.0  # request and submit timeouts
PERSISTENT_RETRY_DEADLINE = 1.0  # a GET meeting a fault every time gives up after this much retrying
TRANSIENT_RETRY_DEADLINE = 30.0  # room to retry past a transient fault; a success ends the call at once
FAILING_WAIT_SECONDS = 2.0  # a wait in which every request fails (its verdict does not depend on its length)
SUCCEEDING_WAIT_SECONDS = 30.0  # a wait that must succeed: it ends when the job completes (under a second)
NEVER_SECONDS = 120.0  # "never answers": the sandbox lets go when the client hangs up
# A slow body: ten pieces, each well within the read timeout, the whole far beyond the answer budget.
SLOW_BODY_SECONDS = 25.0
CALL_DEADLINE = 60.0  # a hang is what this catches; no case comes near it

JSON = "application/json"
HTML = "text/html"
DETAIL = b'{"detail": "Internal Server Error"}'
# The fault answers that would still be a failure if they ever arrived: what a never-answering upstream sends.
LATE_ANSWER = b'{"detail": "Gateway Timeout"}'


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
    FaultSpec("never-answers", _answer(504, LATE_ANSWER, delay=NEVER_SECONDS), retryable=True, submit_ledger="unknown"),
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
FAULT_BY_NAME = {f.name: f for f in FAULTS}


# ---- the calls --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One upstream-touching call (a tool, or one way of using it)."""

    name: str
    tool: str  # the MCP tool that makes this call
    route: Callable[[str, str], str]  # (endpoint id, request id) -> what the fault matches
    needs_job: bool = True
    is_read: bool = False  # retried GETs: transient faults must be survived
    waits: bool = False
    streams: bool = False


VARIANTS: list[Variant] = [
    Variant("submit", "submit_fal_job", lambda endpoint, rid: f"POST /{endpoint}", needs_job=False),
    Variant("status", "get_fal_status", lambda endpoint, rid: f"/requests/{rid}/status", is_read=True),
    Variant("result-now", "get_fal_result", lambda endpoint, rid: f"/requests/{rid}", is_read=True),
    Variant(
        "result-wait-stream",
        "get_fal_result",
        lambda endpoint, rid: f"/requests/{rid}",
        is_read=True,
        waits=True,
        streams=True,
    ),
    Variant("result-wait-poll", "get_fal_result", lambda endpoint, rid: f"/requests/{rid}", is_read=True, waits=True),
    Variant("cancel", "cancel_fal_job", lambda endpoint, rid: f"/requests/{rid}/cancel"),
    Variant("upload-token", "upload_fal_file", lambda endpoint, rid: "/storage/auth/token", needs_job=False),
    Variant("upload-file", "upload_fal_file", lambda endpoint, rid: "POST /files/upload", needs_job=False),
]
READS = [v for v in VARIANTS if v.is_read]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


@dataclass(frozen=True)
class Case:
    variant: Variant
    fault: FaultSpec
    times: int

    @property
    def persistent(self) -> bool:
        return self.times > 2

    @property
    def id(self) -> str:
        kind = "persistent" if self.persistent else f"transient{self.times}"
        return f"{self.variant.name}-{self.fault.name}-{kind}"

    @property
    def must_succeed(self) -> bool:
        return not self.persistent or self.fault.drop_stream

    def wait_seconds(self) -> float:
        return SUCCEEDING_WAIT_SECONDS if self.must_succeed else FAILING_WAIT_SECONDS

    def settings(self) -> dict[str, Any]:
        """Setting overrides for this case's calls."""
        return {
            "request_timeout": ANSWER_SECONDS,
            "submit_timeout": ANSWER_SECONDS,
            # a call that must succeed gets room to retry past whatever goes wrong on a loaded machine
            "retry_deadline": TRANSIENT_RETRY_DEADLINE if self.must_succeed else PERSISTENT_RETRY_DEADLINE,
            "poll_first_interval": 0.2,
            "poll_max_interval": 0.4,
            "progress_interval": 0.5,
            "use_status_stream": self.variant.streams or not self.variant.waits,
            "max_connections": 100,
        }


CASES: list[Case] = [Case(variant, fault, 100) for variant in VARIANTS for fault in FAULTS] + [
    Case(variant, fault, fault.transient_times) for variant in READS for fault in TRANSIENT
]
CASE_BY_ID = {case.id: case for case in CASES}


# ---- judging one outcome ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    error: str | None  # the sentence the caller got, or None for a success
    shown: str  # everything the caller saw (the error, or the answer), searched for the key
    elapsed: float
    submit_posts: int  # POSTs to a model route made by the call under test
    ledger: list[str]  # ledger states of the rows the call under test made (submits only)
    route_gets: int | None = None  # GETs on exactly the faulted route (single-request reads only)
    problems: list[str] = field(default_factory=list)


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


def judge(outcome: Outcome, seen: list[SeenRequest]) -> list[str]:
    """Everything wrong with one call's outcome; `seen` is every request the sandbox got for the case."""
    case, problems = outcome.case, []
    fault, variant = case.fault, case.variant
    text = outcome.error or ""
    if outcome.submit_posts > (1 if variant.name == "submit" else 0):
        problems.append(f"{outcome.submit_posts} submits were sent for one call")
    if outcome.error is not None:
        problems += clean_sentence_problems(text)
    elif KEY in outcome.shown:
        problems.append("the key is in the answer")
    if case.persistent and not fault.drop_stream and outcome.error is None:
        problems.append(f"answered as a success although every request failed: {outcome.shown[:200]}")
    if case.must_succeed and outcome.error is not None:
        kind = "the tool does not need the stream" if fault.drop_stream else "a transient fault was not retried past"
        problems.append(f"an error although {kind}: {text[:200]}")
    if variant.name == "submit" and case.persistent and not fault.drop_stream:
        expected = "rejected" if fault.refused else fault.submit_ledger
        if outcome.ledger != [expected]:
            problems.append(f"the ledger says {outcome.ledger}, expected [{expected!r}]")
        if expected == "unknown" and "resubmit" not in text:
            problems.append("an unknown outcome does not warn against resubmitting")
        if fault.refused and "nothing was submitted" not in text:
            problems.append("a refused connection does not say that nothing was submitted")
        if fault.name == "http404" and "request id" in text:
            problems.append("a 404 on submit is blamed on a request id")
    if not case.persistent and outcome.route_gets is not None and outcome.route_gets != case.times + 1:
        problems.append(f"{outcome.route_gets} requests for a fault met {case.times} time(s): expected one retry each")
    if fault.name == "slow-body" and outcome.elapsed >= SLOW_BODY_SECONDS:
        problems.append(f"a slow body held the call for {outcome.elapsed:.1f} s: it was read to its end")
    foreign = [r.host for r in seen if not r.host.startswith("127.0.0.1")]
    if foreign:
        problems.append(f"requests went to {foreign}")
    return problems
