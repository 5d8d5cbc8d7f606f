"""Raw 2026-07-28 JSON-RPC clients (every request carries its own `_meta` envelope), over a stdio subprocess and
over HTTP, for the tests of what a client that speaks the wire itself sees (MCP tasks)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx

from tests.stdio_session import StdioSession

MODERN = "2026-07-28"
TASKS = "io.modelcontextprotocol/tasks"


def envelope(*, declare: bool) -> dict[str, Any]:
    """The per-request `_meta` of a 2026-07-28 client, declaring the tasks extension or not."""
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-tasks-client", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}} if declare else {},
    }


def with_envelope(params: dict[str, Any] | None, declare: bool) -> dict[str, Any]:
    return {**(params or {}), "_meta": envelope(declare=declare)}


class RawStdio:
    """`python -m server` over stdio, spoken to in raw JSON-RPC lines."""

    def __init__(self, env: dict[str, str]) -> None:
        self.session = StdioSession(env)

    def request(self, method: str, params: dict[str, Any] | None = None, *, declare: bool = True) -> dict[str, Any]:
        return self.session.request(method, with_envelope(params, declare))

    def close(self) -> None:
        self.session.finish()


class RawHttp:
    """One POST per request (stateless streamable HTTP), with the SEP-2243 headers (`Mcp-Name` for tasks/*)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30)
        self._ids = itertools.count(1)

    def request(self, method: str, params: dict[str, Any] | None = None, *, declare: bool = True) -> dict[str, Any]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Mcp-Method": method,
            "MCP-Protocol-Version": MODERN,
        }
        name = (params or {}).get("taskId") or (params or {}).get("name")
        if isinstance(name, str):
            headers["Mcp-Name"] = name
        message = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": with_envelope(params, declare)}
        answer = self.http.post(self.url, json=message, headers=headers)
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            for line in answer.text.splitlines():
                if line.startswith("data:") and '"id"' in line:
                    found: dict[str, Any] = json.loads(line[5:])
                    if found.get("id") == message["id"]:
                        return found
            raise AssertionError(f"no answer in the event stream: {answer.text[:500]}")
        parsed: dict[str, Any] = answer.json()
        return parsed

    def close(self) -> None:
        self.http.close()
