"""Helpers shared by the tests: the seed example, settings for a sandbox, an in-memory client."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
from mcp import Client

from server.app import create_server
from server.sandbox import Sandbox
from server.settings import Settings

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
# UniAPI's own example body: `aspect_ratio` is not in fal's schema and must pass through unchanged.
SEED_INPUT: dict[str, Any] = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
    "aspect_ratio": "16:9",
}
TOOLS_LIST_LIMIT_BYTES = 16384  # what an assistant's context pays for the tools, every conversation
_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A fresh folder for a helper that has no `tmp_path` at hand; all of them go at the end of the session
    (tests/conftest.py), which checks that the run left nothing else behind."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _SCRATCH.append(folder)
    return folder


def remove_scratch_dirs() -> None:
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def make_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "fal",
        "base_url": sandbox.base_url,
        "fal_key": sandbox.config.key,
        # generous: a loaded machine answers slowly, and a test that means to time out sets its own
        "retry_deadline": 5.0,
        "request_timeout": 10.0,
        "submit_timeout": 10.0,
        # each server gets a ledger of its own; the watcher is tested on its own (it adds upstream requests)
        "state_dir": scratch_dir("fal-mcp-test-"),
        "watch_jobs": False,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


def native_settings(base_url: str, key: str, state: Path | None = None, **overrides: Any) -> Settings:
    """Settings for UniAPI's native Kling and Luma routes at `base_url`: quick polls, generous timeouts, a fresh ledger
    unless `state` names one (a restart)."""
    values: dict[str, Any] = {
        "provider": "uniapi",
        "base_url": base_url,
        "uniapi_key": key,
        "state_dir": state or scratch_dir("fal-mcp-native-"),
        "download_dir": scratch_dir("fal-mcp-native-dl-"),
        "watch_jobs": False,
        "poll_first_interval": 0.2,
        "poll_max_interval": 0.4,
        "retry_deadline": 5.0,
        "request_timeout": 10.0,
        "submit_timeout": 10.0,
    }
    return Settings.from_env({}, **(values | overrides))


async def finish_job(client: Any, request_id: str) -> Any:
    """The finished job's get_fal_result answer, asked again while it is not done (each ask waits up to 20 s)."""
    for _ in range(10):
        result = await client.call_tool("get_fal_result", {"request_id": request_id, "wait_seconds": 20})
        assert not result.is_error, text_of(result)
        if result.structured_content["done"]:
            return result
    raise AssertionError("the job did not finish")


class CheckedClient:
    """An in-memory client that also checks every structured answer against the tool's published outputSchema,
    as a stdio client does (the in-memory transport skips that check)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._schemas: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not self._schemas:
            listed = await self._client.list_tools()
            self._schemas = {tool.name: _validator(tool.output_schema) for tool in listed.tools}
        result = await self._client.call_tool(name, arguments, **kwargs)
        if not result.is_error and self._schemas.get(name) is not None:
            self._schemas[name].validate(result.structured_content)
        return result


def _validator(schema: dict[str, Any] | None) -> Any:
    """What `jsonschema.validate` checks, with the schema itself checked once rather than on every call (that
    check cost more than the call)."""
    if schema is None:
        return None
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Any]:
    async with Client(create_server(settings)) as client:
        yield CheckedClient(client)


async def tools_list_wire(client: Any) -> str:
    """The `tools/list` answer as compact JSON, the size a client receives (and an assistant's context pays)."""
    listed = await client.list_tools()
    return json.dumps(listed.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))


ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any key or server setting (so a developer's own never leaks in), with
    the project importable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_", "UNIAPI_"))}
    return env | {"PYTHONPATH": str(ROOT)} | extra


def server_env(sandbox: Sandbox, state_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a `python -m server` subprocess using the sandbox through UniAPI, with its own ledger."""
    state = state_dir if state_dir is not None else scratch_dir("fal-mcp-stdio-")
    return clean_env(
        UNIAPI_KEY=sandbox.config.key,
        FAL_MCP_BASE_URL=sandbox.base_url,
        FAL_MCP_STATE_DIR=str(state),
        **extra,
    )


def jsonrpc_line(message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


INITIALIZED: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def initialize_request(client_name: str, request_id: int = 1) -> dict[str, Any]:
    """The `initialize` request a raw JSON-RPC client sends first (followed by INITIALIZED)."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": client_name, "version": "0"},
        },
    }


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)
