"""Scale-out: 1, 2 and 4 HTTP instances sharing one ledger and 50 jobs; upstream requests per job must stay flat.

Each run starts N `python -m server --transport http` processes on one fresh PostgreSQL database (a throwaway
local cluster; a shared SQLite file when PostgreSQL cannot run here), all against one sandbox in this process.
The 50 jobs are submitted round-robin over the instances; every instance's watcher follows unfinished jobs; half
way through the jobs' run, each job gets a get_fal_result wait on another instance than the one that submitted
it. Status is polled (as through UniAPI, which has no status stream), so every follower's requests count.
Without one follower per job, each instance's watcher would poll every job: N instances, N times the requests.

The single instance runs first and again last, and its mean is the baseline: on a busy machine one instance
serving all 50 waits polls a little late, so a lone run would flatter or penalise the ratio by chance. Besides
the counts, the order of each job's reads shows who followed it: one follower at a time reads as A..A B..B (one
switch, when the wait takes the job from a watcher); two followers at once interleave (A B A B).
"""

from __future__ import annotations

import itertools
import time
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

from bench.common import (
    INFO,
    Report,
    Row,
    Table,
    percentile,
    progress,
    server_env,
    submit_job,
    temp_state_dir,
    verdict,
)
from server.sandbox import Sandbox, SandboxConfig

NAME = "scale_out"
JOBS = 50
INSTANCE_COUNTS = (1, 2, 4, 1)  # the single instance again last: the baseline is its mean
RATIO_TARGET = 1.10  # requests per job with N instances, over the single instance's
QUEUE_SECONDS = 0.5
SUBMITS_IN_FLIGHT = 10
WAIT_SECONDS = 50


@dataclass
class Outcome:
    instances: int
    backend: str
    submits: int = 0
    reads: dict[str, int] = field(default_factory=dict)  # request id -> status/result requests
    watched_reads: int = 0  # of those, before the waits began (the watchers' alone)
    followers: dict[str, int] = field(default_factory=dict)  # request id -> instances that read it
    switches: dict[str, int] = field(default_factory=dict)  # request id -> times the reading instance changed
    answered: int = 0
    errors: list[str] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    @property
    def per_job(self) -> float:
        return sum(self.reads.values()) / max(len(self.reads), 1)


def run(quick: bool) -> Report:
    from tests.instances import http_instances
    from tests.local_postgres import LocalPostgres, unavailable

    run_seconds = 8.0 if quick else 12.0
    report = Report(NAME)
    problem = unavailable()
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        postgres = None if problem else stack.enter_context(LocalPostgres())
        sandbox = stack.enter_context(Sandbox(SandboxConfig(queue_seconds=QUEUE_SECONDS, run_seconds=run_seconds)))
        for count in INSTANCE_COUNTS:
            with temp_state_dir() as state_dir:
                env = server_env(
                    state_dir,
                    UNIAPI_KEY=sandbox.config.key,
                    FAL_MCP_BASE_URL=sandbox.base_url,
                    FAL_MCP_USE_STATUS_STREAM="false",
                    FAL_MCP_WATCH_FIRST_INTERVAL="1",
                    FAL_MCP_WATCH_MAX_INTERVAL="3",
                    FAL_MCP_MAX_WAIT_SECONDS=str(WAIT_SECONDS),
                )
                if postgres is not None:
                    env["FAL_MCP_DATABASE_URL"] = postgres.create_database()
                outcome = Outcome(count, "PostgreSQL" if postgres else "SQLite")
                progress(f"scale_out: {count} instance(s) on {outcome.backend}, {JOBS} jobs of {run_seconds:.0f} s")
                with http_instances(count, env) as instances:
                    urls = [instance.url for instance in instances]
                    anyio.run(_drive, sandbox, urls, outcome, run_seconds)
                outcomes.append(outcome)
    _rows(report, outcomes, problem)
    return report


async def _drive(sandbox: Sandbox, urls: list[str], outcome: Outcome, run_seconds: float) -> None:
    count = len(urls)
    posts_before = len(sandbox.seen("POST"))
    with anyio.fail_after(run_seconds + WAIT_SECONDS + 90):
        async with AsyncExitStack() as stack:
            clients: list[Any] = [await stack.enter_async_context(Client(url)) for url in urls]
            submitted: dict[int, str] = {}
            limiter = anyio.Semaphore(SUBMITS_IN_FLIGHT)

            async def submit(index: int) -> None:
                async with limiter:
                    try:
                        submitted[index] = await submit_job(clients[index % count])
                    except Exception as exc:
                        outcome.errors.append(f"submit: {exc}")

            async with anyio.create_task_group() as group:
                for index in range(JOBS):
                    group.start_soon(submit, index)
            await anyio.sleep(run_seconds / 2)  # meanwhile, the watchers follow the jobs
            before_waits = len(sandbox.seen())

            async def wait(index: int, request_id: str) -> None:
                client = clients[(index + 1) % count]  # another instance than the one that submitted it
                try:
                    answer = await client.call_tool(
                        "get_fal_result", {"request_id": request_id, "wait_seconds": WAIT_SECONDS}
                    )
                except Exception as exc:
                    outcome.errors.append(f"wait: {exc}")
                    return
                returned = time.time()  # the sandbox's job clock
                if answer.is_error or answer.structured_content.get("done") is not True:
                    text = " ".join(getattr(block, "text", "") for block in answer.content)
                    outcome.errors.append(f"wait: not done ({text})")
                    return
                outcome.answered += 1
                job = sandbox.jobs[request_id]  # the sandbox runs in this process: completion time is exact
                outcome.delays.append(returned - job.completed_at)

            async with anyio.create_task_group() as group:
                for index, request_id in submitted.items():
                    group.start_soon(wait, index, request_id)
    outcome.submits = len(sandbox.seen("POST")) - posts_before
    everything = sandbox.seen()
    for request_id in submitted.values():
        reads = [seen for seen in everything if seen.method == "GET" and f"/requests/{request_id}" in seen.path]
        outcome.reads[request_id] = len(reads)
        outcome.followers[request_id] = len({seen.instance for seen in reads})
        outcome.switches[request_id] = sum(1 for a, b in itertools.pairwise(reads) if a.instance != b.instance)
        outcome.watched_reads += sum(1 for seen in everything[:before_waits] if f"/requests/{request_id}" in seen.path)


def _rows(report: Report, outcomes: list[Outcome], problem: str | None) -> None:
    singles = [outcome for outcome in outcomes if outcome.instances == 1]
    single = sum(outcome.per_job for outcome in singles) / len(singles)
    for outcome in outcomes:
        if outcome.instances == 1:
            continue
        ratio = outcome.per_job / single if single else float("inf")
        report.rows.append(
            Row(
                f"scale_out: upstream requests per job, {outcome.instances} instances vs 1 ({outcome.backend})",
                f"{outcome.per_job:.1f}",
                f"1 instance: {single:.1f} ({' and '.join(f'{o.per_job:.1f}' for o in singles)})",
                f"{ratio:.2f}x (<= {RATIO_TARGET:.2f}x)",
                verdict(ratio <= RATIO_TARGET),
            )
        )
    waits = sum(outcome.answered for outcome in outcomes)
    errors = sum(len(outcome.errors) for outcome in outcomes)
    expected = JOBS * len(outcomes)
    report.rows.append(
        Row(
            f"scale_out: waits answered done=true ({', '.join(str(o.instances) for o in outcomes)} instances)",
            f"{waits} of {expected} ({errors} errors)",
            "",
            f"all {expected}",
            verdict(waits == expected and errors == 0),
        )
    )
    switches = [count for outcome in outcomes for count in outcome.switches.values()]
    report.rows.append(
        Row(
            "scale_out: follower switches per job, mean / max (all runs)",
            f"{sum(switches) / max(len(switches), 1):.2f} / {max(switches, default=0)}",
            "two followers at once: one switch per read",
            "one follower at a time: <= 1 (watcher -> wait)",
            INFO,
        )
    )
    report.rows.append(
        Row(
            "scale_out: notice delay after completion, p50 / max (all runs)",
            _delays([delay for outcome in outcomes for delay in outcome.delays]),
            "",
            "polling: 0 to ~3 s by design",
            INFO,
        )
    )
    report.tables.append(
        Table(
            f"Scale-out: {JOBS} jobs shared by N instances (status polled; waits on another instance than the submit)",
            [
                "instances",
                "submits per job",
                "reads per job (before the waits)",
                "vs 1 instance",
                "readers / switches per job (max)",
                "waits answered",
                "notice delay p50 / max",
                "errors",
            ],
            [
                [
                    str(outcome.instances),
                    f"{outcome.submits / JOBS:.2f}",
                    f"{outcome.per_job:.1f} ({outcome.watched_reads / max(len(outcome.reads), 1):.1f})",
                    f"{outcome.per_job / single:.2f}x" if single else "-",
                    f"{max(outcome.followers.values(), default=0)} / {max(outcome.switches.values(), default=0)}",
                    f"{outcome.answered} of {JOBS}",
                    _delays(outcome.delays),
                    str(len(outcome.errors)),
                ]
                for outcome in outcomes
            ],
        )
    )
    backend = outcomes[0].backend
    report.notes.append(
        f"scale_out: instances share a {backend} ledger"
        + (f" (PostgreSQL could not run here: {problem})" if problem else "")
        + "; reads = status and result GETs per job (submits counted apart); a job is read by the instance whose"
        " watcher followed it, then by the instance its wait went to."
    )
    for outcome in outcomes:
        shown = outcome.errors[:3]
        report.notes.extend(f"scale_out, {outcome.instances} instance(s): {error[:300]}" for error in shown)


def _delays(delays: list[float]) -> str:
    if not delays:
        return "-"
    return f"{percentile(delays, 50):.2f} s / {max(delays):.2f} s"
