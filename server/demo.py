"""`fal-queue-mcp demo`: a short scripted MCP session over stdio against `fal-queue-mcp --sandbox`.

It does what an assistant does: list the tools, submit the Kling example through fal's queue, wait for it with
get_fal_result(wait_seconds=..., download=true) while the server's progress notifications drive a live bar, and
save the video; then the same two calls for a text-to-video job on UniAPI's native Kling route (the model id picks
the route). The sandbox's media URLs die with it, so the demo prints the saved files' paths instead.

No `rich`: one bar redrawn in place is a few lines here, while rich would add a dependency of every install
(13 MB with pygments and markdown-it) and 0.1-0.3 s of imports (measured for `rich.progress`) for one command.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import anyio
import platformdirs
from mcp import Client, StdioServerParameters

from server.stdio_pipes import READER_GONE, stdout_gone

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
SEED_INPUT = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
}
# The same kind of job on UniAPI's native Kling route, beside the fal one: same tools, Kling's own fields.
NATIVE_MODEL = "kling/v1/videos/text2video"
NATIVE_INPUT = {"prompt": "A paper boat drifts down a rainy street", "duration": "5"}
# The demo sets the sandbox job's timing, so its bar can fill against the job itself.
QUEUE_SECONDS = 1.0
RUN_SECONDS = 4.0
WAIT_SECONDS = 30
DEMO_TIMEOUT_SECONDS = 90
BAR_WIDTH = 30
INTERRUPTED = 130


def run_demo() -> int:
    signal.signal(signal.SIGINT, _interrupted)
    code = 0
    try:
        code = anyio.run(_demo)
    except* READER_GONE:
        stdout_gone()  # `demo | head`: the reader has what it wanted; leaving the session ended the server
    return code


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C ends the demo at once: it holds nothing worth a shutdown. The Ctrl-C reaches the demo alone (the SDK
    starts the server in a session of its own, out of the terminal's process group); the server then sees its stdin
    close, or its next write find no reader, and ends quietly (tests/test_cli.py checks both)."""
    sys.stdout.flush()
    print("\ndemo interrupted", file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


def server_parameters() -> StdioServerParameters:
    """The server as a child process. `-P`: the current folder is not put on the import path, so a `server.py` or
    `tools/` of the user's own cannot hide the installed package."""
    args = ["-P", "-m", "server", "--sandbox"]
    args += ["--sandbox-queue-seconds", str(QUEUE_SECONDS), "--sandbox-run-seconds", str(RUN_SECONDS)]
    # Only where to save files and where state lives are passed on (the child gets a minimal environment otherwise,
    # and no key).
    env = {name: os.environ[name] for name in ("FAL_MCP_DOWNLOAD_DIR", "FAL_MCP_STATE_DIR") if os.environ.get(name)}
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def download_folder() -> Path:
    """Where the server saves the demo's video: FAL_MCP_DOWNLOAD_DIR, else its default (tools/saving.py), which
    the demo may not import (tests/test_cli.py checks the two agree)."""
    chosen = os.environ.get("FAL_MCP_DOWNLOAD_DIR", "").strip()
    return Path(chosen) if chosen else platformdirs.user_downloads_path() / "fal-queue-mcp"


async def _demo() -> int:
    _say("fal-queue-mcp demo: a scripted MCP session against the local sandbox (no key, no network, no cost)")
    _say(f"It saves the small sample videos it makes in {download_folder()} (FAL_MCP_DOWNLOAD_DIR: elsewhere).\n")
    with anyio.fail_after(DEMO_TIMEOUT_SECONDS):
        async with Client(server_parameters()) as client:
            tools = (await client.list_tools()).tools
            _say(f"Connected to the sandbox server. {len(tools)} tools:")
            width = max(len(tool.name) for tool in tools)
            for tool in tools:
                _say(f"  {tool.name:<{width}}  {tool.title or ''}")

            _say("\nA job on fal's queue (UniAPI's FalAI route):")
            if not await _run_job(client, 1, SEED_MODEL, SEED_INPUT):
                return 1
            _say("\nA job on UniAPI's native Kling route, through the same tools:")
            if not await _run_job(client, 3, NATIVE_MODEL, NATIVE_INPUT):
                return 1
    _say(
        "\nNext: add the server to your MCP client with your key, e.g. for Claude Code:\n"
        "  claude mcp add fal-queue --env UNIAPI_KEY=<your UniAPI token> -- fal-queue-mcp\n"
        "Claude Desktop, Cursor and the others: see the README, 'Use it from your client'."
    )
    return 0


async def _run_job(client: Client, step: int, model: str, model_input: dict[str, Any]) -> bool:
    """Steps `step` and `step + 1`: submit one job, then wait for it and save its media. False: it did not finish."""
    _say(f"{step}. submit_fal_job  model={model}")
    _say(f"   input={json.dumps(model_input)}")
    submitted = await _call(client, "submit_fal_job", {"model": model, "input": model_input})
    request_id = submitted["request_id"]
    _say(f"   -> request_id {request_id}, {submitted['status']}")
    if (estimate := submitted.get("cost_estimate")) is not None:
        _say(f"   estimate: {describe_estimate(estimate)}")
    else:  # the sandbox prices fal models only, as fal's pricing API does; UniAPI's own rates go in FAL_MCP_PRICES
        _say("   estimate: none (no price is known for this model; FAL_MCP_PRICES can give one)")

    _say(f"\n{step + 1}. get_fal_result  wait_seconds={WAIT_SECONDS} download=true")
    bar = ProgressBar(sys.stdout, expected_seconds=QUEUE_SECONDS + RUN_SECONDS)
    arguments = {"request_id": request_id, "wait_seconds": WAIT_SECONDS, "download": True}
    result = await _call(client, "get_fal_result", arguments, progress=bar.update)
    bar.finish("COMPLETED" if result["done"] else "still running")
    if not result["done"]:
        _say(f"   {result['next']}")
        return False
    _say("   output: " + json.dumps(result.get("output"), indent=2).replace("\n", "\n   "))
    if (cost := result.get("cost")) is not None:
        _say(f"   cost: ${cost['usd']:g} ({cost['kind']}; the sandbox's own prices, nothing is paid)")
    for saved in result.get("downloads", []):
        _say(f"   saved: {saved['path']} ({saved['size']} bytes; kept: the sandbox's URLs end with the demo)")
    for problem in result.get("download_problems", []):
        _say(f"   not saved: {problem}")
    return True


class ProgressBar:
    """A bar redrawn in place on a terminal (plain lines, one per change, when piped). It fills against the job's
    expected duration, never quite full until the result is in."""

    def __init__(self, out: TextIO, expected_seconds: float) -> None:
        self._out = out
        self._live = out.isatty()
        self._expected = expected_seconds
        self._started = time.monotonic()
        self._last = ""

    async def update(self, progress: float, total: float | None, message: str | None) -> None:
        text = message or ""
        if self._live:
            fraction = min((time.monotonic() - self._started) / self._expected, 0.99)
            self._draw(fraction, text)
        elif text != self._last:
            self._out.write(f"   {text}\n")
            self._out.flush()
        self._last = text

    def finish(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        if self._live:
            self._draw(1.0 if text == "COMPLETED" else 0.0, "")
            self._out.write("\n")
        self._out.write(f"   -> {text} after {elapsed:.1f} s\n")
        self._out.flush()

    def _draw(self, fraction: float, text: str) -> None:
        filled = int(BAR_WIDTH * fraction)
        self._out.write(f"\r   [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} {text[:60]:<60}")
        self._out.flush()


async def _call(client: Client, tool: str, arguments: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    answer = await client.call_tool(tool, arguments, progress_callback=progress)
    if answer.is_error or answer.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in answer.content)
        raise SystemExit(f"{tool} failed: {text}")
    structured: dict[str, Any] = answer.structured_content
    return structured


def describe_estimate(estimate: dict[str, Any]) -> str:
    """A submit's cost_estimate in words: '$0.25 (5 seconds at $0.05 a second; fal pricing API)'."""
    quantity, unit = estimate["quantity"], estimate["unit"]
    dollars = "$" if estimate.get("usd") is not None else ""  # None: priced in another currency
    amount = f"${estimate['usd']:g}" if dollars else "not in USD"
    units = f"{quantity:g} {unit}{'' if quantity == 1 else 's'}"
    return f"{amount} ({units} at {dollars}{estimate['unit_price']:g} a {unit}; {estimate['source']})"


def _say(text: str) -> None:
    print(text, flush=True)
