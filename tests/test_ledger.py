"""The job ledger, tested directly on both backends (a real SQLite file, a real PostgreSQL database): lifecycle,
restarts, several processes; and, for SQLite, bad files. Leases, migrations and PostgreSQL's own cases are in
test_ledger_leases.py and test_ledger_postgres.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from server.jobs.ledger import SCHEMA_VERSION, JobLedger, Ledger, LedgerError
from tests.postgres import Backend

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and signals")


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.sqlite3"


@pytest.fixture
def ledger(backend: Backend) -> Iterator[JobLedger]:
    with backend.open() as opened:
        yield opened


@pytest.fixture
def sqlite_ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path) as opened:
        yield opened


def run_python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p != path)


# ---- lifecycle ------------------------------------------------------------------------------------------------


def test_lifecycle_submitting_submitted_completed_downloaded(backend: Backend) -> None:
    clock = FakeClock()
    with backend.open(clock=clock) as ledger:
        row_id = ledger.begin_submit(MODEL, {"prompt": "a cat blinks", "duration": "5"})
        row = ledger.get_row(row_id)
        assert row is not None
        assert (row.state, row.request_id, row.endpoint_id) == ("submitting", None, MODEL)
        assert row.input == {"prompt": "a cat blinks", "duration": "5"}
        assert row.submitted_at == row.updated_at == 1_000.0

        clock.now = 1_001.0
        assert ledger.mark_submitted(row_id, "req-1", 4)
        row = ledger.get("req-1")
        assert row is not None
        assert (row.id, row.state, row.queue_position, row.updated_at) == (row_id, "submitted", 4, 1_001.0)
        assert [r.id for r in ledger.unfinished()] == [row_id]

        clock.now = 1_100.0
        output = {"video": {"url": "https://v3.fal.media/files/x/out.mp4", "content_type": "video/mp4"}}
        assert ledger.store_result("req-1", output, ["https://v3.fal.media/files/x/out.mp4"])
        row = ledger.get("req-1")
        assert row is not None
        assert (row.state, row.result, row.result_at) == ("completed", output, 1_100.0)
        assert row.media_urls == ["https://v3.fal.media/files/x/out.mp4"]
        assert ledger.unfinished() == []

        # The first result wins, and a late failure report does not hide it.
        assert not ledger.store_result("req-1", {"video": {"url": "https://other"}}, [])
        assert not ledger.mark_failed("req-1", "late error")
        row = ledger.get("req-1")
        assert row is not None
        assert (row.state, row.result, row.error) == ("completed", output, None)

        assert ledger.record_download("req-1", "https://v3.fal.media/files/x/out.mp4", "/tmp/a.mp4", "ab" * 32, 10)
        assert ledger.record_download("req-1", "https://v3.fal.media/files/x/out.mp4", "/tmp/b.mp4", "cd" * 32, 11)
        assert ledger.record_download("req-1", "https://v3.fal.media/files/x/out.mp4", "/tmp/a.mp4", "ef" * 32, 12)
        row = ledger.get("req-1")
        assert row is not None
        assert [(d["path"], d["sha256"], d["size"]) for d in row.downloads] == [
            ("/tmp/b.mp4", "cd" * 32, 11),
            ("/tmp/a.mp4", "ef" * 32, 12),
        ]


def test_unknown_and_rejected_are_recorded_without_request_id(ledger: JobLedger) -> None:
    unknown = ledger.begin_submit(MODEL, {"prompt": "timed out"})
    rejected = ledger.begin_submit(MODEL, {"prompt": "refused"})
    assert ledger.mark_unknown(unknown, "no answer within 60 s")
    assert ledger.mark_rejected(rejected, "422: duration must be one of 5, 10")

    row = ledger.get_row(unknown)
    assert row is not None
    assert (row.state, row.request_id, row.error) == ("unknown", None, "no answer within 60 s")
    row = ledger.get_row(rejected)
    assert row is not None
    assert (row.state, row.error) == ("rejected", "422: duration must be one of 5, 10")
    assert [r.id for r in ledger.list_jobs(state="unknown")] == [unknown]
    assert ledger.unfinished() == []  # nothing to poll without a request id

    # A decided submit is not re-decided.
    assert not ledger.mark_rejected(unknown, "too late")
    assert not ledger.mark_unknown(rejected, "too late")
    assert not ledger.mark_submitted(rejected, "req-x", None)
    assert ledger.get("req-x") is None


def test_failed_and_cancelled(ledger: JobLedger) -> None:
    for n in (1, 2):
        ledger.mark_submitted(ledger.begin_submit(MODEL, {"n": n}), f"req-{n}", None)
    assert ledger.mark_failed("req-1", "CUDA out of memory")
    assert ledger.mark_failed("req-2", "cancelled by the user", cancelled=True)
    first, second = ledger.get("req-1"), ledger.get("req-2")
    assert first is not None and second is not None
    assert (first.state, first.error) == ("failed", "CUDA out of memory")
    assert (second.state, second.error) == ("cancelled", "cancelled by the user")
    assert ledger.unfinished() == []


def test_calls_for_unknown_ids_change_nothing(ledger: JobLedger) -> None:
    assert ledger.get("never-submitted") is None
    assert ledger.get_row(12345) is None
    assert not ledger.mark_submitted(12345, "req-1", None)
    assert not ledger.store_result("never-submitted", {"x": 1}, [])
    assert not ledger.mark_failed("never-submitted", "boom")
    assert not ledger.record_download("never-submitted", "https://u", "/p", "0" * 64, 1)
    assert ledger.list_jobs() == []


def test_duplicate_request_id_is_refused(ledger: JobLedger) -> None:
    ledger.mark_submitted(ledger.begin_submit(MODEL, {}), "req-1", None)
    other = ledger.begin_submit(MODEL, {})
    with pytest.raises(LedgerError, match=r"(?i)unique"):
        ledger.mark_submitted(other, "req-1", None)
    row = ledger.get_row(other)
    assert row is not None and row.state == "submitting"  # the failed transaction was rolled back


# ---- listing --------------------------------------------------------------------------------------------------


def test_list_jobs_filters_orders_newest_first_and_limits(backend: Backend) -> None:
    clock = FakeClock()
    with backend.open(clock=clock) as ledger:
        ids = []
        for n, model in enumerate(["fal-ai/a", "fal-ai/b", "fal-ai/a", "fal-ai/b", "fal-ai/a"]):
            clock.now = 1_000.0 + 10 * n
            ids.append(ledger.begin_submit(model, {"n": n}))
        clock.now = 2_000.0
        ledger.mark_submitted(ids[0], "req-0", None)
        ledger.mark_submitted(ids[1], "req-1", None)
        ledger.store_result("req-1", {"ok": True}, [])

        assert [r.id for r in ledger.list_jobs()] == ids[::-1]
        assert [r.id for r in ledger.list_jobs(limit=2)] == [ids[4], ids[3]]
        assert [r.id for r in ledger.list_jobs(endpoint_id="fal-ai/a")] == [ids[4], ids[2], ids[0]]
        assert [r.id for r in ledger.list_jobs(state="completed")] == [ids[1]]
        assert [r.id for r in ledger.list_jobs(state="submitting", endpoint_id="fal-ai/b")] == [ids[3]]
        assert [r.id for r in ledger.list_jobs(since=1_020.0)] == [ids[4], ids[3], ids[2]]  # filters submit time
        assert [r.id for r in ledger.list_jobs(since=1_020.0, endpoint_id="fal-ai/a", limit=1)] == [ids[4]]
        assert ledger.list_jobs(since=5_000.0) == []

        with pytest.raises(ValueError, match="unknown state"):
            ledger.list_jobs(state="done")
        with pytest.raises(ValueError, match="limit"):
            ledger.list_jobs(limit=0)


def test_same_second_submits_keep_insertion_order(backend: Backend) -> None:
    with backend.open(clock=FakeClock()) as ledger:
        ids = [ledger.begin_submit(MODEL, {"n": n}) for n in range(3)]
        assert [r.id for r in ledger.list_jobs()] == ids[::-1]


def test_unfinished_is_submitted_jobs_oldest_first(backend: Backend) -> None:
    clock = FakeClock()
    with backend.open(clock=clock) as ledger:
        for n in range(5):
            clock.now = 1_000.0 + n
            ledger.mark_submitted(ledger.begin_submit(MODEL, {"n": n}), f"req-{n}", n)
        ledger.begin_submit(MODEL, {"still": "submitting"})
        ledger.store_result("req-1", {"ok": True}, [])
        ledger.mark_failed("req-3", "boom")

        assert [r.request_id for r in ledger.unfinished()] == ["req-0", "req-2", "req-4"]
        assert [r.request_id for r in ledger.unfinished(limit=2)] == ["req-0", "req-2"]


# ---- durability and concurrency -------------------------------------------------------------------------------


def test_result_is_served_after_a_restart(backend: Backend) -> None:
    with backend.open() as first:
        row_id = first.begin_submit(MODEL, {"prompt": "ünïcode ✓"})
        first.mark_submitted(row_id, "req-1", 0)
        first.store_result("req-1", {"video": {"url": "https://v3.fal.media/o.mp4"}}, ["https://v3.fal.media/o.mp4"])
        first.record_download("req-1", "https://v3.fal.media/o.mp4", "/tmp/o.mp4", "a" * 64, 123)
        before = first.get("req-1")

    with backend.open() as second:
        after = second.get("req-1")
        assert after is not None
        assert after == before
        assert after.input == {"prompt": "ünïcode ✓"}
        assert after.result == {"video": {"url": "https://v3.fal.media/o.mp4"}}
        assert second.list_jobs(state="completed") == [after]


def test_threads_share_one_ledger(ledger: JobLedger) -> None:
    def work(n: int) -> None:
        for i in range(20):
            ledger.mark_submitted(ledger.begin_submit(MODEL, {"n": n}), f"t{n}-{i}", None)
            ledger.list_jobs(limit=5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    rows = ledger.list_jobs(limit=1_000)
    assert len(rows) == 160
    assert {r.request_id for r in rows} == {f"t{n}-{i}" for n in range(8) for i in range(20)}


WRITER = """
import sys, time
from pathlib import Path
from tests.postgres import open_target
target, tag, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
with open_target(target) as ledger:  # both open the fresh ledger at once: creation races too
    for i in range(count):
        row = ledger.begin_submit("fal-ai/test", {"writer": tag, "i": i})
        ledger.mark_submitted(row, f"{tag}-{i}", i)
print("done", flush=True)
"""


def test_two_processes_write_at_once(tmp_path: Path, backend: Backend) -> None:
    count, go = 100, tmp_path / "go"
    writers = [run_python(WRITER, backend.target, tag, str(count), str(go)) for tag in ("desktop", "cursor")]
    time.sleep(0.3)  # let both interpreters start and wait on the go file
    go.touch()
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert (writer.returncode, out.strip(), err) == (0, "done", "")

    with backend.open() as ledger:
        rows = ledger.list_jobs(limit=10 * count)
    assert len(rows) == 2 * count
    assert len({r.id for r in rows}) == 2 * count
    expected = {f"{tag}-{i}" for tag in ("desktop", "cursor") for i in range(count)}
    assert {r.request_id for r in rows} == expected
    assert {r.state for r in rows} == {"submitted"}


KILLED = """
import sys
from tests.postgres import open_target
ledger = open_target(sys.argv[1])
n = 0
while True:
    row = ledger.begin_submit("fal-ai/test", {"n": n, "pad": "x" * 3000})
    print(row, flush=True)
    n += 1
"""


@POSIX
def test_sigkill_mid_write_loses_no_recorded_row(backend: Backend) -> None:
    printed: list[int] = []
    for _ in range(3):  # several kills at random points of the write loop
        child = run_python(KILLED, backend.target)
        assert child.stdout is not None
        seen = 0
        while seen < 150:
            line = child.stdout.readline()
            assert line, f"child stopped early: {child.communicate()[1]}"
            printed.append(int(line))
            seen += 1
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
        printed.extend(int(line) for line in rest.split())
        assert child.returncode == -signal.SIGKILL

    with backend.open() as ledger:
        if backend.name == "sqlite":
            with closing(sqlite3.connect(backend.target)) as probe:
                assert probe.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        missing = [row_id for row_id in printed if ledger.get_row(row_id) is None]
        assert missing == []
        assert ledger.get_row(ledger.begin_submit(MODEL, {})) is not None  # and it still takes writes


# ---- files: bad, foreign, newer, permissions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"this is not a database\n" * 200, b"SQLite format 3\x00" + bytes(range(256)) * 16],
    ids=["garbage", "sqlite-header-then-garbage"],
)
def test_corrupt_file_is_reported_and_left_unchanged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(content)
    with pytest.raises(LedgerError) as caught:
        Ledger(path)
    message = str(caught.value)
    assert str(path) in message
    assert "move it aside" in message.lower()
    assert path.read_bytes() == content
    assert siblings(path) == []


def test_newer_schema_is_reported_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    newer = sqlite3.connect(path)
    newer.executescript(
        f"CREATE TABLE jobs (id INTEGER PRIMARY KEY, v2 TEXT); PRAGMA user_version = {SCHEMA_VERSION + 1};"
    )
    newer.close()
    content = path.read_bytes()

    with pytest.raises(LedgerError) as caught:
        Ledger(path)
    message = str(caught.value)
    assert f"newer fal-queue-mcp (schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade" in message
    assert str(path) in message
    assert path.read_bytes() == content
    assert siblings(path) == []


def test_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    other = sqlite3.connect(path)
    other.executescript("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
    other.close()
    content = path.read_bytes()
    with pytest.raises(LedgerError, match="not a fal-queue-mcp job ledger"):
        Ledger(path)
    assert path.read_bytes() == content


def test_new_file_is_initialised_at_the_current_schema(path: Path, sqlite_ledger: Ledger) -> None:
    probe = sqlite3.connect(path)
    assert probe.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert probe.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    indexes = {name for (name,) in probe.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_request_id", "jobs_submitted_at", "jobs_state", "jobs_updated_at", "jobs_endpoint"} <= indexes
    columns = {row[1] for row in probe.execute("PRAGMA table_info(jobs)")}
    assert {"watch_owner", "watch_until", "watch_kind", "route_family"} <= columns
    probe.close()


def test_a_schema_1_file_is_migrated_keeping_its_jobs(path: Path) -> None:
    from server.jobs.ledger.sqlite import MIGRATIONS

    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(path)) as old:  # a ledger as the previous release wrote it
        for statement in MIGRATIONS[0]:
            old.execute(statement)
        for request_id, endpoint in [("req-old", "fal-ai/x"), ("831922", "kling/v1/videos/text2video"),
                                     ("4f3a", "luma/generations")]:  # fmt: skip
            old.execute(
                "INSERT INTO jobs (request_id, endpoint_id, state, input, submitted_at, updated_at)"
                " VALUES (?, ?, 'submitted', '{}', 1.0, 1.0)",
                (request_id, endpoint),
            )
        old.execute("PRAGMA user_version = 1")
        old.commit()
    with Ledger(path) as ledger:
        # each job's route family, read from its route by the migration
        assert [(row.request_id, row.route_family) for row in ledger.unfinished()] == [
            ("req-old", "fal"), ("831922", "kling"), ("4f3a", "luma")
        ]  # fmt: skip
        assert ledger.claim_wait("req-old", 30) == "taken"
        new = ledger.begin_submit("luma/generations/extend", {})
        ledger.mark_submitted(new, "5b6c", None)
        assert (row := ledger.get("5b6c")) is not None and row.route_family == "luma"
    with closing(sqlite3.connect(path)) as probe:
        assert probe.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_empty_existing_file_becomes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.touch()
    with Ledger(path) as ledger:
        assert ledger.get_row(ledger.begin_submit(MODEL, {})) is not None


@POSIX
def test_directory_and_files_are_private(path: Path) -> None:
    nested = path.parent / "deeper" / "jobs.sqlite3"
    with Ledger(nested) as ledger:
        ledger.begin_submit(MODEL, {"prompt": "private"})
        for directory in (path.parent, nested.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        for file in nested.parent.iterdir():  # the database and its -wal / -shm companions
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_closed_ledger_raises(ledger: JobLedger) -> None:
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.begin_submit(MODEL, {})


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Ledger.default_path(tmp_path) == tmp_path / "jobs.sqlite3"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    default = Ledger.default_path(None)
    assert default.name == "jobs.sqlite3"
    assert default.parent.name == "fal-queue-mcp"
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "xdg" / "fal-queue-mcp" / "jobs.sqlite3"


def test_stale_submitting_rows_are_settled_as_unknown(backend: Backend) -> None:
    now = [1000.0]
    with backend.open(clock=lambda: now[0]) as ledger:
        old = ledger.begin_submit("fal-ai/veo3", {"prompt": "a"})
        now[0] = 2000.0
        fresh = ledger.begin_submit("fal-ai/veo3", {"prompt": "b"})
        assert ledger.settle_stale_submits(older_than=1500.0) == 1
        old_row, fresh_row = ledger.get_row(old), ledger.get_row(fresh)
        assert old_row is not None and old_row.state == "unknown" and "may exist" in (old_row.error or "")
        assert fresh_row is not None and fresh_row.state == "submitting"
        assert ledger.mark_submitted(old, "late-id", None)  # a late answer still lands


def test_every_writer_cuts_the_secrets_out(backend: Backend) -> None:
    key = "sk-echoed-0123456789"
    with backend.open(secrets=[key]) as ledger:
        row_id = ledger.begin_submit(MODEL, {"prompt": f"my key {key}", key: "as a field name"})
        assert ledger.mark_unknown(row_id, f"no answer (key {key})")
        assert ledger.mark_submitted(row_id, "req-1", None)
        assert ledger.store_result("req-1", {"video": {"url": f"https://x/{key}.mp4"}}, [f"https://x/{key}.mp4"])
        assert ledger.record_download("req-1", f"https://x/{key}.mp4", f"/tmp/{key}.mp4", "0" * 64, 1)
        other = ledger.begin_submit(MODEL, {})
        ledger.mark_submitted(other, "req-2", None)
        assert ledger.mark_failed("req-2", f"upstream said {key}")
        rows = ledger.list_jobs()
    assert rows and key not in repr(rows)
    assert "[redacted]" in repr(rows)


def test_lease_writes_skip_the_fsync_but_every_other_write_keeps_it(sqlite_ledger: Ledger) -> None:
    sqlite_ledger.mark_submitted(sqlite_ledger.begin_submit(MODEL, {}), "req-1", None)
    assert sqlite_ledger.claim_wait("req-1", 30) == "taken"
    connection = sqlite_ledger._connection()
    assert tuple(connection.execute("PRAGMA synchronous").fetchone()) == (2,)  # FULL again after the lease write
