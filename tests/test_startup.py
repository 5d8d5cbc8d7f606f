"""What a default start does and does not do: the tools' published schemas come from tools/tool_schemas.json, which
must say exactly what the SDK would derive from the tools' signatures and answer models; and a default stdio start
imports none of the heavy modules that only some calls, transports or backends need."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

import pytest
from mcp.server.mcpserver.resolve import find_resolved_parameters

from tests.helpers import INITIALIZED, clean_env, initialize_request, jsonrpc_line
from tools import answers
from tools.mcp_tools import TOOL_SCHEMAS, tool_specs
from tools.tool_schemas import render


def test_tool_schemas_file_is_what_regenerating_writes() -> None:
    assert TOOL_SCHEMAS.read_text() == render(), "run `python -m tools.tool_schemas` and review the diff"


def test_tool_schemas_file_covers_every_tool_with_its_answer_model() -> None:
    schemas = json.loads(TOOL_SCHEMAS.read_text())
    specs = tool_specs()
    assert list(schemas) == [fn.__name__ for fn, _, _, _ in specs]
    for fn, _, _, answer in specs:
        model = getattr(answers, answer)
        assert set(schemas[fn.__name__]["outputSchema"]["properties"]) == set(model.model_fields), fn.__name__
        filled = {"ctx", *find_resolved_parameters(fn)}  # the context and what resolvers fill: not the client's
        arguments = [name for name in inspect.signature(fn).parameters if name not in filled]
        assert list(schemas[fn.__name__]["inputSchema"]["properties"]) == arguments, fn.__name__


def test_tools_validate_arguments_as_the_sdk_s_own_tools_do() -> None:
    """The argument models are made on each tool's first call: the same checks as `Tool.from_function`'s."""
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
    from pydantic import ValidationError

    from tools.mcp_tools import build_tools

    samples = {
        "list_fal_jobs": [{"limit": 5, "status": "completed"}, {"limit": 0}, {"limit": "many"}],
        "get_fal_result": [{"request_id": "abc", "wait_seconds": 3}, {"request_id": "abc", "wait_seconds": -1}, {}],
        "submit_fal_job": [{"model": "fal-ai/x", "input": '{"prompt": "p"}'}, {"model": "fal-ai/x", "input": 3}],
    }
    tools = {tool.name: tool for tool in build_tools()}
    assert all(tool.fn_metadata.arg_model is ArgModelBase for tool in tools.values())  # nothing built at start
    for name, cases in samples.items():
        reference = Tool.from_function(tools[name].fn, structured_output=False).fn_metadata
        for arguments in cases:
            try:
                expected: object = reference.validate_arguments(arguments)
            except ValidationError as exc:
                expected = [(error["loc"], error["type"]) for error in exc.errors()]
            try:
                got: object = tools[name].fn_metadata.validate_arguments(arguments)
            except ValidationError as exc:
                got = [(error["loc"], error["type"]) for error in exc.errors()]
            assert got == expected, (name, arguments)
        assert tools[name].fn_metadata.arg_model is not ArgModelBase


def test_a_stale_tool_schemas_file_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: an answer model that gains a field no longer matches the file."""

    class Widened(answers.StatusAnswer):
        added_later: int = 0

    monkeypatch.setattr(answers, "StatusAnswer", Widened)
    assert TOOL_SCHEMAS.read_text() != render()


# ---- what a default stdio start imports -----------------------------------------------------------------------------

# Modules a default stdio start must not import: each is needed only by some calls (the catalog, the answer models,
# the HTTP clients, the job follower), by another transport or backend (HTTP, PostgreSQL), or by the sandbox.
# sqlite3 is imported: the start checks the ledger so that a corrupt one is reported before the first call.
HEAVY = (
    "psycopg",
    "psycopg_pool",
    "psycopg_binary",
    "httpx",
    "httpcore",
    "jsonschema",
    "tools.catalog",
    "tools.answers",
    "tools.schema",
    "tools.submit",
    "tools.follow",
    "tools.history",
    "tools.uploads",
    "tools.saving",
    "server.sandbox",
    "server.http_transport",
    "server.http_guard",
    "server.upstream.client",
    "server.upstream.stream",
    "server.upstream.storage",
    "server.files.downloads",
    "server.files.browse",
    "server.jobs.watcher",
    "server.jobs.following",
    "server.jobs.waiting",
    "server.jobs.ledger.postgres",
)
# The MCP SDK imports its HTTP transport (starlette, uvicorn, sse-starlette) and its client on every start, stdio
# included: mcp/__init__ -> mcp.client -> mcp.client._memory -> mcp.server -> mcp.server.lowlevel.server ->
# starlette.applications / mcp.server.streamable_http -> sse_starlette -> uvicorn (see bench/README.md). Not ours
# to avoid without patching the SDK, so not checked here.

# The server as `python -m server` runs it, with the start delay of its background work (the watcher and the relay
# of other instances' changes, which open the ledger and the HTTP clients a second after the start) made longer
# than any test, so what is imported does not depend on how fast the machine answers.
_START = (
    "import runpy, server.app; server.app.WATCH_START_DELAY_SECONDS = 3600.0; {extra}"
    "runpy.run_module('server', run_name='__main__', alter_sys=True)"
)
ANSWER_SECONDS = 120.0


@dataclass
class Imported:
    """The modules a process imported, in order, each with the chain of modules that imported it."""

    chains: dict[str, list[str]]

    @classmethod
    def parse(cls, importtime: str) -> Imported:
        """Read `python -X importtime`'s report: a module is listed after what it imported, one level deeper."""
        entries = []
        for line in importtime.splitlines():
            if line.startswith("import time:") and "|" in line:
                name = line.rsplit("|", 1)[1]
                depth = (len(name) - len(name.lstrip())) // 2
                entries.append((depth, name.strip()))
        chains: dict[str, list[str]] = {}
        for index, (depth, name) in enumerate(entries):
            chain, level = [], depth
            for outer_depth, outer in entries[index + 1 :]:
                if outer_depth < level:
                    chain.append(outer)
                    level = outer_depth
            chains.setdefault(name, chain)
        return cls(chains)

    def heavy(self) -> list[str]:
        """Each forbidden module imported, with what imported it."""
        found = [name for name in self.chains if any(name == h or name.startswith(h + ".") for h in HEAVY)]
        return [" <- ".join([name, *self.chains[name]]) for name in found]


def _start_and_list_tools(extra_import: str = "") -> tuple[Imported, dict[str, object]]:
    """Start the server, initialize, list the tools, close stdin; what it imported and the tools/list answer."""
    with tempfile.TemporaryDirectory(prefix="fal-mcp-imports-") as state, tempfile.TemporaryFile() as err:
        env = clean_env(UNIAPI_KEY="x", FAL_MCP_BASE_URL="http://127.0.0.1:9", FAL_MCP_STATE_DIR=state)
        extra = f"import {extra_import}; " if extra_import else ""
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-c", _START.format(extra=extra)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,  # a file: the import report is larger than a pipe's buffer
            env=env,
        )
        watchdog = threading.Timer(ANSWER_SECONDS, process.kill)
        watchdog.start()
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(jsonrpc_line(initialize_request("imports")))
            process.stdin.flush()
            assert json.loads(process.stdout.readline())["id"] == 1
            process.stdin.write(
                jsonrpc_line(INITIALIZED) + jsonrpc_line({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            )
            process.stdin.flush()
            listed = json.loads(process.stdout.readline())
            process.stdin.close()
            process.wait(timeout=ANSWER_SECONDS)
        finally:
            watchdog.cancel()
            process.kill()
        err.seek(0)
        report = err.read().decode(errors="replace")
    assert process.returncode == 0, report[-2000:]
    return Imported.parse(report), listed


def test_a_default_stdio_start_imports_no_heavy_module() -> None:
    imported, listed = _start_and_list_tools()
    assert listed["id"] == 2 and len(listed["result"]["tools"]) == len(tool_specs())  # type: ignore[index]
    assert "server.app" in imported.chains and "mcp.server.mcpserver" in imported.chains  # the report was read
    heavy = imported.heavy()
    assert heavy == [], "a default stdio start imports:\n" + "\n".join(heavy)


def test_the_import_check_names_a_heavy_module_and_what_imported_it() -> None:
    """The check above can fail: a start that imports the catalog (here, on purpose) is caught, and the report
    says which module brought it in."""
    imported, _ = _start_and_list_tools(extra_import="tools.mcp_completion, tools.catalog.views")
    heavy = imported.heavy()
    assert "tools.catalog <- tools.catalog.views" in heavy
    assert any(line.startswith("tools.answers <- ") for line in heavy), heavy


def test_the_import_report_is_read_with_each_module_s_importers() -> None:
    report = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:        5 |          5 |     psycopg.pq",
            "import time:        7 |         12 |   psycopg",
            "import time:        3 |         15 | server.jobs.ledger.postgres",
            "import time:        2 |          2 | json",
        ]
    )
    imported = Imported.parse(report)
    assert imported.chains["psycopg.pq"] == ["psycopg", "server.jobs.ledger.postgres"]
    assert imported.heavy() == [
        "psycopg.pq <- psycopg <- server.jobs.ledger.postgres",
        "psycopg <- server.jobs.ledger.postgres",
        "server.jobs.ledger.postgres",
    ]
