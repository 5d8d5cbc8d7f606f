"""Shared pieces of the benchmarks: result rows, tables, percentiles, server environments, raw JSON-RPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.settings import Settings

if TYPE_CHECKING:
    from anyio.abc import Process

    from server.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
SEED_INPUT: dict[str, Any] = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
}

OK, MISS, INFO, ERROR = "ok", "MISS", "info", "ERROR"  # ERROR: the benchmark itself failed


@dataclass
class Row:
    """One line of the summary table. `target` holds the ratio or delta and the target it is held to."""

    figure: str
    ours: str
    baseline: str
    target: str
    verdict: str


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Report:
    name: str
    rows: list[Row] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return cls(
            name=data["name"],
            rows=[Row(**r) for r in data["rows"]],
            tables=[Table(**t) for t in data["tables"]],
            notes=list(data["notes"]),
            seconds=float(data.get("seconds", 0.0)),
        )


def verdict(ok: bool) -> str:
    return OK if ok else MISS


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table, padded so it reads well in a terminal and pastes as-is into Markdown."""
    cells = [header, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def progress(message: str) -> None:
    """Progress goes to stderr; stdout carries only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def server_env(state_dir: str, **extra: str) -> dict[str, str]:
    """The environment for a server subprocess: none of the caller's keys, the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_", "UNIAPI_"))}
    env.update({"PYTHONPATH": str(ROOT), "FAL_MCP_STATE_DIR": state_dir})
    env.update(extra)
    return env


def make_settings(sandbox: Sandbox, state_dir: str, *, test_timeouts: bool = True, **overrides: Any) -> Settings:
    """Like tests/helpers.make_settings (fal provider, the sandbox's key); `test_timeouts=False` keeps defaults."""
    values: dict[str, Any] = {
        "provider": "fal",
        "base_url": sandbox.base_url,
        "fal_key": sandbox.config.key,
        "state_dir": Path(state_dir),
    }
    if test_timeouts:
        values.update({"retry_deadline": 2.0, "request_timeout": 2.0, "submit_timeout": 2.0})
    values.update(overrides)
    return Settings.from_env({}, **values)


def temp_state_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="fal-mcp-bench-")


# ---- raw JSON-RPC over a subprocess's pipes -------------------------------------------------------------

LIST_TOOLS_SESSION = b"".join(
    json.dumps(message, separators=(",", ":")).encode() + b"\n"
    for message in (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
)


@dataclass
class ListToolsRun:
    seconds: float  # spawn -> the tools/list response line arrived
    result: dict[str, Any]  # the JSON-RPC `result` of tools/list
    stderr: str
    idle_rss_kib: int = 0  # VmRSS `idle_seconds` after the answer (0 when not asked for)


def spawn_and_list_tools(
    command: list[str], env: dict[str, str], timeout: float = 30.0, idle_seconds: float = 0.0
) -> ListToolsRun:
    """Spawn a stdio server, write initialize/initialized/tools/list at once, time until the tools/list answer.

    The three lines are written straight after spawning (they wait in the pipe), so the figure is start-up plus
    two requests served, with no client library in the way. The server is then ended by closing its stdin.
    """
    with tempfile.TemporaryFile() as errfile:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, env=env, cwd=ROOT
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(LIST_TOOLS_SESSION)
            process.stdin.flush()
            answer: dict[str, Any] | None = None
            while line := process.stdout.readline():
                message = json.loads(line)
                if message.get("id") == 2:
                    answer = message
                    break
            elapsed = time.perf_counter() - started
            idle_rss = 0
            if idle_seconds and answer is not None:
                time.sleep(idle_seconds)  # the server sits idle, its background tasks started
                idle_rss = rss_kib(pid=process.pid)
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            watchdog.cancel()
        errfile.seek(0)
        stderr = errfile.read().decode(errors="replace")
    if answer is None or "result" not in answer:
        raise RuntimeError(f"{' '.join(command)}: no tools/list answer (exit {process.returncode}): {stderr[-2000:]}")
    return ListToolsRun(seconds=elapsed, result=answer["result"], stderr=stderr, idle_rss_kib=idle_rss)


OURS_COMMAND = [PYTHON, "-m", "server"]
BASELINE_COMMAND = [PYTHON, "-m", "bench.trivial_server"]


def cold_start_env(state_dir: str, pycache_prefix: str | None = None) -> dict[str, str]:
    """No request is made by tools/list; port 9 (discard) would refuse one anyway.

    With `pycache_prefix`, bytecode is written to and read from that directory only (whatever the caller's
    PYTHONDONTWRITEBYTECODE), so after one warm-up every module of both servers loads from a fresh .pyc, as in an
    installed package, and the source tree's own __pycache__ (stale or absent while files are edited) plays no part.
    """
    env = server_env(state_dir, UNIAPI_KEY="x", FAL_MCP_BASE_URL="http://127.0.0.1:9")
    if pycache_prefix is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache_prefix
    return env


# ---- /proc readings (Linux) -----------------------------------------------------------------------------


def rss_kib(field_name: str = "VmRSS", pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def established_to_port(port: int) -> int:
    """ESTABLISHED TCP connections owned by this process whose remote port is `port`.

    /proc/self/net/tcp lists the whole network namespace, so sockets are matched by inode against this
    process's file descriptors; the sandbox's own (server-side) ends have the port as their local port and are
    not counted.
    """
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except FileNotFoundError:
            continue
    if not inodes:
        return 0
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


# ---- an MCP stdio session of `python -m server` against a sandbox -----------------------------------------


def stdio_params(sandbox: Sandbox, state_dir: str) -> Any:
    from mcp import StdioServerParameters

    env = server_env(state_dir, UNIAPI_KEY=sandbox.config.key, FAL_MCP_BASE_URL=sandbox.base_url)
    return StdioServerParameters(command=PYTHON, args=["-m", "server"], env=env, cwd=ROOT)


async def submit_job(client: Any, model: str = SEED_MODEL, body: dict[str, Any] | None = None) -> str:
    answer = await client.call_tool("submit_fal_job", {"model": model, "input": SEED_INPUT if body is None else body})
    if answer.is_error:
        raise RuntimeError("submit_fal_job failed: " + " ".join(getattr(b, "text", "") for b in answer.content))
    return str(answer.structured_content["request_id"])


def status_url(sandbox: Sandbox, request_id: str) -> str:
    from server.upstream.ids import app_id

    return f"{sandbox.base_url}/{app_id(SEED_MODEL)}/requests/{request_id}/status"


def auth_headers(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Key {sandbox.config.key}"}


# ---- raw JSON-RPC over a server's pipes, and interleaved timing ---------------------------------------------


class PipeSession:
    """Newline-delimited JSON-RPC straight over a server's pipes: no client library, just json.dumps/loads."""

    def __init__(self, process: Process, *, first_id: int = 0) -> None:
        from anyio.streams.buffered import BufferedByteReceiveStream

        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._next_id = first_id  # above the ids of anything sent by hand (`send`)

    async def send(self, data: bytes) -> None:
        await self._stdin.send(data)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The whole answer (`result` or `error`) to one request; other lines before it are passed over."""
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        await self._stdin.send(json.dumps(message).encode() + b"\n")
        return await self.answer(self._next_id)

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self._stdout.receive_until(b"\n", 16 * 1024 * 1024))
            if message.get("id") == request_id:
                return message


# A path to time: its name, and a call that says whether its answer was the one expected.
TimedPath = tuple[str, Callable[[], Awaitable[bool]]]


async def warm_up(paths: list[TimedPath], rounds: int) -> None:
    for _ in range(rounds):
        for _, call in paths:
            await call()


async def interleave(paths: list[TimedPath], rounds: int, times: dict[str, list[float]]) -> int:
    """Time each path `rounds` times, rotating which goes first so all see the same machine noise; the seconds go
    to `times[name]`, and the count of wrong answers is returned."""
    errors = 0
    for i in range(rounds):
        turn = i % len(paths)
        for name, call in paths[turn:] + paths[:turn]:
            started = time.perf_counter()
            ok = await call()
            times[name].append(time.perf_counter() - started)
            errors += not ok
    return errors
