"""Argument completion (`completion/complete`): what a host suggests while the user fills in a prompt's arguments
or a resource template's variables.

- prompt `create_video`: `idea` (a few starters), `image_path` (image files and folders under FAL_MCP_FILE_ROOTS);
- `fal://models/{+endpoint_id}`: catalogued model ids by prefix, with or without the `fal-ai/` owner;
- `fal://jobs/{request_id}`: request ids of recorded jobs, newest first.

Anything else (another server's prompt, an unknown template) gets an empty completion. The SDK takes one handler
per server and gives it no Context, so the running server's runtime comes from `current()`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from server.runtime import Runtime
from server.settings import Settings

log = logging.getLogger(__name__)

MAX_VALUES = 100  # the protocol's cap on one completion's values
PROMPT = "create_video"
MODEL_TEMPLATE = "fal://models/{+endpoint_id}"  # exactly as the resource template is listed
JOB_TEMPLATE = "fal://jobs/{request_id}"
OWNER = "fal-ai/"

IDEAS = (
    "a cat slowly turns its head toward the camera and blinks, close-up",
    "waves rolling onto a beach at sunset, slow drone shot",
    "a rainy city street at night with neon reflections, tracking shot",
    "a paper boat drifting down a stream, macro shot",
    "a time-lapse of clouds rolling over mountains",
)
IMAGE_IDEAS = (  # when the user has chosen an image already: ideas that animate it
    "the scene comes alive with gentle natural motion, slow push-in",
    "the subject turns toward the camera and smiles",
    "a slow cinematic orbit around the subject",
)


def register_completion(server: MCPServer[Runtime], settings: Settings, current: Callable[[], Runtime]) -> None:
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        typed = argument.value
        if isinstance(ref, PromptReference) and ref.name == PROMPT:
            if argument.name == "idea":
                chosen = (context.arguments or {}) if context else {}
                return _completion(_by_prefix(IMAGE_IDEAS if chosen.get("image_path") else IDEAS, typed))
            if argument.name == "image_path":
                from server.files.browse import suggest_image_paths  # loaded on first use, not at start-up

                # in a worker thread: a folder on a slow disk must not hold up the event loop
                found = await anyio.to_thread.run_sync(
                    functools.partial(
                        suggest_image_paths, typed, roots=settings.file_roots, max_entries=settings.max_completion_scan
                    )
                )
                return _completion(found.values, complete=found.complete)
            raise MCPError(INVALID_PARAMS, f"{PROMPT} has no argument {argument.name!r}; it has idea and image_path.")
        if isinstance(ref, ResourceTemplateReference):
            if ref.uri == MODEL_TEMPLATE and argument.name == "endpoint_id":
                return _completion(_model_ids(typed))
            if ref.uri == JOB_TEMPLATE and argument.name == "request_id":
                return _completion(await _request_ids(current(), typed, settings.max_completion_scan))
        return None

    server.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is unannotated


def _completion(values: Sequence[str], *, complete: bool = True) -> Completion:
    """At most MAX_VALUES values; `total` only when it is known."""
    return Completion(
        values=list(values[:MAX_VALUES]),
        total=len(values) if complete else None,
        has_more=len(values) > MAX_VALUES or not complete,
    )


def _by_prefix(candidates: Sequence[str], typed: str) -> list[str]:
    wanted = typed.strip().lower()
    return [candidate for candidate in candidates if candidate.lower().startswith(wanted)]


def _model_ids(typed: str) -> list[str]:
    """Catalogued ids in the spelling being typed: 'fal-ai/kling...' (fal's) or 'kling...' (UniAPI's)."""
    from tools.catalog import CATALOG  # loaded on first use, not at start-up

    full = sorted(CATALOG)
    if not typed:
        return full
    short = [endpoint_id.removeprefix(OWNER) for endpoint_id in full]
    matches = _by_prefix(full, typed) + _by_prefix(short, typed)
    return list(dict.fromkeys(matches))


async def _request_ids(rt: Runtime, typed: str, scan: int) -> list[str]:
    """Request ids of the `scan` most recent jobs that start with `typed`, newest first. Only the ids are read: a
    job's row may hold a large input or result, and this runs on every keystroke."""
    from server.jobs.ledger import LedgerError

    try:
        request_ids = await rt.jobs.recent_request_ids(scan)
    except LedgerError as exc:  # a completion is a hint: no suggestions rather than an error
        log.warning("no request id suggestions: %s", exc)
        return []
    return _by_prefix(request_ids, typed)
