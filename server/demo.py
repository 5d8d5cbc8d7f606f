"""`fal-queue-mcp demo`: a short scripted MCP session over stdio against `fal-queue-mcp --sandbox`.

It is what an assistant does: submit the Kling example, watch the status change, fetch the result.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
SEED_INPUT = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
}
POLL_SECONDS = 1.0
DEMO_TIMEOUT_SECONDS = 60


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
            last = ""
            started = time.monotonic()
            while True:
                status = await _call(client, "get_fal_status", {"request_id": request_id})
                line = status["status"] + (f": {status['logs'][-1]}" if status["logs"] else "")
                if line != last:
                    _say(f"  [{time.monotonic() - started:4.1f}s] {line}")
                    last = line
                if status["status"] == "COMPLETED":
                    break
                await anyio.sleep(POLL_SECONDS)
            result = await _call(client, "get_fal_result", {"request_id": request_id})
            _say("get_fal_result:")
            _say(json.dumps(result["output"], indent=2))
            for media in result["media"]:
                _say(f"  media: {media['url']} ({media['content_type']})")
    return 0


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    answer = await client.call_tool(tool, arguments)
    if answer.is_error or answer.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in answer.content)
        raise SystemExit(f"{tool} failed: {text}")
    structured: dict[str, Any] = answer.structured_content
    return structured


def _say(text: str) -> None:
    print(text, flush=True)
