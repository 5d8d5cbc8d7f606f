"""Raw garbage on the stdio server's stdin: the process stays up, answers the valid requests around the garbage,
and writes nothing but JSON-RPC 2.0 lines to stdout.

What the SDK (mcp 2.3) does with each kind of garbage, as observed here: a line that is not a JSON-RPC message
(invalid JSON, a JSON array or number, a wrong `jsonrpc` version, an id that is an object, array, float or null, a
lone surrogate escape such as "\\ud800", nesting deeper than the JSON parser allows) is dropped without an answer
(JSON-RPC would answer -32700 with a null id; a client that sent such a request waits for its own timeout);
invalid UTF-8 is replaced, not fatal; an unknown method gets -32601; a stray response is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.sandbox import Sandbox
from tests.helpers import INITIALIZED, initialize_request, jsonrpc_line, server_env
from tests.stdio_session import StdioSession

ROOT = Path(__file__).resolve().parents[1]
INITIALIZE = initialize_request("garbage", request_id=100)


def _env(sandbox: Sandbox, state_dir: Path) -> dict[str, str]:
    return server_env(sandbox, state_dir, FAL_MCP_WATCH_JOBS="false")


def _request(request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return jsonrpc_line(message)


GARBAGE: list[bytes] = [
    b"\n",
    b"   \n",
    b"\r\n",
    b"not json at all\n",
    b"{\n",
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping"\n',  # cut off
    b"}\n",
    b"[]\n",
    b"[1, 2, 3]\n",
    b"42\n",
    b"-1e999\n",
    b'"a string"\n',
    b"null\n",
    b"true\n",
    b"{}\n",
    b'{"jsonrpc": "2.0"}\n',
    b'{"jsonrpc": "2.0", "id": 2}\n',  # no method
    b'{"id": 3, "method": "ping"}\n',  # no jsonrpc
    b'{"jsonrpc": "1.0", "id": 4, "method": "ping"}\n',
    b'{"jsonrpc": 2.0, "id": 5, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": [6], "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": 7.5, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": null, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": true, "method": "ping"}\n',
    b'{"jsonrpc": "2.0", "id": 8, "method": 42}\n',
    b'{"jsonrpc": "2.0", "id": 9, "method": ["ping"]}\n',
    b'{"jsonrpc": "2.0", "id": 10, "method": "ping", "params": "oops"}\n',
    b'[{"jsonrpc": "2.0", "id": 11, "method": "ping"}]\n',  # a batch
    b'{"jsonrpc": "2.0", "id": 12, "result": {}}\n',  # a stray response
    b'{"jsonrpc": "2.0", "id": 13, "error": {"code": -1, "message": "stray"}}\n',
    b'{"jsonrpc": "2.0", "id": 14, "method": "ping"}\x00\n',
    b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}\n',  # a lone surrogate escape
    b"\xef\xbb\xbf" + _request(15, "ping"),  # a byte order mark first
    b"\x00\x00\x00\x00\n",
    b"\xff\xfe\xfd invalid utf-8 \x80\x81\xc3\x28\n",
    bytes(range(256)).replace(b"\n", b"") + b"\n",
    b"[" * 100_000 + b"]" * 100_000 + b"\n",  # deeper than any parser allows
    b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"\n",
    b"x" * (10 * 1024 * 1024) + b"\n",  # a 10 MB line
    b'{"jsonrpc": "2.0", "id": 16, "method": "ping", "params": {"pad": "' + b"y" * (2 * 1024 * 1024) + b'"\n',
]
# Requests in the garbage that are valid JSON-RPC and must be answered (with a result or an error).
VALID_IN_GARBAGE = {
    20: _request(20, "no/such/method"),
    21: _request(21, "tools/call", {"name": "no_such_tool", "arguments": {}}),
    22: _request(22, "tools/call", {"name": "get_fal_status", "arguments": {"request_id": "../../etc/passwd"}}),
    23: _request(23, "tools/call", {"name": "get_fal_status", "arguments": {"request_id": 12345}}),
    24: _request(24, "tools/call", {"name": "submit_fal_job", "arguments": "not an object"}),
    25: _request(25, "tools/call", {"name": "submit_fal_job"}),
    26: _request(26, "resources/read", {"uri": "fal://jobs/../../etc/passwd"}),
    27: _request(27, "ping"),
    28: _request(28, "ping", {"pad": "z" * (2 * 1024 * 1024)}),  # big, but a valid message
    29: _request(29, "tools/call", {"name": "list_fal_models", "arguments": {"query": "\u202e\u200b\U0001f3ac"}}),
}


def _assert_only_json_rpc(lines: list[bytes]) -> None:
    assert lines, "the server wrote nothing"
    for line in lines:
        assert line.endswith(b"\n"), line[:200]
        message = json.loads(line)  # raises on anything but JSON
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line[:200]


def test_garbage_before_and_after_initialize(sandbox: Sandbox, tmp_path: Path) -> None:
    session = StdioSession(_env(sandbox, tmp_path))
    writer = session.send(
        [
            *GARBAGE,  # before initialize
            jsonrpc_line(INITIALIZE),
            jsonrpc_line(INITIALIZED),
            *GARBAGE,  # and again in a live session, between valid requests
            *VALID_IN_GARBAGE.values(),
            *reversed(GARBAGE),
            _request(101, "tools/list"),
            _request(102, "tools/call", {"name": "get_fal_status", "arguments": {"request_id": "%2e%2e"}}),
            _request(103, "ping"),
        ]
    )
    expected = {100, 101, 102, 103, *VALID_IN_GARBAGE}
    answers = session.wait_for(expected)
    writer.join(timeout=60)
    alive = session.process.poll() is None
    finished = session.finish()
    code, stderr = finished.code, finished.stderr

    assert alive, f"the server died on its input: {stderr[-2000:]}"
    assert expected <= set(answers), f"unanswered: {expected - set(answers)}; stderr: {stderr[-2000:]}"
    _assert_only_json_rpc(session.lines)
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]

    assert answers[100]["result"]["serverInfo"]["name"] == "fal-queue-mcp"
    assert len(answers[101]["result"]["tools"]) >= 8
    assert answers[102]["result"]["isError"] is True
    assert "not a valid request id" in answers[102]["result"]["content"][0]["text"]
    assert answers[103]["result"] == {}
    assert answers[20]["error"]["code"] == -32601
    for request_id in (21, 22, 23, 24, 25):
        result = answers[request_id].get("result")
        assert (result is not None and result["isError"] is True) or "error" in answers[request_id]
    assert "error" in answers[26] or answers[26]["result"]["contents"] == []
    # every answer is to a request that was sent with a valid id: nothing invented, nothing echoed from garbage
    assert set(answers) <= expected | {15}  # 15: a message after a byte order mark, which a parser may accept
    assert sandbox.seen() == []  # none of it reached the upstream


def test_flood_of_garbage_then_a_request(sandbox: Sandbox, tmp_path: Path) -> None:
    session = StdioSession(_env(sandbox, tmp_path))
    flood = [b'{"jsonrpc": "2.0", "id": {"x": %d}, "method": "ping"}\n' % i for i in range(5_000)]
    flood += [b"%d garbage\n" % i for i in range(5_000)]
    session.send([jsonrpc_line(INITIALIZE), jsonrpc_line(INITIALIZED), *flood, _request(200, "ping")])
    answers = session.wait_for({100, 200})
    finished = session.finish()
    code, stderr = finished.code, finished.stderr
    assert {100, 200} <= set(answers), stderr[-2000:]
    _assert_only_json_rpc(session.lines)
    assert code == 0 and "Traceback" not in stderr


def test_input_ending_mid_message_is_a_clean_exit(sandbox: Sandbox, tmp_path: Path) -> None:
    state = tmp_path / "state"
    session = StdioSession(_env(sandbox, state))
    session.send(
        [jsonrpc_line(INITIALIZE), jsonrpc_line(INITIALIZED), b'{"jsonrpc": "2.0", "id": 300, "method": "tools/li']
    ).join(timeout=60)
    session.wait_for({100})
    finished = session.finish()
    code, stderr = finished.code, finished.stderr
    _assert_only_json_rpc(session.lines)
    assert 300 not in session.answers()
    assert code == 0 and "Traceback" not in stderr, stderr[-2000:]
