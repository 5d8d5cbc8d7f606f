"""A generation seen as an MCP task, free of MCP: task ids, a job's ledger row as a task's state, the poll schedule,
and the questions a submit may ask while its task waits for the person's answer.

A task is a view of one job's ledger row, never state of its own: its id is derived from the job's request id, so
any instance sharing the ledger answers for it, after a restart too. The job is followed as every job is (the
watcher, or a `get_fal_result` wait): a task adds no upstream request of its own.

Status, from the row (see `task_status`):
- 'submitted' (or 'unknown', 'submitting'): `working`, with a message (the latest log line this process has seen,
  else how long ago it was submitted and its queue position then);
- 'completed', 'failed', 'cancelled': `completed`, its result what `get_fal_result` answers (an error result for
  a failed or cancelled generation: `failed` is for protocol-level failures only);
- cancelled through the task (`tasks/cancel`, which records `TASK_CANCELLED_REASON`): `cancelled`, for good.

Before a job exists, a submit that needs the person's answer (e.g. a cost confirmation) asks through
`InputExchange.ask`: its task is then `input_required`, lives in this process only (nothing has been submitted or
paid), and becomes the job's task once the submit is done.
"""

from __future__ import annotations

import contextvars
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio

from server.upstream.ids import validate_request_id

if TYPE_CHECKING:
    from server.jobs.ledger import JobRow


TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]

JOB_TASK_PREFIX = "job."  # + the job's request id ('.' never occurs in a request id)
INPUT_TASK_PREFIX = "input."  # + a random token: a submit waiting for the person's answer, before any job exists
# What the ledger records as a job's error when its task was cancelled (tasks/cancel): it tells a task cancelled
# through the protocol (status `cancelled`) from a generation cancelled elsewhere (a completed task, an error).
TASK_CANCELLED_REASON = (
    "The job was cancelled through its MCP task (tasks/cancel); the upstream was asked to stop it. Submit it again "
    "if you still need it."
)
_INPUT_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,48}")
BACKOFF_FACTOR = 1.5  # as the watcher's (server.jobs.watcher): each check of a job waits this much longer


class TaskIdError(ValueError):
    """A task id this server could never have issued; the message says what a task id looks like."""


# ---- ids -----------------------------------------------------------------------------------------------------


def job_task_id(request_id: str) -> str:
    return JOB_TASK_PREFIX + request_id


def new_input_task_id() -> str:
    return INPUT_TASK_PREFIX + secrets.token_urlsafe(18)


def parse_task_id(task_id: object) -> tuple[Literal["job", "input"], str]:
    """('job', request_id) or ('input', task_id); TaskIdError for anything else."""
    if isinstance(task_id, str) and task_id.startswith(JOB_TASK_PREFIX):
        try:
            return "job", validate_request_id(task_id[len(JOB_TASK_PREFIX) :])
        except ValueError:
            pass
    if (
        isinstance(task_id, str)
        and _INPUT_TOKEN.fullmatch(task_id[len(INPUT_TASK_PREFIX) :])
        and (task_id.startswith(INPUT_TASK_PREFIX))
    ):
        return "input", task_id
    shown = task_id[:80] if isinstance(task_id, str) else type(task_id).__name__
    raise TaskIdError(
        f"taskId {shown!r} is not a task of this server: its tasks are 'job.' followed by the job's request id "
        "(as a submit_fal_job task returned it), or 'input.' followed by a token."
    )


# ---- schedule and lifetime -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollSchedule:
    """How often the server itself checks an unfinished job (the watcher's settings): a client polling its task
    more often would only see the same row again."""

    first_interval: float  # FAL_MCP_WATCH_FIRST_INTERVAL
    max_interval: float  # FAL_MCP_WATCH_MAX_INTERVAL

    def interval(self, age: float) -> float:
        """Seconds between the server's checks of a job `age` seconds after its submit."""
        interval, due = self.first_interval, self.first_interval
        while due <= age and interval < self.max_interval:
            interval = min(self.max_interval, interval * BACKOFF_FACTOR)
            due += interval
        return interval


def ttl_ms(result_retention_seconds: float | None) -> int | None:
    """A task lives as long as the ledger keeps its job's row: None (unlimited) while rows are never pruned."""
    return None if result_retention_seconds is None else int(result_retention_seconds * 1000)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- a job's row as a task -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskState:
    """A task's protocol-free state; the MCP face adds the result of a completed task."""

    task_id: str
    status: TaskStatus
    status_message: str | None
    created_at: float
    last_updated_at: float
    ttl_ms: int | None
    poll_interval_ms: int | None  # None once the task is terminal: there is nothing left to poll for


def task_status(row: JobRow) -> TaskStatus:
    if row.state == "cancelled" and row.error == TASK_CANCELLED_REASON:
        return "cancelled"
    if row.state in ("completed", "failed", "cancelled", "rejected"):
        return "completed"  # a failed generation is a tool result with isError, not a protocol failure
    return "working"  # submitted; 'unknown' and 'submitting' never get a task, but would still be in the works


def job_task_state(
    row: JobRow,
    *,
    schedule: PollSchedule,
    result_retention_seconds: float | None = None,
    latest_log: str | None = None,
    now: float | None = None,
) -> TaskState:
    assert row.request_id is not None, "a task is created only once its job has a request id"
    now = time.time() if now is None else now
    status = task_status(row)
    age = max(0.0, now - row.submitted_at)
    return TaskState(
        task_id=job_task_id(row.request_id),
        status=status,
        status_message=_status_message(row, status, age, latest_log),
        created_at=row.submitted_at,
        last_updated_at=max(row.updated_at, row.submitted_at),
        ttl_ms=ttl_ms(result_retention_seconds),
        poll_interval_ms=round(schedule.interval(age) * 1000) if status == "working" else None,
    )


def _status_message(row: JobRow, status: TaskStatus, age: float, latest_log: str | None) -> str:
    if status == "cancelled":
        return "Cancelled: the upstream was asked to stop the job."
    if status == "completed":
        return "Failed: see the result." if row.state != "completed" else "Done: the result holds the media URLs."
    if latest_log:
        return f"Running ({age:.0f} s since submit): {latest_log}"
    position = f", queue position {row.queue_position} at submit" if row.queue_position is not None else ""
    return f"Submitted {age:.0f} s ago{position}; the server checks it and keeps the result once it is done."


# ---- input while a submit waits for the person ---------------------------------------------------------------


@dataclass
class InputTask:
    """A submit waiting for answers before any job exists; then, the job it started (or the answer it ended with)."""

    task_id: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # outstanding: key -> request
    answered: set[str] = field(default_factory=set)  # keys never to be asked or answered again
    responses: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None  # the job, once the submit is done
    final: Any = None  # the submit's own answer, when it ended without a job (refused, declined, timed out)
    done: bool = False
    cancelled: bool = False  # through tasks/cancel, before anything was submitted
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def status(self) -> TaskStatus:
        return "input_required" if self.requests and not self.done else "working"

    def touch(self) -> None:
        self.updated_at = time.time()
        self.changed.set()
        self.changed = anyio.Event()


# The exchange of the submit running now, if its caller can take questions (a task-declaring 2026-07-28 client).
_current: contextvars.ContextVar[InputExchange | None] = contextvars.ContextVar("task_input", default=None)


def input_exchange() -> InputExchange | None:
    """The submit path's hook: None when no task can carry a question (ask the old way, or refuse)."""
    return _current.get()


class InputExchange:
    """The questions of one submit, answered through `tasks/update` (keys unique for the task's lifetime)."""

    def __init__(self, task: InputTask, *, timeout: float) -> None:
        self.task = task
        self._timeout = timeout
        self.asked = anyio.Event()

    def bind(self) -> contextvars.Token[InputExchange | None]:
        return _current.set(self)

    async def ask(self, key: str, request: Mapping[str, Any]) -> Any:
        """Put the task in `input_required` with `request` (an MRTR input request, e.g. an `elicitation/create`
        request) under `key`, and return the client's response. TimeoutError when no answer comes in time."""
        task = self.task
        if key in task.requests or key in task.answered:
            raise ValueError(f"input key {key!r} was used already in task {task.task_id}")
        task.requests[key] = dict(request)
        task.touch()
        self.asked.set()
        try:
            with anyio.fail_after(self._timeout):
                while key not in task.responses:
                    await task.changed.wait()
        finally:
            task.requests.pop(key, None)
            task.answered.add(key)
            task.touch()
        return task.responses.pop(key)


def answer_inputs(task: InputTask, responses: Mapping[str, Any]) -> int:
    """Deliver `tasks/update` responses; keys not outstanding are ignored (as the spec asks). Returns how many
    were taken."""
    taken = 0
    for key, response in responses.items():
        if key in task.requests and key not in task.responses:
            task.responses[key] = response
            taken += 1
    if taken:
        task.touch()
    return taken


class InputTasks:
    """This process's input tasks, the most recent `capacity` kept (a finished one only maps to its job)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._tasks: OrderedDict[str, InputTask] = OrderedDict()

    def add(self, task: InputTask) -> None:
        self._tasks[task.task_id] = task
        while len(self._tasks) > self._capacity:
            self._tasks.popitem(last=False)

    def get(self, task_id: str) -> InputTask | None:
        return self._tasks.get(task_id)
