"""Every upstream fault against every upstream-touching call, on the protocol-free core: each call ends in time,
answers truthfully, and never submits twice.

The matrix (its faults, calls and verdicts are in `tests/fault_matrix.py`; `test_matrix_summary` counts them):

- 20 faults (500/502/503/504 each with and without Retry-After, 429 with `Retry-After: 1` and without, a
  connection reset, an answer that never comes, a slow (trickled) body, malformed JSON, an HTML page with 200 and
  with 502, 401, 404, a status stream that drops mid-way, and a refused connection)
  x 8 calls (a submit through the submit use case, which keeps the ledger; the queue client's status, result and
  cancel; the waiter following the status stream and polling; fal storage with the fault on the token route and
  on the upload route) = 160 persistent cases (every matching request faulted),
- plus 11 transient faults (the retryable ones: 502/503/504 with and without Retry-After, both 429s, reset, no
  answer, slow body; injected once or twice) x 4 reads = 44 cases where the call must succeed by retrying (and a
  single read is retried exactly once per fault),
- plus a submit whose answer is dropped after the job was created, and slow bodies cut at the answer budget.

No MCP here (a handful of these cases run end to end in `test_fault_end_to_end.py`). A module fixture runs all the
selected cases at once, and each parametrized `test_fault_case` judges one outcome. The cases share a few sandbox
upstreams: faults are matched by route, so each case's faults name its own job (or its own model route); only
the storage routes are shared by every upload, so each upload case has an upstream of its own.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from server.errors import FalError, SubmitOutcomeUnknownError
from server.files.local import LocalMedia, read_media
from server.jobs.waiting import Waiter, WaitLimits
from server.runtime import Runtime, open_runtime
from server.sandbox import Fault, Sandbox, SandboxConfig
from server.sandbox.media import tiny_png
from server.settings import Settings
from server.upstream.client import create_http_client
from server.upstream.ids import app_id
from server.upstream.routes import Upstream as Routes
from server.upstream.storage import FalStorageClient
from tests.fault_matrix import (
    ANSWER_SECONDS,
    CALL_DEADLINE,
    CASE_BY_ID,
    CASES,
    FAULTS,
    KEY,
    READS,
    SLOW_BODY_SECONDS,
    TRANSIENT,
    VARIANTS,
    Case,
    Outcome,
    clean_sentence_problems,
    judge,
)
from tests.helpers import SEED_INPUT
from tests.servers import refused_url
from tools.submit import submit

# Cases in flight at once: enough to overlap the waits; more would only make httpx's connection pool (shared, so
# that each case does not pay for a client's TLS setup) slower to hand out connections.
CONCURRENCY = 30
SLOW_FAULTS = ("never-answers", "slow-body")  # cases that last a whole answer budget start first
RESULTS: list[Outcome] = []
# pytest -n: the cases run once, in the session fixture below, so every test of this file goes to one worker
pytestmark = pytest.mark.xdist_group("fault_matrix")


def core_settings(base_url: str, state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "fal",
        "base_url": base_url,
        "fal_key": KEY,
        "state_dir": state_dir,
        "watch_jobs": False,
    }
    return Settings.from_env({}, **(values | overrides))


def matrix_sandbox(*, drop_streams: bool = False) -> Sandbox:
    config = SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key=KEY, drop_streams_after=1 if drop_streams else None)
    return Sandbox(config)


def fresh_endpoint() -> str:
    """A model route of the case's own, so that its faults and its submits are told apart from every other's."""
    return f"fal-ai/matrix-{secrets.token_hex(6)}/case"


# ---- the upstreams the cases share ------------------------------------------------------------------------------


@dataclass
class Upstream:
    """Where a group of cases sends its requests: a sandbox, or (refused connections) a port nobody listens on."""

    base_url: str
    sandbox: Sandbox | None
    submits: Runtime  # the submit use case, with its ledger
    setup: Routes  # submits each case's job before its fault is injected, with all the time it needs

    def posts_to(self, endpoint: str) -> int:
        if self.sandbox is None:
            return 0
        return sum(1 for r in self.sandbox.seen("POST") if r.path == f"/{endpoint}")

    def gets_of(self, path: str) -> int:
        if self.sandbox is None:
            return 0
        return sum(1 for r in self.sandbox.seen("GET") if r.path == path)


def _group(case: Case) -> str:
    """Which upstream a case uses: its own for an upload (the storage routes are not per job), else a shared one."""
    if case.fault.refused:
        return "refused"
    if case.fault.drop_stream:
        return "stream-drops"  # the sandbox drops every status stream
    if case.variant.name.startswith("upload"):
        return f"own:{case.id}"
    return "shared"


class Matrix:
    """The shared pieces of one matrix run: upstreams, one HTTP connection pool, a photo to upload."""

    def __init__(self, workdir: Path, http: httpx.AsyncClient, stack: AsyncExitStack) -> None:
        self.workdir = workdir
        self.http = http
        self._stack = stack
        self.upstreams: dict[str, Upstream] = {}
        photo = workdir / "photo.png"
        photo.write_bytes(tiny_png())
        self.media: LocalMedia = read_media(str(photo), roots=(workdir,), max_bytes=1 << 20)

    async def open(self, groups: set[str]) -> None:
        sandboxes = {name: matrix_sandbox(drop_streams=name == "stream-drops") for name in groups if name != "refused"}
        async with anyio.create_task_group() as starting:
            for sandbox in sandboxes.values():
                starting.start_soon(anyio.to_thread.run_sync, sandbox.start)
        self._stack.push_async_callback(self._stop, list(sandboxes.values()))
        any_case = next(case for case in CASES if case.persistent)
        for name in groups:
            sandbox = sandboxes.get(name)
            base = sandbox.base_url if sandbox is not None else refused_url()
            state = self.workdir / f"state-{len(self.upstreams)}"
            submits = await self._stack.enter_async_context(
                open_runtime(core_settings(base, state, **any_case.settings()))
            )
            setup = Routes(core_settings(base, state, request_timeout=30, submit_timeout=30), self.http)
            self.upstreams[name] = Upstream(base, sandbox, submits, setup)

    @staticmethod
    async def _stop(sandboxes: list[Sandbox]) -> None:
        async with anyio.create_task_group() as stopping:
            for sandbox in sandboxes:
                stopping.start_soon(anyio.to_thread.run_sync, sandbox.stop)

    async def run(self, case: Case) -> Outcome:
        upstream = self.upstreams[_group(case)]
        settings = core_settings(upstream.base_url, self.workdir / "unused", **case.settings())
        client = Routes(settings, self.http)
        variant, fault = case.variant, case.fault
        endpoint = fresh_endpoint()
        request_id = str(uuid.uuid4())
        if variant.needs_job and upstream.sandbox is not None:
            request_id = (await upstream.setup.submit(endpoint, SEED_INPUT)).request_id
        if upstream.sandbox is not None:
            for injected in fault.make(variant.route(endpoint, request_id), case.times):
                upstream.sandbox.inject(injected)
        posts_before = upstream.posts_to(endpoint)
        started = time.monotonic()
        error: str | None = None
        try:
            with anyio.fail_after(CALL_DEADLINE):
                answer: Any = await self._call(case, upstream, client, endpoint, request_id)
            shown = repr(answer)
        except FalError as exc:
            error = shown = str(exc)
        elapsed = time.monotonic() - started
        ledger: list[str] = []
        if variant.name == "submit":
            rows = await upstream.submits.jobs.list(state=None, endpoint_id=endpoint, since=None, limit=10)
            ledger = [row.state for row in rows]
        job_path = f"/{app_id(endpoint)}/requests/{request_id}"
        single_get = {"status": job_path + "/status", "result-now": job_path}.get(variant.name)
        outcome = Outcome(
            case,
            error,
            shown,
            elapsed,
            submit_posts=upstream.posts_to(endpoint) - posts_before,
            ledger=ledger,
            route_gets=upstream.gets_of(single_get) if single_get and upstream.sandbox is not None else None,
        )
        outcome.problems = judge(outcome, upstream.sandbox.seen() if upstream.sandbox is not None else [])
        return outcome

    async def _call(self, case: Case, upstream: Upstream, client: Routes, endpoint: str, request_id: str) -> Any:
        name = case.variant.name
        if name == "submit":
            return await submit(upstream.submits, endpoint, SEED_INPUT)
        if name == "status":
            return await client.status(endpoint, request_id)
        if name == "result-now":
            return await client.result(endpoint, request_id)
        if name == "cancel":
            return await client.cancel(endpoint, request_id)
        if case.variant.waits:
            limits = WaitLimits(
                seconds=case.wait_seconds(),
                poll_first_interval=client.settings.poll_first_interval,
                poll_max_interval=client.settings.poll_max_interval,
                heartbeat=client.settings.progress_interval,
            )
            return await Waiter(client, max_streams=1).wait(endpoint, request_id, limits)
        storage = FalStorageClient(
            self.http, token_base=upstream.base_url, upload_base=None, fal_key=KEY, answer_timeout=ANSWER_SECONDS
        )
        return await storage.upload(self.media)


async def run_cases(cases: list[Case], workdir: Path) -> dict[str, Outcome | str]:
    """Run the cases at once; each gets an Outcome, or a string saying how it crashed or hung."""
    outcomes: dict[str, Outcome | str] = {}
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    pool = core_settings("http://127.0.0.1:1", workdir, request_timeout=ANSWER_SECONDS, max_connections=1000)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(create_http_client(pool))
        matrix = Matrix(workdir, http, stack)
        await matrix.open({_group(case) for case in cases})

        async def one(case: Case) -> None:
            async with limiter:
                try:
                    outcomes[case.id] = await matrix.run(case)
                except Exception as exc:  # a hang (fail_after) or an exception that is not a FalError
                    outcomes[case.id] = f"{type(exc).__name__}: {exc}"

        async with anyio.create_task_group() as group:
            for case in sorted(cases, key=lambda c: c.fault.name not in SLOW_FAULTS):
                group.start_soon(one, case)
    return outcomes


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | str]:
    """Every selected case, run once (the tests below only judge the outcomes). Under xdist the module runs on one
    worker (--dist loadfile), so the cases run once per suite."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if item.path == Path(__file__) and hasattr(item, "callspec") and "case_id" in item.callspec.params
    }
    cases = [case for case in CASES if case.id in selected]
    outcomes = anyio.run(run_cases, cases, tmp_path_factory.mktemp("fault-matrix"))
    RESULTS.extend(o for o in outcomes.values() if isinstance(o, Outcome))
    return outcomes


# ---- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", [pytest.param(case.id, id=case.id) for case in CASES])
def test_fault_case(case_id: str, matrix: dict[str, Outcome | str]) -> None:
    outcome = matrix[case_id]
    assert CASE_BY_ID[case_id].id == case_id
    assert isinstance(outcome, Outcome), f"the call crashed or hung: {outcome}"
    shown = (outcome.error or outcome.shown)[:400]
    assert not outcome.problems, f"{'; '.join(outcome.problems)} ({outcome.elapsed:.1f} s) -- {shown!r}"


@asynccontextmanager
async def _runtime(sandbox: Sandbox, tmp_path: Path, **overrides: Any) -> AsyncIterator[Runtime]:
    async with open_runtime(core_settings(sandbox.base_url, tmp_path, **overrides)) as runtime:
        yield runtime


@pytest.fixture
def upstream() -> Iterator[Sandbox]:
    with matrix_sandbox() as sandbox:
        yield sandbox


@pytest.mark.anyio
async def test_dropped_submit_answer_is_unknown_and_never_resent(upstream: Sandbox, tmp_path: Path) -> None:
    upstream.inject(Fault("POST /fal-ai/", mode="drop_answer", times=100))
    async with _runtime(upstream, tmp_path, submit_timeout=ANSWER_SECONDS) as rt:
        with pytest.raises(SubmitOutcomeUnknownError) as raised, anyio.fail_after(CALL_DEADLINE):
            await submit(rt, "fal-ai/some-model/v1", {"prompt": "a cat"})
        rows = await rt.jobs.list(state=None, endpoint_id=None, since=None, limit=10)
    text = str(raised.value)
    assert not clean_sentence_problems(text)
    assert "resubmit" in text and "unknown" in text
    assert len(upstream.jobs) == 1  # the upstream did create (and bill) the job
    assert [row.state for row in rows] == ["unknown"] and rows[0].endpoint_id == "fal-ai/some-model/v1"
    await anyio.sleep(0.5)  # nothing is re-sent later either
    assert len(upstream.seen("POST")) == 1


@pytest.mark.anyio
async def test_slow_bodies_are_cut_at_the_answer_budget(upstream: Sandbox, tmp_path: Path) -> None:
    """One answer trickling for 25 s, each piece well inside the read timeout, with no retries allowed: the
    budget for the whole answer ends the call (reading each piece as it comes would take the full 25 s)."""
    slow = b'{"status": "IN_QUEUE", "padding": "' + b"." * 100 + b'"}'
    upstream.inject(Fault("/status", status=200, body=slow, mode="slow_body", delay=SLOW_BODY_SECONDS, times=100))
    upstream.inject(Fault("POST /fal-ai/", status=200, body=slow, mode="slow_body", delay=SLOW_BODY_SECONDS))
    settings = core_settings(
        upstream.base_url, tmp_path, request_timeout=ANSWER_SECONDS, submit_timeout=ANSWER_SECONDS, retry_deadline=0.0
    )
    async with create_http_client(settings) as http:
        client = Routes(settings, http)
        started = time.monotonic()
        with pytest.raises(FalError) as status:
            await client.status("fal-ai/some-model", "abc")
        status_seconds = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(SubmitOutcomeUnknownError) as submitted:
            await client.submit("fal-ai/some-model", {"prompt": "a cat"})
        submit_seconds = time.monotonic() - started
    assert "in time" in str(status.value)
    assert "resubmit" in str(submitted.value)
    assert status_seconds < SLOW_BODY_SECONDS / 2 and submit_seconds < SLOW_BODY_SECONDS / 2


def test_matrix_summary() -> None:
    """Counts what ran (pytest -s shows them); the module docstring states the same counts."""
    persistent = len(FAULTS) * len(VARIANTS)
    transient = len(TRANSIENT) * len(READS)
    assert (len(FAULTS), len(VARIANTS), persistent) == (20, 8, 160)
    assert (len(TRANSIENT), len(READS), transient) == (11, 4, 44)
    assert len(CASES) == len(CASE_BY_ID) == persistent + transient  # every case id is unique
    if not RESULTS:
        pytest.skip("the matrix did not run in this session")
    submits = [o for o in RESULTS if o.case.variant.name == "submit"]
    slowest = sorted(RESULTS, key=lambda o: -o.elapsed)[:4]
    print(
        f"\nfault matrix: {len(RESULTS)} fault x call cases ran "
        f"({persistent} persistent + {transient} transient when complete); "
        f"{sum(o.error is not None for o in RESULTS)} clean errors, {sum(o.error is None for o in RESULTS)} "
        f"successes; max submits per submit call: {max((o.submit_posts for o in submits), default=0)}; "
        "slowest calls: " + ", ".join(f"{o.case.id} {o.elapsed:.1f} s" for o in slowest)
    )
    assert all(o.submit_posts <= 1 for o in RESULTS)
