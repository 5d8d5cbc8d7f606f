"""Waiting economy: upstream requests and notice delay while waiting for one long sandbox job, three ways at once.

(a) get_fal_result(wait_seconds=90) on a server with default settings (status stream), (b) the same on a server
with use_status_stream=False (adaptive polling, default intervals), (c) the official client's naive loop: GET
status every 0.1 s until COMPLETED, then GET the result; and (d) one row per native route family (UniAPI's Kling
and Luma routes, which have no status stream: polled on the same schedule). Each way has its own job; all run
concurrently in this process, with the MCP servers in memory and the sandbox in a thread.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from mcp import Client

from bench.common import (
    INFO,
    SEED_INPUT,
    SEED_MODEL,
    Report,
    Row,
    auth_headers,
    make_settings,
    progress,
    status_url,
    submit_job,
    temp_state_dir,
    verdict,
)
from server.app import create_server
from server.jobs.waiting import POLL_JITTER
from server.sandbox import Sandbox, SandboxConfig
from server.settings import Settings

NAME = "waiting_economy"
NAIVE_INTERVAL = 0.1
# (most upstream requests, longest notice delay in s)
TARGETS = {"streaming": (3, 0.5), "polling": (25, 2.0), "kling route": (25, 2.0), "luma route": (25, 2.0)}
# The native families' ways: a model id on each route and an input its sandbox route accepts.
NATIVE = {
    "kling route": ("kling/v1/videos/text2video", {"prompt": "A red fox runs through fresh snow", "duration": "5"}),
    "luma route": ("luma/generations", {"user_prompt": "Waves rolling onto a beach at dusk"}),
}


@dataclass
class Way:
    name: str
    request_id: str = ""
    returned_at: float = 0.0  # time.time() (the sandbox's job clock) when the waiter had the result in hand
    done: bool = False
    requests: dict[str, int] | None = None
    delay: float = 0.0


def _count_requests(sandbox: Sandbox, request_id: str) -> dict[str, int]:
    counts = {"status": 0, "stream": 0, "result": 0}
    for seen in sandbox.seen("GET"):
        if request_id not in seen.path:
            continue
        if seen.path.startswith(("/kling/", "/luma/")):  # one GET answers status and result alike
            counts["status"] += 1
        elif seen.path.endswith("/status/stream"):
            counts["stream"] += 1
        elif seen.path.endswith("/status"):
            counts["status"] += 1
        else:
            counts["result"] += 1
    return counts


def _server_settings(sandbox: Sandbox, state_dir: str) -> dict[str, Settings]:
    """One server per MCP way, each with its own state directory (a shared ledger would be watched by all)."""
    ways = {"streaming": {}, "polling": {"use_status_stream": False}}
    if "watch_jobs" in Settings.model_fields:  # diagnostics: the same two ways without the background watcher
        ways |= {
            "streaming, watcher off": {"watch_jobs": False},
            "polling, watcher off": {"use_status_stream": False, "watch_jobs": False},
        }
    settings = {}
    for index, (name, overrides) in enumerate(ways.items()):
        directory = Path(state_dir) / f"server-{index}"
        directory.mkdir()
        settings[name] = make_settings(sandbox, str(directory), max_wait_seconds=90, **overrides)
    for index, name in enumerate(NATIVE, start=len(settings)):
        directory = Path(state_dir) / f"server-{index}"
        directory.mkdir()
        native = {"provider": "uniapi", "uniapi_key": sandbox.config.key, "fal_key": None}  # native: UniAPI only
        settings[name] = make_settings(sandbox, str(directory), max_wait_seconds=90, **native)
    return settings


async def _measure(sandbox: Sandbox, state_dir: str, job_seconds: float) -> dict[str, Way]:
    settings = _server_settings(sandbox, state_dir)
    ways = {name: Way(name) for name in [*settings, "naive"]}
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(Client(create_server(s))) for name, s in settings.items()}
        http = await stack.enter_async_context(httpx.AsyncClient(trust_env=False, timeout=10))
        headers = auth_headers(sandbox)
        for name, client in clients.items():
            ways[name].request_id = await submit_job(client, *NATIVE.get(name, ()))
        submitted = await http.post(f"{sandbox.base_url}/{SEED_MODEL}", json=SEED_INPUT, headers=headers)
        submitted.raise_for_status()
        ways["naive"].request_id = submitted.json()["request_id"]

        async def wait_mcp(client: Client, way: Way) -> None:
            answer = await client.call_tool("get_fal_result", {"request_id": way.request_id, "wait_seconds": 90})
            way.returned_at = time.time()
            way.done = not answer.is_error and answer.structured_content.get("done") is True

        async def wait_naive(way: Way) -> None:
            url = status_url(sandbox, way.request_id)
            while True:
                response = await http.get(url, headers=headers)
                if response.json().get("status") == "COMPLETED":
                    break
                await anyio.sleep(NAIVE_INTERVAL)
            result = await http.get(url.removesuffix("/status"), headers=headers)
            way.returned_at = time.time()
            way.done = result.status_code == 200

        with anyio.fail_after(job_seconds + 60):
            async with anyio.create_task_group() as group:
                for name, client in clients.items():
                    group.start_soon(wait_mcp, client, ways[name])
                group.start_soon(wait_naive, ways["naive"])
    for way in ways.values():
        # The sandbox runs in this process and its job clock is time.time(), so completion is exact.
        way.delay = way.returned_at - sandbox.jobs[way.request_id].completed_at
        way.requests = _count_requests(sandbox, way.request_id)
    return ways


def _describe(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{value} {kind}" for kind, value in counts.items() if value)
    return f"{total} ({parts})"


def run(quick: bool) -> Report:
    report = Report(NAME)
    job_seconds = 20.0 if quick else 60.0
    progress(f"waiting economy: a {job_seconds:.0f} s job waited three ways at once")
    config = SandboxConfig(queue_seconds=0, run_seconds=job_seconds)
    with temp_state_dir() as state_dir, Sandbox(config) as sandbox:
        ways = anyio.run(_measure, sandbox, state_dir, job_seconds)
    naive = ways["naive"]
    assert naive.requests is not None
    for name, (most_requests, longest_delay) in TARGETS.items():
        way = ways[name]
        assert way.requests is not None
        requests = sum(way.requests.values())
        report.rows.append(
            Row(
                f"wait {job_seconds:.0f} s job, {name}: upstream requests after submit",
                _describe(way.requests),
                f"naive 0.1 s loop: {_describe(naive.requests)}",
                f"<= {most_requests}",
                verdict(requests <= most_requests and way.done),
            )
        )
        report.rows.append(
            Row(
                f"wait {job_seconds:.0f} s job, {name}: notice delay after completion",
                f"{way.delay:.2f} s" + ("" if way.done else " (NOT done)"),
                f"naive: {naive.delay:.2f} s",
                f"<= {longest_delay} s",
                verdict(way.delay <= longest_delay and way.done),
            )
        )
    for name in (n for n in ways if n.endswith("watcher off")):
        way = ways[name]
        assert way.requests is not None
        report.rows.append(
            Row(
                f"wait {job_seconds:.0f} s job, {name} (diagnostic): requests / notice delay",
                f"{_describe(way.requests)} / {way.delay:.2f} s" + ("" if way.done else " (NOT done)"),
                "",
                "watch_jobs=False, same wait",
                INFO,
            )
        )
    defaults = Settings.from_env({}, provider="fal", base_url="https://queue.fal.run")
    worst = defaults.poll_max_interval * (1 + POLL_JITTER)
    report.notes.append(
        f"waiting economy: polling's notice delay is where the completion falls between two polls, at most about "
        f"{worst:.2f} s (poll_max_interval {defaults.poll_max_interval} s + {POLL_JITTER:.0%} jitter) plus the result "
        f"fetch. The +-10% jitter accumulates over a long wait, so one run is one draw from roughly 0 to that bound. "
        f"At that interval a {job_seconds:.0f} s job needs about {job_seconds / defaults.poll_max_interval:.0f} "
        "polls. Request counts include every GET naming the job (the wait, the result fetch and the server's "
        "background watcher), not the submit POST; each MCP way runs in its own server with its own state directory."
    )
    return report
