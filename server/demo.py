"""`fal-queue-mcp demo`: a short scripted MCP session over stdio against `fal-queue-mcp --sandbox`.

It does what an assistant does: submit the Kling example, wait for it with get_fal_result(wait_seconds=...)
while the server's progress notifications drive a live bar, then print the result.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
SEED_INPUT = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
}
WAIT_SECONDS = 30
DEMO_TIMEOUT_SECONDS = 90
BAR_WIDTH = 30


def run_demo() -> int:
    return anyio.run(_demo)


async def _demo() -> int:
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "--sandbox"])
    with anyio.fail_after(DEMO_TIMEOUT_SECONDS):
        async with Client(params) as client:
            tools = await client.list_tools()
            _say(f"Connected to the sandbox server; tools: {', '.join(t.name for t in tools.tools)}")
            _say(f"submit_fal_job {SEED_MODEL} {json.dumps(SEED_INPUT)}")
            submitted = await _call(client, "submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
            request_id = submitted["request_id"]
            _say(f"  -> request_id {request_id}, {submitted['status']}")
            _say(f"get_fal_result {request_id} wait_seconds={WAIT_SECONDS}")
            bar = ProgressBar(sys.stdout)
            result = await _call(
                client,
                "get_fal_result",
                {"request_id": request_id, "wait_seconds": WAIT_SECONDS},
                progress=bar.update,
            )
            bar.finish("COMPLETED" if result["done"] else "still running")
            _say(json.dumps(result.get("output"), indent=2))
            for media in result.get("media", []):
                _say(f"  media: {media['url']} ({media.get('content_type')})")
    return 0


class ProgressBar:
    """A one-line bar redrawn in place on a terminal; plain lines (one per change) when piped."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._live = out.isatty()
        self._last = ""

    async def update(self, progress: float, total: float | None, message: str | None) -> None:
        text = message or ""
        if self._live:
            filled = int(BAR_WIDTH * min(progress / total, 1.0)) if total else 0
            self._out.write(f"\r  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress:5.1f}s {text[:60]:<60}")
            self._out.flush()
        elif text != self._last:
            self._out.write(f"  [{progress:5.1f}s] {text}\n")
            self._out.flush()
        self._last = text

    def finish(self, text: str) -> None:
        if self._live:
            self._out.write("\n")
        self._out.write(f"  -> {text}\n")
        self._out.flush()


async def _call(client: Client, tool: str, arguments: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    answer = await client.call_tool(tool, arguments, progress_callback=progress)
    if answer.is_error or answer.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in answer.content)
        raise SystemExit(f"{tool} failed: {text}")
    structured: dict[str, Any] = answer.structured_content
    return structured


def _say(text: str) -> None:
    print(text, flush=True)
