"""Ledger scale (issue 24): the tools that read the ledger, on a ledger of a million jobs beside one of a thousand.

Each backend (SQLite; PostgreSQL when its binaries are here) gets a large ledger (1,000,000 jobs over a year;
200,000 with --quick) and a small one (1,000 jobs) of the same mix: 24 models, most jobs completed, a few failed,
rejected, unknown or cancelled, the last 20 still running, inputs and results of everyday size. Rows are written
straight into the table (the schema is the ledger's own, made by opening it), then each lookup runs through the
tools' own code on a `Runtime` (a worker thread per ledger call, as a tool call does), alternating large and small:

- `list_fal_jobs` with each filter alone and together, including filters that match nothing;
- request-id completion (the `fal://jobs/{request_id}` template, `max_completion_scan` ids);
- `get_fal_status` of a kept (completed) job, answered from the ledger.

The figure is p99 on the large ledger, held to the issue's 50 ms; the small ledger's p99 beside it shows how much
of that is size. The SQLite rows also time, on the same large file, the queries the previous release ran (the
`x IS NULL OR` filters and whole-row completion), so before and after are measured side by side. Start-up: opening
the ledger, what the watcher's first round asks of it, and giving the leases back (shutdown), large against small.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, closing
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio

from bench.common import INFO, Report, Row, Table, percentile, progress, temp_state_dir, verdict
from server.jobs.ledger import JobLedger, SqliteLedger
from server.runtime import Runtime
from server.settings import Settings

NAME = "ledger_scale"
TARGET_MS = 50.0
SMALL_JOBS = 1_000
MODELS = [f"fal-ai/model-{n:02d}/image-to-video" for n in range(24)]
# The mix of states: most jobs finish; a few fail, are refused, are lost in flight or cancelled. The last few are
# still running, as many on either ledger: a server follows its recent jobs, however long its history.
STATES = [("completed", 0.90), ("failed", 0.05), ("rejected", 0.02), ("unknown", 0.02), ("cancelled", 0.01)]
RUNNING = 20
NOW = 1_800_000_000.0
SPAN = 365 * 86_400.0  # a year of jobs
FILTERS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "status completed (most jobs)": {"status": "completed"},
    "status cancelled (1%)": {"status": "cancelled"},
    "status submitting (none)": {"status": "submitting"},
    "a model (1/24)": {"model": MODELS[3]},
    "a model nobody used": {"model": "fal-ai/nobody/text-to-video"},
    "since yesterday": {"since": "2027-01-14"},
    "since tomorrow (none)": {"since": "2030-01-01"},
    "a model, status failed": {"model": MODELS[5], "status": "failed"},
    "a model, status submitting (none)": {"model": MODELS[5], "status": "submitting"},
    "everything, matching nothing": {"model": MODELS[7], "status": "cancelled", "since": "2030-01-01"},
}


def _rows(count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    names, weights = zip(*STATES, strict=True)
    for n in range(count):
        state = "submitted" if n >= count - RUNNING else rng.choices(names, weights)[0]
        model = MODELS[min(int(rng.expovariate(0.15)), len(MODELS) - 1)]
        submitted = NOW - SPAN + SPAN * n / count
        request_id = None if state in ("rejected", "unknown") else f"{rng.getrandbits(128):032x}"
        prompt = "a slow cinematic orbit around a cat on a windowsill, golden hour, shallow depth of field"
        job_input = json.dumps({"prompt": prompt, "image_url": f"https://cdn.example.com/in/{n}.jpg", "duration": "5"})
        result = media = None
        if state == "completed":
            url = f"https://v3.fal.media/files/out/{request_id}.mp4"
            result = json.dumps({"video": {"url": url, "content_type": "video/mp4", "file_size": 4_000_000}, "seed": n})
            media = json.dumps([url])
        error = "The job failed: the model timed out" if state in ("failed", "unknown", "rejected") else None
        yield (request_id, model, state, job_input, submitted, submitted + 90, error, result, media or "[]")


def _fill_sqlite(path: Path, count: int) -> None:
    SqliteLedger(path).close()  # the ledger's own schema
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO jobs (request_id, endpoint_id, state, input, submitted_at, updated_at, error, result,"
            " media_urls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _rows(count, seed=count),
        )
        conn.execute("ANALYZE")


def _fill_postgres(url: str, count: int) -> None:
    import psycopg

    from server.jobs.ledger.postgres import PostgresLedger

    PostgresLedger(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY fal_mcp_jobs (request_id, endpoint_id, state, input, submitted_at, updated_at, error, result,"
            " media_urls) FROM STDIN"
        ) as copy:
            for row in _rows(count, seed=count):
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE fal_mcp_jobs")


def _kept_job(ledger: JobLedger) -> str:
    row = ledger.list_jobs(state="completed", since=NOW - SPAN / 2, limit=1)[0]
    assert row.request_id is not None
    return row.request_id


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def _lookups(rt: Runtime, kept: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    from tools import follow, history
    from tools.mcp_completion import _request_ids

    scan = rt.settings.max_completion_scan
    lookups: dict[str, Callable[[], Awaitable[Any]]] = {
        f"list_fal_jobs: {name}": (
            lambda f=f: history.list_jobs(rt, f.get("status"), f.get("model"), f.get("since"), 20)  # type: ignore[misc]
        )
        for name, f in FILTERS.items()
    }
    lookups["request-id completion"] = lambda: _request_ids(rt, "a", scan)
    lookups["get_fal_status of a kept job"] = lambda: follow.status(rt, kept, None)
    return lookups


async def _measure(large: Runtime, small: Runtime, calls: int) -> dict[str, tuple[list[float], list[float]]]:
    kept = {rt: await rt.jobs.db(_kept_job, rt.jobs.ledger) for rt in (large, small)}
    plans = {rt: _lookups(rt, kept[rt]) for rt in (large, small)}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in plans[large]}
    for name in plans[large]:
        for rt in (large, small):
            await plans[rt][name]()  # warm: the pages this lookup reads are cached, as on a server in use
        for n in range(calls):
            order = (large, small) if n % 2 == 0 else (small, large)
            for rt in order:
                spent = await _timed(plans[rt][name])
                times[name][0 if rt is large else 1].append(spent)
    return times


# ---- the previous release's queries, on the same SQLite file ---------------------------------------------------

OLD_LIST = (
    "SELECT * FROM jobs WHERE (:state IS NULL OR state = :state) AND (:endpoint IS NULL OR endpoint_id = :endpoint)"
    " AND (:since IS NULL OR submitted_at >= :since) ORDER BY submitted_at DESC, id DESC LIMIT :limit"
)


def _old_queries(path: Path, calls: int) -> dict[str, list[float]]:
    """The previous release's listing (every filter as `x IS NULL OR ...`; it had no model index, so the model
    term is written `+endpoint_id`, which keeps SQLite off that index) and its completion (1,000 whole rows)."""
    from datetime import datetime

    from server.jobs.ledger.base import job_row

    old_list = OLD_LIST.replace("endpoint_id = :endpoint", "+endpoint_id = :endpoint")
    whole = "SELECT * FROM jobs ORDER BY submitted_at DESC, id DESC LIMIT 1000"
    found: dict[str, list[float]] = {}
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        for name, f in FILTERS.items():
            since = f.get("since")
            params = {
                "state": f.get("status"),
                "endpoint": f.get("model"),
                "since": datetime.fromisoformat(since).replace(tzinfo=UTC).timestamp() if since else None,
                "limit": 20,
            }
            found[f"list_fal_jobs: {name}"] = _repeat(lambda p=params: conn.execute(old_list, p).fetchall(), calls)
        found["request-id completion"] = _repeat(lambda: [job_row(r) for r in conn.execute(whole)], calls)
    return found


def _repeat(call: Callable[[], Any], calls: int) -> list[float]:
    call()
    spent = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return spent


# ---- start-up ---------------------------------------------------------------------------------------------------


def _start_up(open_ledger: Callable[[], JobLedger]) -> float:
    """Open the ledger, ask what the first watcher round asks (settle stale submits, claim the recent unfinished
    jobs), and give the leases back as at shutdown. Closing is not timed: SQLite's closing checkpoint is a disk
    flush, whatever the file's size."""
    started = time.perf_counter()
    ledger = open_ledger()
    try:
        ledger.settle_stale_submits(NOW - 600)
        ledger.claim_watch(60.0, limit=25, submitted_since=NOW - 7 * 86_400)
        ledger.unfinished(limit=100)
        ledger.release_all()
        return time.perf_counter() - started
    finally:
        ledger.close()


def _start_ups(large: Callable[[], JobLedger], small: Callable[[], JobLedger], rounds: int) -> tuple[list[float], ...]:
    _start_up(large), _start_up(small)
    pairs = [(_start_up(large), _start_up(small)) for _ in range(rounds)]
    return [a for a, _ in pairs], [b for _, b in pairs]


# ---- the report ---------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _backend_rows(
    report: Report,
    backend: str,
    jobs: int,
    times: dict[str, tuple[list[float], list[float]]],
    old: dict[str, list[float]] | None,
    starts: tuple[list[float], ...],
) -> None:
    table: list[list[str]] = []
    worst_name, worst = "", 0.0
    for name, (large, small) in times.items():
        p99 = percentile(large, 99)
        if p99 >= worst:
            worst_name, worst = name, p99
        before = _ms(percentile(old[name], 99)) if old and name in old else ""
        table.append([name, _ms(percentile(large, 50)), _ms(p99), _ms(percentile(small, 99)), before])
    header = ["lookup", f"p50, {jobs:,} jobs", f"p99, {jobs:,} jobs", f"p99, {SMALL_JOBS:,} jobs"]
    header.append("p99, previous release's query" if old else "")
    report.tables.append(Table(f"Ledger scale, {backend}: each lookup through the tools' code", header, table))
    report.rows.append(
        Row(
            f"ledger scale ({backend}): slowest lookup's p99 at {jobs:,} jobs ({worst_name})",
            _ms(worst),
            f"{SMALL_JOBS:,} jobs: {_ms(percentile(times[worst_name][1], 99))}",
            f"<= {TARGET_MS:.0f} ms",
            verdict(worst * 1000 <= TARGET_MS),
        )
    )
    if old:
        slow_name = max(old, key=lambda name: percentile(old[name], 99))
        report.rows.append(
            Row(
                f"ledger scale ({backend}): the previous release's slowest lookup at {jobs:,} jobs ({slow_name})",
                _ms(percentile(times[slow_name][0], 99)),
                f"previous release: {_ms(percentile(old[slow_name], 99))}",
                f"{percentile(old[slow_name], 99) / percentile(times[slow_name][0], 99):.0f}x faster",
                INFO,
            )
        )
    large, small = starts
    ratio = percentile(large, 50) / percentile(small, 50)
    report.rows.append(
        Row(
            f"ledger scale ({backend}): start-up's ledger work (open, first watcher round, leases given back), "
            f"{jobs:,} vs {SMALL_JOBS:,} jobs",
            _ms(percentile(large, 50)),
            _ms(percentile(small, 50)),
            f"{ratio:.2f}x (<= 1.50x: does not grow with the ledger)",
            verdict(ratio <= 1.5),
        )
    )


def _settings(state: str, **extra: Any) -> Settings:
    return Settings.from_env(
        {}, provider="fal", fal_key="unused", base_url="http://127.0.0.1:9", state_dir=Path(state), **extra
    )


def _run_backend(report: Report, backend: str, jobs: int, calls: int, rounds: int, targets: tuple[Any, Any]) -> None:
    large_settings, small_settings = targets
    large, small = Runtime(large_settings), Runtime(small_settings)
    try:
        times = anyio.run(_measure, large, small, calls)
    finally:
        anyio.run(large.aclose)
        anyio.run(small.aclose)
    old = None
    if backend == "SQLite":
        path = SqliteLedger.default_path(large_settings.state_dir)
        old = _old_queries(path, max(calls // 4, 10))
    from server.runtime import open_ledger

    starts = _start_ups(lambda: open_ledger(large_settings), lambda: open_ledger(small_settings), rounds)
    _backend_rows(report, backend, jobs, times, old, starts)


def run(quick: bool) -> Report:
    report = Report(NAME)
    jobs = 200_000 if quick else 1_000_000
    calls, rounds = (60, 5) if quick else (200, 9)
    with ExitStack() as stack:
        large_dir, small_dir = stack.enter_context(temp_state_dir()), stack.enter_context(temp_state_dir())
        progress(f"ledger scale: writing {jobs:,} jobs to a SQLite ledger")
        started = time.perf_counter()
        _fill_sqlite(SqliteLedger.default_path(Path(large_dir)), jobs)
        _fill_sqlite(SqliteLedger.default_path(Path(small_dir)), SMALL_JOBS)
        report.notes.append(f"SQLite: {jobs:,} jobs written in {time.perf_counter() - started:.0f} s.")
        progress("ledger scale: SQLite lookups")
        _run_backend(report, "SQLite", jobs, calls, rounds, (_settings(large_dir), _settings(small_dir)))

        from tests.local_postgres import LocalPostgres, unavailable

        problem = unavailable()
        if problem:
            report.notes.append(f"PostgreSQL rows skipped: {problem}")
            return report
        postgres = stack.enter_context(LocalPostgres())
        large_url, small_url = postgres.create_database(), postgres.create_database()
        progress(f"ledger scale: writing {jobs:,} jobs to a PostgreSQL ledger")
        started = time.perf_counter()
        _fill_postgres(large_url, jobs)
        _fill_postgres(small_url, SMALL_JOBS)
        report.notes.append(f"PostgreSQL: {jobs:,} jobs written in {time.perf_counter() - started:.0f} s.")
        progress("ledger scale: PostgreSQL lookups")
        targets = (_settings(large_dir, database_url=large_url), _settings(small_dir, database_url=small_url))
        _run_backend(report, "PostgreSQL", jobs, calls, rounds, targets)
    report.notes.append(
        "Every lookup runs through the tools' own functions on a Runtime (tools.history.list_jobs, the completion "
        "handler's request-id lookup, tools.follow.status), a worker thread per ledger call; large and small "
        "alternate. Verdicts on absolute times follow the issue's 50 ms target; the small ledger is the side-by-side. "
        "The previous release's column is its SQL alone on the same file (no thread hop, no answer built), so it "
        "is below ours wherever an index served it then too."
    )
    return report
