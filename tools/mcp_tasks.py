"""MCP tasks (the `io.modelcontextprotocol/tasks` extension of protocol 2026-07-28): a generation as a task.

Through the SDK's `Extension` seam only:
- advertised under `capabilities.extensions`;
- `tools/call` of submit_fal_job, from a 2026-07-28 client that declares the extension on that request, is answered
  with a task (`resultType: "task"`) once its job is recorded in the ledger. Any other call, client or protocol
  version gets today's answer, untouched. Tasks are offered only while the watcher runs: it, not the client's
  polling, follows the job and keeps its result;
- `tasks/get`, `tasks/update`, `tasks/cancel`, answered from the ledger (see `tools.tasks` for the mapping), so any
  instance answers, after a restart and over stateless HTTP alike;
- `subscriptions/listen` with `notifications.taskIds`: `notifications/tasks` carrying the task as `tasks/get`
  would answer it, fed by the job changes that feed the pushed job updates (`tools.mcp_updates`), whichever
  instance made them. A listen without task ids is the SDK's own handler, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import anyio.abc
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.server import require_client_extension
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, ServerEvent, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, event_matches, event_to_notification
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    CallToolRequestParams,
    CallToolResult,
    RequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    TextContent,
)
from pydantic import BaseModel, Field

from server.errors import FalError, JobFailedError
from server.jobs.keeping import FINISHED
from tools.mcp_updates import _add_request_handler, job_uri
from tools.tasks import (
    TASK_CANCELLED_REASON,
    InputExchange,
    InputTask,
    InputTasks,
    PollSchedule,
    TaskIdError,
    TaskState,
    answer_inputs,
    iso,
    job_task_state,
    new_input_task_id,
    parse_task_id,
)

if TYPE_CHECKING:
    from server.jobs.ledger import JobRow
    from server.runtime import Runtime

log = logging.getLogger(__name__)

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASKS_PROTOCOL = "2026-07-28"  # the extension is not defined at 2025-11-25 (SEP-2663)
TASK_TOOLS = frozenset({"submit_fal_job"})  # the calls that start long work
INPUT_POLL_INTERVAL_MS = 1000  # a task waiting on the client's own answer: nothing upstream to spare, poll briskly


ListenCall = Callable[
    [ServerRequestContext[Any, Any], SubscriptionsListenRequestParams], Awaitable[SubscriptionsListenResult]
]


class TaskParams(RequestParams):
    task_id: object = Field(alias="taskId")  # checked by `parse_task_id`, which says what a task id looks like


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


class TaskNotification(BaseModel):
    """`notifications/tasks` (the SDK's notification union does not know it; `send_notification` only dumps it)."""

    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: dict[str, Any]


class TasksExtension(Extension):
    identifier = TASKS_EXTENSION

    def __init__(
        self,
        bus: SubscriptionBus,
        *,
        plain_listen: ListenCall | None = None,
        check_listen: Callable[[SubscriptionsListenRequestParams], None] | None = None,
        max_input_tasks: int,
        max_listen_task_ids: int,
    ) -> None:
        self._bus = bus
        # A listen without taskIds: the SDK's handler, or whatever wraps it (tools.mcp_updates bounds it).
        self._plain_listen: ListenCall = plain_listen if plain_listen is not None else ListenHandler(bus)
        self._check_listen = check_listen
        self._inputs = InputTasks(max_input_tasks)
        self._runs: dict[str, anyio.CancelScope] = {}  # input tasks' submits still running, by task id
        self._max_listen_task_ids = max_listen_task_ids
        self._group: anyio.abc.TaskGroup | None = None

    def methods(self) -> list[MethodBinding]:
        versions = frozenset({TASKS_PROTOCOL})
        return [
            MethodBinding("tasks/get", TaskParams, self._get, protocol_versions=versions),
            MethodBinding("tasks/update", TaskUpdateParams, self._update, protocol_versions=versions),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, protocol_versions=versions),
        ]

    async def run(self) -> None:
        """Hold the task group that submits waiting for the person's answer run in (started by the lifespan)."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                await anyio.sleep_forever()
            finally:
                self._group = None

    # ---- tools/call --------------------------------------------------------------------------------------------

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or not _offered(ctx) or self._group is None:
            return await call_next(ctx)
        rt = _runtime(ctx)
        task = InputTask(new_input_task_id())
        exchange = InputExchange(task, timeout=rt.settings.task_input_seconds)
        finished = anyio.Event()
        outcome: dict[str, Any] = {}
        scope = anyio.CancelScope()

        async def run() -> None:
            # In the extension's group, not the request's: a submit that asks the person outlives this request.
            exchange.bind()
            try:
                with scope:
                    outcome["result"] = await call_next(ctx)
            except Exception as exc:  # handed to the request while it waits, else settled into the task
                outcome["error"] = exc
            finally:
                finished.set()
                self._runs.pop(task.task_id, None)
                await self._settle(rt, task, outcome, cancelled=scope.cancel_called)

        self._runs[task.task_id] = scope
        self._group.start_soon(run)
        handed_off = False
        try:
            await _first(finished, exchange.asked)
            if finished.is_set():
                if "error" in outcome:
                    raise outcome["error"]
                result: HandlerResult = outcome.get("result")
                return await self._created(rt, result)
            handed_off = True
            self._inputs.add(task)
            return {"resultType": "task", **self._input_task_wire(task, detailed=False)}
        finally:
            if not handed_off and not finished.is_set():
                scope.cancel()  # the request was cancelled before the submit asked anything: so is the submit

    async def _created(self, rt: Runtime, result: HandlerResult) -> HandlerResult:
        """The task of the job a submit just recorded; the submit's own answer when it started none."""
        request_id = _submitted_request_id(result)
        if request_id is None:
            return result  # refused before anything was submitted: the plain error answer says why
        row = await rt.jobs.get(request_id)  # durably created: a tasks/get for it resolves from now on
        if row is None:
            return result
        return {"resultType": "task", **_task_wire(self._state(rt, row))}

    async def _settle(self, rt: Runtime, task: InputTask, outcome: dict[str, Any], *, cancelled: bool) -> None:
        """An input task's submit has ended: it maps to its job now, or ends with the submit's own answer."""
        result = outcome.get("result")
        task.request_id = _submitted_request_id(result)
        if task.request_id is None:
            if cancelled:
                result = _error_result("The task was cancelled before anything was submitted; nothing was started.")
            elif "error" in outcome or not isinstance(result, CallToolResult):
                error = outcome.get("error")
                if isinstance(error, TimeoutError):
                    text = "No answer came in time (FAL_MCP_TASK_INPUT_SECONDS), so nothing was submitted."
                else:
                    text = f"The submit failed before anything was started ({type(error).__name__}); try again."
                result = _error_result(text)
            task.final = result
        task.cancelled = cancelled and task.request_id is None
        task.done = True
        task.touch()
        await self._bus.publish(ResourceUpdated(uri=_input_uri(task.task_id)))  # for listeners to this task

    # ---- tasks/get, tasks/update, tasks/cancel -----------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)  # -32021 for a request not declaring it (SEP-2575)
        return {"resultType": "complete", **await self.detailed(_runtime(ctx), _parse(params.task_id))}

    async def detailed(self, rt: Runtime, parsed: tuple[str, str]) -> dict[str, Any]:
        """The task as `tasks/get` and `notifications/tasks` carry it (a completed one with its result)."""
        kind, key = parsed
        if kind == "input":
            task = self._input_task(key)
            if task.request_id is None:
                return self._input_task_wire(task, detailed=True)
            row = await self._row(rt, task.request_id)
            wire = await self._job_wire(rt, row)
            return {**wire, "taskId": task.task_id, "createdAt": iso(task.created_at)}
        return await self._job_wire(rt, await self._row(rt, key))

    async def _job_wire(self, rt: Runtime, row: JobRow) -> dict[str, Any]:
        wire = _task_wire(self._state(rt, row))
        if wire["status"] == "completed":
            from tools import follow
            from tools.mcp_tools import answer_of

            # Exactly get_fal_result's answer for the kept outcome (no upstream request): structured content,
            # resource links; a failed or cancelled generation is its error answer.
            wire["result"] = _dump(await answer_of(rt, lambda: follow.kept_result(row)))
        return wire

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)
        kind, key = _parse(params.task_id)
        if kind == "input":
            answer_inputs(self._input_task(key), params.input_responses)
        else:
            await self._row(_runtime(ctx), key)  # a job's task asks nothing: responses are ignored, as the spec says
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION)
        rt = _runtime(ctx)
        kind, key = _parse(params.task_id)
        if kind == "input":
            task = self._input_task(key)
            if task.request_id is None:
                scope = self._runs.get(task.task_id)
                if scope is not None:
                    scope.cancel()  # nothing was submitted yet: nothing is started
                return {"resultType": "complete"}
            key = task.request_id
        row = await self._row(rt, key)
        if row.state in FINISHED:
            return {"resultType": "complete"}  # too late: the task keeps its outcome
        from tools import follow

        try:
            answer = await follow.cancel(rt, key, None)
        except FalError as exc:
            raise MCPError(
                INVALID_REQUEST, f"{exc} The task was not cancelled and keeps running; tasks/get follows it."
            ) from None
        if answer.outcome == "requested":
            # Recorded at once, for good: the task reads cancelled from now on, on every instance.
            await rt.jobs.keep_failure(key, JobFailedError(TASK_CANCELLED_REASON, error_type="cancelled"))
        return {"resultType": "complete"}

    # ---- reading -----------------------------------------------------------------------------------------------

    def _state(self, rt: Runtime, row: JobRow) -> TaskState:
        from tools import follow

        settings = rt.settings
        schedule = PollSchedule(settings.watch_first_interval, settings.watch_max_interval)
        assert row.request_id is not None
        return job_task_state(row, schedule=schedule, latest_log=follow.latest_log(rt, row.request_id))

    async def _row(self, rt: Runtime, request_id: str) -> JobRow:
        row = await rt.jobs.get(request_id)
        if row is None or row.request_id is None:
            raise MCPError(
                INVALID_PARAMS,
                f"No task job.{request_id} is known here: no job with that request id is recorded in this server's "
                "ledger. Check the taskId (as the submit_fal_job task returned it).",
            )
        return row

    def _input_task(self, task_id: str) -> InputTask:
        task = self._inputs.get(task_id)
        if task is None:
            raise MCPError(
                INVALID_PARAMS,
                f"No task {task_id} is known here. A task waiting for an answer before its submit lives in the server "
                "instance that created it (send the Mcp-Name header so it is routed there); nothing was submitted "
                "for it. Call submit_fal_job again if it was lost.",
            )
        return task

    def _input_task_wire(self, task: InputTask, *, detailed: bool) -> dict[str, Any]:
        status = "cancelled" if task.cancelled else "completed" if task.done else task.status
        wire: dict[str, Any] = {
            "taskId": task.task_id,
            "status": status,
            "createdAt": iso(task.created_at),
            "lastUpdatedAt": iso(task.updated_at),
            "ttlMs": None,
        }
        if status == "input_required":
            wire["statusMessage"] = "Waiting for your answer before anything is submitted."
            if detailed:
                wire["inputRequests"] = dict(task.requests)
        if status in ("working", "input_required"):
            wire["pollIntervalMs"] = INPUT_POLL_INTERVAL_MS
        if status == "completed" and detailed and isinstance(task.final, CallToolResult):
            wire["result"] = _dump(task.final)
        return wire

    # ---- subscriptions/listen with taskIds ---------------------------------------------------------------------

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """`subscriptions/listen`: the SDK's own handler, unless the filter names tasks (`taskIds`); then this
        stream also carries `notifications/tasks` for them, each the task as `tasks/get` answers it."""
        requested = params.notifications.model_extra or {}
        if "taskIds" not in requested:
            return await self._plain_listen(ctx, params)
        require_client_extension(ctx, TASKS_EXTENSION)  # -32021 with the extension named, as the spec asks
        if self._check_listen is not None:
            self._check_listen(params)
        task_ids = requested["taskIds"]
        if not isinstance(task_ids, list) or len(task_ids) > self._max_listen_task_ids:
            raise MCPError(
                INVALID_PARAMS,
                f"notifications.taskIds must be a list of at most {self._max_listen_task_ids} task ids "
                "(FAL_MCP_MAX_SUBSCRIPTIONS).",
            )
        parsed = {task_id: _parse(task_id) for task_id in task_ids}
        rt = _runtime(ctx)
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        honored = _honored(params.notifications, list(parsed))
        uris = frozenset(honored.resource_subscriptions or ())
        watched = {_watch_uri(kind, key): task_id for task_id, (kind, key) in parsed.items()}
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        send, receive = anyio.create_memory_object_stream[ServerEvent | str](LISTEN_BUFFER)

        def deliver(event: ServerEvent) -> None:
            wanted: list[ServerEvent | str] = []
            if isinstance(event, ResourceUpdated) and event.uri in watched:
                wanted.append(watched[event.uri])
            if event_matches(honored, uris, event):
                wanted.append(event)
            for item in wanted:
                try:
                    send.send_nowait(item)
                except (anyio.WouldBlock, anyio.ClosedResourceError):
                    log.warning("task listen stream %r fell behind; ending it", subscription_id)
                    send.close()

        unsubscribe = self._bus.subscribe(deliver)
        try:
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
                ),
                related_request_id=subscription_id,
            )
            for task_id in parsed:  # where each task stands now: a change made before this stream is not missed
                send.send_nowait(task_id)
            async for item in receive:
                if isinstance(item, str):
                    await self._notify_task(rt, ctx, item, parsed[item], meta)
                else:
                    notification = event_to_notification(item, meta)
                    await ctx.session.send_notification(notification, related_request_id=subscription_id)
        finally:
            unsubscribe()
            send.close()
            receive.close()
        return SubscriptionsListenResult(_meta=meta)

    async def _notify_task(
        self,
        rt: Runtime,
        ctx: ServerRequestContext[Any, Any],
        task_id: str,
        parsed: tuple[str, str],
        meta: dict[str, Any],
    ) -> None:
        try:
            task = await self.detailed(rt, parsed)
        except MCPError:
            return  # not (yet) known here: nothing to tell
        note = TaskNotification(params={**task, "_meta": meta})
        await ctx.session.send_notification(cast(Any, note), related_request_id=ctx.request_id)


LISTEN_BUFFER = 1024  # events one task listen stream holds unsent, as the SDK's own listen streams do


# ---- helpers -------------------------------------------------------------------------------------------------


def _offered(ctx: ServerRequestContext[Any, Any]) -> bool:
    """A task only for a 2026-07-28 request declaring the extension, on a server whose watcher follows jobs."""
    if ctx.protocol_version != TASKS_PROTOCOL:
        return False
    try:
        require_client_extension(ctx, TASKS_EXTENSION)
    except MCPError:
        return False
    rt = _runtime(ctx)
    return rt.settings.watch_jobs and rt.config_error is None


def _runtime(ctx: ServerRequestContext[Any, Any]) -> Runtime:
    return cast("Runtime", ctx.lifespan_context)


def _parse(task_id: object) -> tuple[Literal["job", "input"], str]:
    try:
        return parse_task_id(task_id)
    except TaskIdError as exc:
        raise MCPError(INVALID_PARAMS, str(exc)) from None


def _watch_uri(kind: str, key: str) -> str:
    return job_uri(key) if kind == "job" else _input_uri(key)


def _input_uri(task_id: str) -> str:
    return f"fal://tasks/{task_id}"  # an input task's changes, on the bus only (never listed as a resource)


def _submitted_request_id(result: object) -> str | None:
    if isinstance(result, CallToolResult) and not result.is_error and isinstance(result.structured_content, dict):
        request_id = result.structured_content.get("request_id")
        return request_id if isinstance(request_id, str) else None
    return None


def _task_wire(state: TaskState) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "taskId": state.task_id,
        "status": state.status,
        "createdAt": iso(state.created_at),
        "lastUpdatedAt": iso(state.last_updated_at),
        "ttlMs": state.ttl_ms,
    }
    if state.status_message:
        wire["statusMessage"] = state.status_message
    if state.poll_interval_ms is not None:
        wire["pollIntervalMs"] = state.poll_interval_ms
    return wire


def _dump(result: CallToolResult) -> dict[str, Any]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _honored(requested: SubscriptionFilter, task_ids: list[str]) -> SubscriptionFilter:
    """What the acknowledgement echoes: the kinds the SDK's own streams honor, and the tasks."""
    return SubscriptionFilter(
        tools_list_changed=True if requested.tools_list_changed else None,
        prompts_list_changed=True if requested.prompts_list_changed else None,
        resources_list_changed=True if requested.resources_list_changed else None,
        resource_subscriptions=list(requested.resource_subscriptions) if requested.resource_subscriptions else None,
        taskIds=task_ids,
    )


async def _first(*events: anyio.Event) -> None:
    """Until any of `events` is set."""
    async with anyio.create_task_group() as group:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            group.cancel_scope.cancel()

        for event in events:
            group.start_soon(wait, event)


def serve_listen(server: MCPServer[Any], tasks: TasksExtension) -> None:
    """Serve `subscriptions/listen` through `TasksExtension.listen` (the SDK's handler for any listen without
    `taskIds`). A spec method cannot be an extension's `MethodBinding`, so it is registered on the low-level
    server, as tools.mcp_updates registers resources/subscribe."""
    _add_request_handler(server, "subscriptions/listen", SubscriptionsListenRequestParams, tasks.listen)
