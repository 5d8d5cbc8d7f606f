"""A generation as an MCP task, free of MCP (tools.tasks): task ids, a ledger row as a task's state, the poll schedule
(the watcher's), and the questions a submit may ask while its task waits."""

from __future__ import annotations

import ast
import itertools
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from server.jobs import watcher
from server.jobs.ledger import JobRow
from tools import tasks
from tools.tasks import (
    TASK_CANCELLED_REASON,
    InputExchange,
    InputTask,
    InputTasks,
    PollSchedule,
    TaskIdError,
    answer_inputs,
    job_task_id,
    job_task_state,
    parse_task_id,
    task_status,
)

REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
SCHEDULE = PollSchedule(first_interval=5.0, max_interval=30.0)
ROW = JobRow(
    id=1,
    request_id=REQUEST_ID,
    endpoint_id="fal-ai/kling-video/v2.1/standard/image-to-video",
    state="submitted",
    input={"prompt": "a cat"},
    submitted_at=1_800_000_000.0,
    updated_at=1_800_000_000.5,
    queue_position=3,
    error=None,
    result=None,
    result_at=None,
    media_urls=[],
    downloads=[],
)


def test_the_mapping_is_protocol_free() -> None:
    tree = ast.parse(Path(tasks.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {name for name in imported if name.split(".")[0] in ("mcp", "mcp_types")}


# ---- ids -----------------------------------------------------------------------------------------------------


def test_a_job_task_id_is_derived_from_the_request_id_and_back() -> None:
    assert job_task_id(REQUEST_ID) == f"job.{REQUEST_ID}"
    assert parse_task_id(job_task_id(REQUEST_ID)) == ("job", REQUEST_ID)
    token = tasks.new_input_task_id()
    assert parse_task_id(token) == ("input", token) and token != tasks.new_input_task_id()


@pytest.mark.parametrize(
    "bad", ["", REQUEST_ID, "job.", "job.../etc/passwd", "job.a b", "task.x", "input.", "input." + "x" * 80, 7, None]
)
def test_a_task_id_this_server_never_issued_is_refused_saying_what_one_looks_like(bad: object) -> None:
    with pytest.raises(TaskIdError, match=r"'job\.' followed by the job's request id"):
        parse_task_id(bad)


# ---- a row as a task -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "error", "status"),
    [
        ("submitted", None, "working"),
        ("unknown", "timed out", "working"),
        ("completed", None, "completed"),
        # A failed or cancelled generation is a tool result with isError: the task completed.
        ("failed", "The job failed: boom", "completed"),
        ("cancelled", "The job cancelled: Request was cancelled", "completed"),
        # Cancelled through the task itself: cancelled, for good.
        ("cancelled", TASK_CANCELLED_REASON, "cancelled"),
    ],
)
def test_task_status_of_each_ledger_state(state: str, error: str | None, status: str) -> None:
    assert task_status(replace(ROW, state=state, error=error)) == status


def test_a_running_job_is_working_with_a_message_and_the_servers_poll_interval() -> None:
    state = job_task_state(ROW, schedule=SCHEDULE, now=ROW.submitted_at + 2)
    assert state.task_id == f"job.{REQUEST_ID}" and state.status == "working"
    assert state.created_at == ROW.submitted_at and state.last_updated_at == ROW.updated_at
    assert state.ttl_ms is None  # the ledger keeps rows for good
    assert state.poll_interval_ms == 5000
    assert state.status_message is not None and "queue position 3" in state.status_message
    logged = job_task_state(ROW, schedule=SCHEDULE, latest_log="step 2/4", now=ROW.submitted_at + 40)
    assert logged.status_message is not None and logged.status_message.endswith("step 2/4")


def test_a_finished_task_has_nothing_left_to_poll_for() -> None:
    done = job_task_state(replace(ROW, state="completed"), schedule=SCHEDULE)
    cancelled = job_task_state(replace(ROW, state="cancelled", error=TASK_CANCELLED_REASON), schedule=SCHEDULE)
    assert done.poll_interval_ms is None and cancelled.poll_interval_ms is None
    assert tasks.ttl_ms(3600) == 3_600_000


def test_the_poll_schedule_is_the_watchers() -> None:
    """The intervals between the watcher's checks of one job, as it spaces them, are what a task advises."""
    assert tasks.BACKOFF_FACTOR == watcher.BACKOFF_FACTOR
    checks, interval, due = [], SCHEDULE.first_interval, SCHEDULE.first_interval
    for _ in range(12):  # the watcher: first check at first_interval, then each interval 1.5 times the last, capped
        checks.append((due, interval))
        interval = min(SCHEDULE.max_interval, interval * watcher.BACKOFF_FACTOR)
        due += interval
    assert SCHEDULE.interval(0) == SCHEDULE.first_interval
    for (due, _), (_, following) in itertools.pairwise(checks):
        assert SCHEDULE.interval(due + 0.01) == pytest.approx(following)
    assert SCHEDULE.interval(10_000) == SCHEDULE.max_interval


def test_timestamps_are_iso_8601_utc() -> None:
    assert tasks.iso(0) == "1970-01-01T00:00:00.000Z"


# ---- input while a submit waits ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_question_puts_the_task_in_input_required_until_answered() -> None:
    task = InputTask(tasks.new_input_task_id())
    exchange = InputExchange(task, timeout=10)
    answers: list[object] = []

    async def submit() -> None:
        exchange.bind()
        assert tasks.input_exchange() is exchange
        answers.append(await exchange.ask("confirm_cost", {"method": "elicitation/create", "params": {}}))

    assert tasks.input_exchange() is None  # no task can carry a question here
    async with anyio.create_task_group() as group:
        group.start_soon(submit)
        await exchange.asked.wait()
        assert task.status == "input_required" and list(task.requests) == ["confirm_cost"]
        assert answer_inputs(task, {"never_asked": {}}) == 0  # ignored, as the spec asks
        assert answer_inputs(task, {"confirm_cost": {"action": "accept"}}) == 1
    assert answers == [{"action": "accept"}]
    assert task.status == "working" and not task.requests
    assert answer_inputs(task, {"confirm_cost": {"action": "decline"}}) == 0  # answered already
    with pytest.raises(ValueError, match="used already"):
        await exchange.ask("confirm_cost", {})


@pytest.mark.anyio
async def test_an_unanswered_question_times_out() -> None:
    exchange = InputExchange(InputTask(tasks.new_input_task_id()), timeout=0.05)
    with pytest.raises(TimeoutError):
        await exchange.ask("confirm_cost", {})
    assert exchange.task.status == "working"


def test_input_tasks_are_bounded() -> None:
    kept = InputTasks(capacity=2)
    made = [InputTask(tasks.new_input_task_id()) for _ in range(3)]
    for task in made:
        kept.add(task)
    assert kept.get(made[0].task_id) is None and kept.get(made[2].task_id) is made[2]
