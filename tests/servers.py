"""Servers the tests start on 127.0.0.1: a free port to listen on, waiting until a subprocess listens there,
stopping it, and an ASGI app served from a thread."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[Any], *, seconds: float) -> None:
    """Ask the process to end (SIGTERM); kill it when it has not within `seconds`."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


@contextmanager
def serving_in_thread(app: Any, *, seconds: float = 20, **config: Any) -> Iterator[int]:
    """uvicorn serving `app` on a free 127.0.0.1 port in a daemon thread (`config`: more uvicorn settings); yields
    the port once it serves, and stops it on the way out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **({"log_level": "critical"} | config)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server in a thread did not start within {seconds:g} s")
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
