"""The MCP face of the tools: names, titles, descriptions, annotations, and results.

Thin on purpose: each tool resolves the runtime, calls the work (`tools.submit`, `tools.follow`,
`tools.history`, `tools.uploads`, `tools.catalog.views`), and turns the answer into a
`CallToolResult` (structured content, a JSON text block, resource links) or a failure into an `isError`.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pydantic_core
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve, build_resolver_plans, find_resolved_parameters
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata, func_metadata
from mcp_types import CallToolResult, ContentBlock, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from server.errors import FalError, redact
from server.jobs.ledger.base import MAX_LIST_LIMIT, LedgerError
from server.runtime import Runtime
from server.settings import Settings
from server.upstream.ids import InvalidIdError
from tools.mcp_apps import VIEW_META
from tools.mcp_consent import SpendConsent, consent_of, spend_consent

if TYPE_CHECKING:
    from tools.follow import Progress

# The modules doing the work (catalog, ledger, HTTP clients) are imported on first use, inside each tool: the
# first `tools/list` answer needs none of them, and start-up time is what every client waits for. The answer models
# (tools.answers) are not imported at start-up either: each tool's published schemas are read from a file
# generated from them (see `published_schemas`).

log = logging.getLogger(__name__)
FEATURED_INPUTS = Path(__file__).parent / "catalog" / "featured_inputs.json"
TOOL_SCHEMAS = Path(__file__).with_name("tool_schemas.json")

# get_fal_result's published schema says the cap a server applies; tool_schemas.json carries the default one.
DEFAULT_MAX_WAIT_SECONDS: float = Settings.model_fields["max_wait_seconds"].default
RequestId = Annotated[str, Field(description="From submit_fal_job.")]
OptionalModel = Annotated[str | None, Field(description="Endpoint id; needed only for jobs not recorded here.")]


# The tools whose results the MCP Apps job view draws (see tools.mcp_apps).
VIEW_TOOLS = frozenset({"submit_fal_job", "get_fal_result", "list_fal_jobs"})

# For read-only tools the spec gives destructive/idempotent hints no meaning, so they are left out.
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True)
# The catalog and the ledger are local: reading them touches no outside system.
LOCAL_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def wait_description(cap: float) -> str:
    """wait_seconds's description: its real default, and the cap this server applies (FAL_MCP_MAX_WAIT_SECONDS)."""
    return f"Seconds to wait: default 0 (no wait), capped at {cap:g}."


def build_tools(max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS) -> list[Tool]:
    """The tools with compact published schemas (no generated titles), ready for `MCPServer(tools=...)`; the
    wait cap said in get_fal_result's schema is `max_wait_seconds`, the one the server applies."""
    schemas = json.loads(TOOL_SCHEMAS.read_text())
    schemas["get_fal_result"]["inputSchema"]["properties"]["wait_seconds"]["description"] = wait_description(
        max_wait_seconds
    )
    tools = [_tool(fn, title, annotations, schemas[fn.__name__]) for fn, title, annotations, _ in tool_specs()]
    for tool in tools:
        if tool.name in VIEW_TOOLS:
            tool.meta = VIEW_META  # hosts with MCP Apps show these tools' results in the job view
    _publish_featured_inputs(tools[0])
    return tools


def tool_specs() -> list[tuple[Callable[..., Any], str, ToolAnnotations, str]]:
    """Each tool's function, title, annotations and answer model (a class in tools.answers), in `tools/list` order."""
    return [
        (
            submit_fal_job,
            "Submit a fal generation job",
            ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True),
            "SubmitAnswer",
        ),
        (list_fal_models, "List the catalogued fal models", LOCAL_READ, "ModelList"),
        # Read-only, but its price may be asked of fal's pricing API.
        (describe_fal_model, "Describe a fal model's parameters", READ_ONLY, "ModelDescription"),
        (
            upload_fal_file,
            "Upload a local file for a model input",
            ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True),
            "UploadAnswer",
        ),
        (get_fal_status, "Check a fal job's status", READ_ONLY, "StatusAnswer"),
        # Not read-only: it keeps the result in the ledger and, with download=true, writes the media files.
        (
            get_fal_result,
            "Get a fal job's result",
            ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
            "ResultAnswer",
        ),
        (list_fal_jobs, "List recorded fal jobs", LOCAL_READ, "JobList"),
        (
            cancel_fal_job,
            "Cancel a fal job",
            ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True),
            "CancelAnswer",
        ),
    ]


def _publish_featured_inputs(submit: Tool) -> None:
    """Give submit_fal_job's `input` the typed schemas of the featured models, derived from the catalog."""
    arms, defs = featured_inputs()
    # additionalProperties said outright (compact drops it as the default): strict clients otherwise close the
    # object (pydantic-ai's OpenAI conversion sends `input` as {} then). Said as the schema {}, which means the same
    # as `true`: google-genai's converter reads it as a schema and crashes on a boolean.
    submit.parameters["properties"]["input"] = {
        **submit.parameters["properties"]["input"],
        "additionalProperties": {},
        "anyOf": arms,
    }
    submit.parameters["$defs"] = defs


def featured_inputs() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The featured models' input schemas, generated from the catalog into a file (`python -m tools.catalog.featured`)
    so start-up need not import the catalog; a test fails when the file and the catalog disagree."""
    data = json.loads(FEATURED_INPUTS.read_text())
    return data["anyOf"], data["$defs"]


def _tool(fn: Callable[..., Any], title: str, annotations: ToolAnnotations, schemas: dict[str, Any]) -> Tool:
    """The tool as `Tool.from_function` makes it, with its published schemas read from tool_schemas.json rather than
    derived again (the largest part of this server's own start-up). The argument model, which validates each call,
    is built on the tool's first call (see `ArgumentsOnFirstCall`). The output schema is published without an output
    model, so the SDK does not validate each answer again: `success` dumps it from an answer model that pydantic has
    just validated."""
    # Parameters the SDK fills by running a resolver first (submit's cost consent), never sent by the client.
    resolved = find_resolved_parameters(fn)
    plans = build_resolver_plans(resolved, set(schemas["inputSchema"]["properties"])) if resolved else {}
    metadata = ArgumentsOnFirstCall(
        arg_model=ArgModelBase, output_schema=schemas["outputSchema"], fn=fn, skip=["ctx", *resolved]
    )
    return Tool(
        fn=fn,
        name=fn.__name__,
        title=title,
        # One line: a line break costs two bytes in JSON ("\n") where a space costs one.
        description=" ".join((fn.__doc__ or "").split()),
        parameters=schemas["inputSchema"],
        fn_metadata=metadata,
        is_async=True,
        context_kwarg="ctx",
        annotations=annotations,
        resolved_params=dict(resolved),
        resolver_plans=plans,
    )


class ArgumentsOnFirstCall(FuncMetadata):
    """The SDK's `FuncMetadata`, whose argument model (a pydantic model made from the tool's signature: about 2 ms
    a tool, most of what eight tools add to a start) is made when the tool is first called, exactly as
    `Tool.from_function` makes it. Until then `arg_model` is the bare base class; the SDK reads it only to validate
    a call's arguments, here."""

    fn: Callable[..., Any] = Field(exclude=True)
    skip: list[str] = Field(exclude=True)  # the context and the resolved parameters: not the client's to send

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        if self.arg_model is ArgModelBase:
            self.arg_model = func_metadata(self.fn, skip_names=self.skip, structured_output=False).arg_model
        return super().validate_arguments(arguments_to_validate)


def published_schemas(fn: Callable[..., Any], answer: type[BaseModel]) -> dict[str, Any]:
    """A tool's schemas as tool_schemas.json keeps them (`python -m tools.tool_schemas` writes it): the input schema
    the SDK derives from its signature, and the output schema it derives from its answer model, compacted. Output
    fields are explained by each answer's `next` sentence, so their descriptions would only cost context; unset
    fields are left out of answers (see `success`), so the schema needs no `null` arms either."""
    from tools.schema import compact, without_descriptions

    derived = Tool.from_function(fn, structured_output=False)
    assert derived.context_kwarg == "ctx" and derived.is_async, fn.__name__
    output = FuncMetadata(arg_model=derived.fn_metadata.arg_model, output_model=answer).output_schema
    return {"inputSchema": compact(derived.parameters), "outputSchema": without_descriptions(compact(output))}


async def submit_fal_job(
    model: Annotated[
        str,
        Field(
            # the 'fal-ai/' prefix may be left out, but saying so is context paid for every turn, for nothing
            description="Model id: the path after the base URL, e.g. "
            "'fal-ai/kling-video/v2.1/standard/image-to-video', 'kling/v1/videos/text2video'."
        ),
    ],
    input: Annotated[
        dict[str, Any],
        Field(
            description="The model's parameters; send only the fields you set (fal's defaults apply to the rest). "
            "File fields (image_url, ...) also take a local file's path."
        ),
    ],
    ctx: Context[Runtime, Any],
    consent: Annotated[ElicitationResult[SpendConsent], Resolve(spend_consent)],
    dry_run: Annotated[bool, Field(description="Only check and price; send nothing.")] = False,
    max_cost_usd: Annotated[
        float | None, Field(ge=0, description="Refuse above this estimate (the user's agreed USD).")
    ] = None,
) -> CallToolResult:
    """Start a fal.ai video/image job; returns its request_id and cost estimate at once. The input is checked
    against the model's parameters first: an invalid one is refused, every wrong field named, before anything is
    paid for. Each call starts a new, billed job; then call get_fal_result with wait_seconds.
    """
    from tools import submit

    agreed = consent_of(consent)
    return await _answer(
        ctx,
        lambda: submit.submit(_runtime(ctx), model, input, dry_run=dry_run, max_cost_usd=max_cost_usd, consent=agreed),
    )


async def list_fal_models(
    ctx: Context[Runtime, Any],
    task: Annotated[
        str | None,
        Field(description="Filter, e.g. text-to-video, image-to-video, text-to-image."),
    ] = None,
    family: Annotated[
        str | None,
        Field(description="Filter: kling, veo, minimax-hailuo, luma-ray, wan, sora, flux, ...; or route fal, luma."),
    ] = None,
    query: Annotated[str | None, Field(description="Words that must all appear in the id or title.")] = None,
) -> CallToolResult:
    """List the catalogued fal models (validated before submit), featured first, with required fields and
    main options. Other fal endpoint ids can still be submitted, unvalidated.
    """
    from tools.catalog import views

    return await _answer(ctx, lambda: views.list_models(task, family, query))


async def describe_fal_model(
    model: Annotated[str, Field(description="Model id, e.g. 'fal-ai/veo3.1/fast/image-to-video', 'luma/generations'.")],
    ctx: Context[Runtime, Any],
) -> CallToolResult:
    """A catalogued model's input schema (types, enums, ranges, defaults), output schema and a minimal valid
    example input.
    """
    from tools.catalog import views

    return await _answer(ctx, lambda: views.describe_priced(_runtime(ctx), model))


async def upload_fal_file(
    path: Annotated[str, Field(description="Absolute path (or file:// URL) of a local image, video or audio file.")],
    ctx: Context[Runtime, Any],
) -> CallToolResult:
    """Turn a local image/video/audio file into a URL for a model's file field (image_url, ...): uploaded to fal
    storage with a fal key, else a size-capped data URI. submit_fal_job also accepts such paths directly.
    """
    from tools import uploads

    return await _answer(ctx, lambda: uploads.upload(_runtime(ctx), path))


async def list_fal_jobs(
    ctx: Context[Runtime, Any],
    status: Annotated[
        str | None,
        Field(description="Filter: submitted, completed, failed, cancelled, unknown, rejected or submitting."),
    ] = None,
    model: Annotated[str | None, Field(description="Filter: endpoint id.")] = None,
    since: Annotated[str | None, Field(description="Only jobs submitted since this ISO date/time.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT)] = 20,
) -> CallToolResult:
    """Jobs recorded by this server (kept across restarts), newest first, with status and media URLs. Check
    here before resubmitting.
    """
    from tools import history

    return await _answer(ctx, lambda: history.list_jobs(_runtime(ctx), status, model, since, limit))


async def get_fal_status(
    request_id: RequestId, ctx: Context[Runtime, Any], model: OptionalModel = None
) -> CallToolResult:
    """A job's status: IN_QUEUE (queue position), IN_PROGRESS (recent logs) or COMPLETED; outcome 'failed'
    when it completed with an error.
    """
    from tools import follow

    return await _answer(ctx, lambda: follow.status(_runtime(ctx), request_id, model))


async def get_fal_result(
    request_id: RequestId,
    ctx: Context[Runtime, Any],
    model: OptionalModel = None,
    wait_seconds: Annotated[
        float,
        Field(ge=0, description=wait_description(DEFAULT_MAX_WAIT_SECONDS)),
    ] = 0,
    download: Annotated[bool, Field(description="Also save the media files on this computer.")] = False,
) -> CallToolResult:
    """A job's output (media URLs and the model's fields). wait_seconds > 0 waits for it with progress. Still
    running is not an error: done is false, next says what to call. Failed or cancelled jobs are errors.
    """
    from tools import follow

    return await _answer(
        ctx,
        lambda: follow.result(
            _runtime(ctx), request_id, model, wait_seconds, progress=_progress_reporter(ctx), download=download
        ),
    )


async def cancel_fal_job(
    request_id: RequestId, ctx: Context[Runtime, Any], model: OptionalModel = None
) -> CallToolResult:
    """Cancel a queued or running job upstream (some providers, e.g. UniAPI, cannot: said plainly). Cancelling
    a get_fal_result wait does not cancel the job; this does.
    """
    from tools import follow

    return await _answer(ctx, lambda: follow.cancel(_runtime(ctx), request_id, model))


def _progress_reporter(ctx: Context[Runtime, Any]) -> Progress:
    """Progress notifications whose values only grow (seconds waited), each with a one-line status."""
    last = 0.0

    async def report(elapsed: float, total: float, message: str) -> None:
        nonlocal last
        last = round(max(elapsed, last + 0.01), 2)
        await ctx.report_progress(last, total, message)

    return report


def _runtime(ctx: Context[Runtime, Any]) -> Runtime:
    return ctx.request_context.lifespan_context


async def _answer(ctx: Context[Runtime, Any], work: Callable[[], BaseModel | Awaitable[BaseModel]]) -> CallToolResult:
    return await answer_of(_runtime(ctx), work)


async def answer_of(runtime: Runtime, work: Callable[[], BaseModel | Awaitable[BaseModel]]) -> CallToolResult:
    """Run one tool's work; an anticipated failure becomes an `isError` result, never a stack trace."""
    secrets = runtime.settings.secrets()
    try:
        runtime.check_config()
        outcome = work()
        answer = await outcome if inspect.isawaitable(outcome) else outcome
    # InputInvalidError is a FalError too; a LedgerError says what is wrong with the ledger and what to do
    except (FalError, InvalidIdError, LedgerError) as exc:
        text = str(exc)
        for secret in secrets:
            text = redact(text, secret)
        log.info("tool call refused or failed: %s", text)
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    return success(answer)


def success(answer: BaseModel) -> CallToolResult:
    structured = answer.model_dump(mode="json", exclude_none=True)
    # pydantic_core's encoder: json.dumps(ensure_ascii=False)'s JSON without the spaces, several times faster.
    content: list[ContentBlock] = [TextContent(type="text", text=pydantic_core.to_json(structured).decode())]
    for item in structured.get("media") or []:
        content.append(
            ResourceLink(
                type="resource_link",
                uri=item["url"],
                name=item["field"],
                mime_type=item.get("content_type"),
            )
        )
    return CallToolResult(content=content, structured_content=structured)
