"""Viewer polling: what one open job view (tools/apps/job_view.html) costs per job, in calls per minute.

The view follows a running job by calling get_fal_status through the host on a backing-off schedule. The schedule
is read from the view itself (its DEFAULTS, BACKOFF and the two lines of its follow loop that set the delay, which
must be present verbatim, so a change to the loop shows up here as an error instead of a stale figure) and from
what this server fills into it (`tools.mcp_apps.view_config` with the default settings). It is run without jitter
or call latency and compared with the server's own status polling while a get_fal_result wait polls
(`server.jobs.waiting`: the same settings, its own backoff factor), and with a naive loop polling every 0.1 s.
Each view call is one get_fal_status call, which asks the upstream once while the job runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.common import INFO, Report, Row, Table, progress, verdict
from server.jobs.waiting import POLL_BACKOFF_FACTOR
from server.settings import Settings
from tools.mcp_apps import VIEW_FILE, view_config

NAME = "viewer_polling"
NAIVE_INTERVAL = 0.1
WINDOW_SECONDS = 60.0
# The follow loop's delay, as job_view.html writes it: the first delay, then each next one.
FIRST_DELAY = "let delay = Math.max(config.pollFirstSeconds, 0.1);"
NEXT_DELAY = "delay = Math.min(delay * BACKOFF, Math.max(config.pollMaxSeconds, config.pollFirstSeconds));"


def view_schedule(html: str, config: dict[str, Any]) -> tuple[float, float, float, float]:
    """(first delay, backoff factor, longest delay, follow limit in seconds) of the view as served."""
    for line in (FIRST_DELAY, NEXT_DELAY):
        if line not in html:
            raise ValueError(f"job_view.html's follow loop changed (no `{line}`): update bench/viewer_polling.py")
    defaults_text = re.search(r"const DEFAULTS = (\{[^}]*\});", html)
    backoff_text = re.search(r"const BACKOFF = ([0-9.]+);", html)
    if defaults_text is None or backoff_text is None:
        raise ValueError("job_view.html's DEFAULTS or BACKOFF changed: update bench/viewer_polling.py")
    defaults = json.loads(re.sub(r"(\w+):", r'"\1":', defaults_text.group(1)))
    merged = defaults | config  # Object.assign({}, DEFAULTS, readConfig())
    first = max(float(merged["pollFirstSeconds"]), 0.1)
    longest = max(float(merged["pollMaxSeconds"]), float(merged["pollFirstSeconds"]))
    return first, float(backoff_text.group(1)), longest, float(merged["followMaxSeconds"])


def calls_within(seconds: float, first: float, factor: float, longest: float) -> list[float]:
    """When each call of a backing-off loop falls (sleep first, then call), within `seconds` of its start."""
    times: list[float] = []
    now, delay = 0.0, first
    while now + delay <= seconds:
        now += delay
        times.append(now)
        delay = min(delay * factor, longest)
    return times


def run(quick: bool) -> Report:
    del quick  # arithmetic on the served schedule: nothing to repeat
    progress("viewer polling: the view's schedule as served, against the server's own and a naive loop")
    report = Report(NAME)
    settings = Settings.from_env({})
    first, factor, longest, follow_limit = view_schedule(Path(VIEW_FILE).read_text(), view_config(settings))
    server_first, server_longest = settings.poll_first_interval, settings.poll_max_interval

    view_minute = calls_within(WINDOW_SECONDS, first, factor, longest)
    server_minute = calls_within(WINDOW_SECONDS, server_first, POLL_BACKOFF_FACTOR, server_longest)
    naive_minute = round(WINDOW_SECONDS / NAIVE_INTERVAL)
    report.rows.append(
        Row(
            "viewer polling: get_fal_status calls per open view, first minute of a job",
            f"{len(view_minute)}",
            f"server's own polling: {len(server_minute)}; naive 0.1 s loop: {naive_minute}",
            f"{len(view_minute) / len(server_minute):.2f}x of the server's (<= 1.00x), "
            f"{len(view_minute) / naive_minute:.3f}x of naive",
            verdict(len(view_minute) <= len(server_minute)),
        )
    )
    steady_view, steady_server = 60 / longest, 60 / server_longest
    report.rows.append(
        Row(
            "viewer polling: calls per minute per open view, after the backoff",
            f"{steady_view:.1f}",
            f"server's own polling: {steady_server:.1f}; naive: {60 / NAIVE_INTERVAL:.0f}",
            f"{steady_view / steady_server:.2f}x of the server's (<= 1.00x), "
            f"{steady_view / (60 / NAIVE_INTERVAL):.3f}x of naive",
            verdict(steady_view <= steady_server),
        )
    )
    whole = calls_within(follow_limit, first, factor, longest)
    report.rows.append(
        Row(
            f"viewer polling: most calls one open view makes for a job (it stops after {follow_limit:.0f} s)",
            f"{len(whole)} (+1 get_fal_result at the end)",
            f"naive 0.1 s loop: {round(follow_limit / NAIVE_INTERVAL)}",
            f"{len(whole) / (follow_limit / NAIVE_INTERVAL):.3f}x of naive",
            INFO,
        )
    )
    report.tables.append(
        Table(
            "Viewer polling: the first calls of one open view (seconds after it opened; no jitter, no latency)",
            ["schedule", "first delay", "backoff", "longest", "first calls at (s)"],
            [
                [
                    "job view (as served)",
                    f"{first:g} s",
                    f"x{factor:g}",
                    f"{longest:g} s",
                    ", ".join(f"{t:.2f}" for t in view_minute[:6]),
                ],
                [
                    "server's own (get_fal_result polling)",
                    f"{server_first:g} s",
                    f"x{POLL_BACKOFF_FACTOR:g}",
                    f"{server_longest:g} s",
                    ", ".join(f"{t:.2f}" for t in server_minute[:6]),
                ],
            ],
        )
    )
    report.notes.append(
        "Each view call is one get_fal_status, which asks the upstream once while the job runs: n open views of "
        "one job cost n times the view's row. The view stops after three failed calls in a row, and when the host "
        "tears it down."
    )
    return report
