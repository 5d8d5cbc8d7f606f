"""A server subprocess driven line by line, with every read bounded: stderr and stdout are collected by threads."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import jsonrpc_line

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60  # a cold start on a busy machine; only a hang reaches it
EXIT_SECONDS = 15  # "within a second" is the goal; a test allows for a loaded machine, a hang still fails it


class Process:
    """A server subprocess whose stderr (and stdout) lines are collected by threads, so reads can time out."""

    def __init__(self, args: list[str], env: dict[str, str], *, tty: bool = False, cwd: Path = ROOT) -> None:
        """`tty`: stdin is a terminal (a pty), as when a person starts the server by hand."""
        self._tty_master: int | None = None
        stdin: int = subprocess.PIPE
        if tty:
            self._tty_master, stdin = pty.openpty()
        # A session (process group) of its own: close() ends whatever it started too (`uv run` starts the server as
        # a child, which would otherwise outlive it holding the output pipes open).
        self.popen = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        if tty:
            os.close(stdin)
        self.stderr: queue.Queue[str] = queue.Queue()
        self.stdout: queue.Queue[str] = queue.Queue()
        self.err_text: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
            for stream, lines in ((self.popen.stderr, self.stderr), (self.popen.stdout, self.stdout))
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: Any, lines: queue.Queue[str]) -> None:
        for raw in stream:
            lines.put(raw.decode(errors="replace"))

    def send(self, message: dict[str, Any]) -> None:
        data = jsonrpc_line(message)
        if self._tty_master is not None:
            os.write(self._tty_master, data)
        else:
            assert self.popen.stdin is not None
            self.popen.stdin.write(data)
            self.popen.stdin.flush()

    def wait_stderr(self, pattern: str, timeout: float = STARTUP_SECONDS) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stderr.get(timeout=0.2)
            except queue.Empty:
                assert self.popen.poll() is None, f"exited {self.popen.returncode}: {''.join(self.err_text)}"
                continue
            self.err_text.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no {pattern!r} on stderr in {timeout} s: {''.join(self.err_text)}")

    def answer(self, request_id: int, timeout: float = STARTUP_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = json.loads(self.stdout.get(timeout=0.2))
            except queue.Empty:
                assert self.popen.poll() is None, f"exited {self.popen.returncode}"
                continue
            if message.get("id") == request_id:
                return message
        raise AssertionError(f"no answer to request {request_id} in {timeout} s")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the exit code (a hang fails the test, and the process is killed). Stopping is no
        error: nothing like a traceback may reach stderr."""
        self.popen.send_signal(signal.SIGINT)
        try:
            code = self.popen.wait(EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"still running {EXIT_SECONDS} s after Ctrl-C") from None
        self.close()
        assert "Traceback" not in "".join(self.err_text) and "Error" not in "".join(self.err_text), self.err_text
        return code

    def close(self) -> None:
        """End the process (and any process it started) if it still runs, and collect the rest of its stderr
        into `err_text`."""
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        if self._tty_master is not None:
            os.close(self._tty_master)
            self._tty_master = None
        for pump in self._pumps:
            pump.join(EXIT_SECONDS)  # until end of file
        while not self.stderr.empty():
            self.err_text.append(self.stderr.get())
