"""Loopback ports for server subprocesses: a free one to listen on, and waiting until a process listens there."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused_url() -> str:
    """An http://127.0.0.1 URL nothing listens on: connections to it are refused."""
    return f"http://127.0.0.1:{free_port()}"


def wait_listening(
    process: subprocess.Popen[Any], port: int, output: Callable[[], str], *, seconds: float = 60
) -> None:
    """Return once 127.0.0.1:`port` accepts connections. RuntimeError, with the end of the process's `output()`,
    when it exits first; RuntimeError when `seconds` pass (a cold start on a busy machine is well within them)."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {output()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start listening within {seconds:g} s") from None
            time.sleep(0.1)
