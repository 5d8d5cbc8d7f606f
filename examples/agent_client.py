"""Use fal-queue-mcp from your own agent code with the official `mcp` client.

Runs against the sandbox (no key, no cost): `python examples/agent_client.py`. For real jobs drop `--sandbox`
and set UNIAPI_KEY (or FAL_KEY) in the environment; for a server started with `fal-queue-mcp --transport http`,
use `Client("http://127.0.0.1:8000/mcp")` instead.
"""

from __future__ import annotations

import sys

import anyio
from mcp import Client, StdioServerParameters

MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
INPUT = {
    "prompt": "A paper boat drifts down a rain-soaked street",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
}


async def make_video() -> str:
    # From your own code: StdioServerParameters(command="fal-queue-mcp"). This example runs the installed server
    # with this Python; -P keeps the current folder off the import path, so nothing there can hide the server.
    server = StdioServerParameters(command=sys.executable, args=["-P", "-m", "server", "--sandbox"])
    async with Client(server) as client:
        submitted = await client.call_tool("submit_fal_job", {"model": MODEL, "input": INPUT})
        request_id = submitted.structured_content["request_id"]
        while True:  # each call waits up to 50 s; a real video needs one to five of them
            result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 50})
            if result.is_error:
                raise RuntimeError(result.content[0].text)
            if result.structured_content["done"]:
                return str(result.structured_content["media"][0]["url"])


if __name__ == "__main__":
    print(anyio.run(make_video))
