"""Server instances as real processes: `python -m server --transport http`, each on a port of its own (for the
multi-instance tests and the scale-out benchmark; no pytest in here)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]


class HttpInstance:
    """`python -m server --transport http` on a port of its own."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the instance's output, read by output()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--transport", "http", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            cwd=ROOT,
        )

    def wait_ready(self) -> None:
        wait_listening(self.process, self.port, self.output)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # graceful: the leases are given back
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


@contextmanager
def http_instances(count: int, env: dict[str, str]) -> Iterator[list[HttpInstance]]:
    instances = [HttpInstance(env) for _ in range(count)]
    try:
        for instance in instances:
            instance.wait_ready()
        yield instances
    finally:
        for instance in instances:
            instance.stop()
