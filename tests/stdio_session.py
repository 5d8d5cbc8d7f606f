"""The server as a `python -m server` subprocess spoken to in raw JSON-RPC lines, for the tests that need the real
stdio process (what it writes to stdout and stderr, how it takes garbage, what it logs at DEBUG).

Threads collect stdout and stderr line by line as they come; input is written at once (`request`, `notify`) or by
a thread (`send`), so that a large input cannot deadlock against the server's answers filling its stdout pipe.
Every wait has a generous bound, and a watchdog kills a server that outlives its test.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.helpers import INITIALIZED, initialize_request, jsonrpc_line

ANSWER_SECONDS = 60.0  # one answer; a loaded machine starts the server (imports) in seconds, not minutes
WATCHDOG_SECONDS = 180.0


@dataclass
class Finished:
    code: int | None  # None: the server did not exit on end of input and was killed
    stdout: str
    stderr: str


class StdioSession:
    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[bytes] = []  # stdout
        self.stderr_lines: list[bytes] = []
        self._arrived = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._watchdog = threading.Timer(WATCHDOG_SECONDS, self.process.kill)
        self._watchdog.start()
        self._next_id = 0

    def _pump(self, stream: Any, into: list[bytes]) -> None:
        for line in stream:
            with self._arrived:
                into.append(line)
                self._arrived.notify_all()

    # ---- writing ------------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, chunks: list[bytes]) -> threading.Thread:
        """Write in a thread: the server may answer (and fill its stdout pipe) while a 10 MB line goes in."""

        def write_all() -> None:
            with contextlib.suppress(BrokenPipeError):
                for chunk in chunks:
                    self.write(chunk)

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        return writer

    def notify(self, method: str) -> None:
        self.write(jsonrpc_line({"jsonrpc": "2.0", "method": method}))

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request with the next id and return its answer."""
        self._next_id += 1
        request_id = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.write(jsonrpc_line(message))
        answers = self.wait_for({request_id})
        assert request_id in answers, f"no answer to {method}; stderr: {self.stderr()[-2000:]}"
        return answers[request_id]

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def initialize(self, client_name: str) -> dict[str, Any]:
        answer = self.request("initialize", initialize_request(client_name)["params"])
        self.write(jsonrpc_line(INITIALIZED))
        return answer

    # ---- reading ------------------------------------------------------------------------------------------------

    def answers(self) -> dict[Any, dict[str, Any]]:
        """Every response on stdout so far, by id."""
        found = {}
        for line in list(self.lines):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and "id" in message and ("result" in message or "error" in message):
                found[message["id"]] = message
        return found

    def wait_for(self, ids: set[Any], timeout: float = ANSWER_SECONDS) -> dict[Any, dict[str, Any]]:
        """The answers so far, once every id in `ids` has one (or `timeout` has passed)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not ids <= set(self.answers()) and time.monotonic() < deadline:
                if self.process.poll() is not None and not any(reader.is_alive() for reader in self._readers):
                    break  # it exited, and everything it wrote has been read
                self._arrived.wait(timeout=0.5)
        return self.answers()

    def stderr(self) -> str:
        return b"".join(self.stderr_lines).decode(errors="replace")

    def finish(self, timeout: float = ANSWER_SECONDS) -> Finished:
        """Close stdin (the server exits on end of input) and collect everything it wrote."""
        with contextlib.suppress(BrokenPipeError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            code: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self._watchdog.cancel()
        for reader in self._readers:
            reader.join(timeout=10)
        return Finished(code, b"".join(self.lines).decode(errors="replace"), self.stderr())
