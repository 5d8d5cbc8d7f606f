"""The ledger as it grows (issue 24): listing, request-id completion and a job's lookup do as much work with
20,000 other jobs recorded as with none; job rows stay small whatever was sent; a schema-2 ledger upgrades in
place; an upstream error holding NUL is kept on both backends; a ledger failure reaches the assistant as a
sentence. Work is counted, never timed: SQLite's progress handler counts the virtual-machine steps a query takes.
The speed figures at a million jobs are a benchmark (`python -m bench --only ledger_scale`)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from server.jobs.ledger import SCHEMA_VERSION, SqliteLedger
from server.jobs.ledger.sql import MIGRATIONS
from server.runtime import Runtime
from server.sandbox import Fault, Sandbox
from server.sandbox.media import tiny_png
from tests.helpers import SEED_INPUT, SEED_MODEL, connect, make_settings, text_of
from tests.postgres import Backend
from tools.mcp_completion import _request_ids

pytestmark = pytest.mark.anyio

RARE = "fal-ai/rare-model"  # the few jobs a listing looks for
COMMON = ("fal-ai/common-a", "fal-ai/common-b")  # the many others
OTHER_JOBS = 20_000
STEP = 100  # the progress handler is called every STEP virtual-machine instructions


def _fill(ledger: SqliteLedger, count: int) -> None:
    """`count` old jobs of two common models, each model in one state only (completed or failed): a filter on a
    common model *and* the other state matches none of them, and must not look at them all to find that out."""
    rows = [
        (f"old-{n}", COMMON[n % 2], ("completed", "failed")[n % 2], '{"prompt": "old"}', 1000.0 + n, 1000.0 + n)
        for n in range(count)
    ]
    with closing(sqlite3.connect(ledger.path)) as conn, conn:
        conn.executemany(
            "INSERT INTO jobs (request_id, endpoint_id, state, input, submitted_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def _recent_jobs(ledger: SqliteLedger) -> str:
    """Three recent jobs of the rare model (one failed); returns one's request id."""
    for n in range(3):
        row_id = ledger.begin_submit(RARE, {"prompt": f"recent {n}"})
        ledger.mark_submitted(row_id, f"recent-{n}", None)
    ledger.mark_failed("recent-2", "it broke")
    return "recent-1"


def _steps(ledger: SqliteLedger, call: Any) -> int:
    """How many virtual-machine steps (in units of STEP) SQLite runs for `call`."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    conn = ledger._conn
    assert conn is not None
    conn.set_progress_handler(count, STEP)
    try:
        call()
    finally:
        conn.set_progress_handler(None, STEP)
    return counted[0]


LOOKUPS: dict[str, Any] = {
    "no filter": lambda ledger: ledger.list_jobs(limit=3),
    "a state nothing has": lambda ledger: ledger.list_jobs(state="cancelled"),
    "a rare state": lambda ledger: ledger.list_jobs(state="failed", endpoint_id=RARE),
    "a model nothing has": lambda ledger: ledger.list_jobs(endpoint_id="fal-ai/nobody"),
    "a rare model": lambda ledger: ledger.list_jobs(endpoint_id=RARE),
    "a common model in a state it never has": lambda ledger: ledger.list_jobs(endpoint_id=COMMON[0], state="failed"),
    "a model in a state nothing has": lambda ledger: ledger.list_jobs(endpoint_id=COMMON[1], state="unknown"),
    "since a recent time": lambda ledger: ledger.list_jobs(since=1_000_000.0),
    "a model since a recent time": lambda ledger: ledger.list_jobs(endpoint_id=COMMON[0], since=1_000_000.0),
    "a state since a recent time": lambda ledger: ledger.list_jobs(state="completed", since=1_000_000.0),
    "everything at once": lambda ledger: ledger.list_jobs(state="failed", endpoint_id=COMMON[0], since=1_000_000.0),
    "recent request ids": lambda ledger: ledger.recent_request_ids(limit=3),
    "one job": lambda ledger: ledger.get("recent-1"),
    "the watcher's unfinished jobs": lambda ledger: ledger.unfinished(limit=10),
    "giving the leases back at shutdown": lambda ledger: ledger.release_all(),
}


@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_lookups_do_no_more_work_with_many_other_jobs(tmp_path: Path, lookup: str) -> None:
    with (
        SqliteLedger(tmp_path / "few" / "jobs.sqlite3") as few,
        SqliteLedger(tmp_path / "many" / "jobs.sqlite3") as many,
    ):
        _fill(many, OTHER_JOBS)
        for ledger in (few, many):
            _recent_jobs(ledger)
        call = LOOKUPS[lookup]
        assert _found(call(few)) == _found(call(many))
        small, large = _steps(few, lambda: call(few)), _steps(many, lambda: call(many))
    # A scan of the other jobs would take well over OTHER_JOBS steps (hundreds of units); an index lookup a few.
    assert large <= small + 5, f"{lookup}: {large} units of {STEP} steps with {OTHER_JOBS} other jobs, {small} without"


def _found(answer: Any) -> Any:
    """A lookup's answer in a comparable form: request ids for rows, anything else as it is."""
    if isinstance(answer, list):
        return [getattr(item, "request_id", item) for item in answer]
    return getattr(answer, "request_id", answer)


# ---- request-id completion reads ids only -------------------------------------------------------------------


async def test_request_id_completion_reads_no_whole_row(sandbox: Sandbox, tmp_path: Path) -> None:
    runtime = Runtime(make_settings(sandbox, state_dir=tmp_path))
    ledger = runtime.jobs.ledger
    assert isinstance(ledger, SqliteLedger)
    big = {"prompt": "x", "image_url": "https://example.com/" + "a" * 100_000}  # a large input, as a job may have
    for n in range(3):
        ledger.mark_submitted(ledger.begin_submit(SEED_MODEL, big), f"req-{n}", None)
    statements: list[str] = []
    assert ledger._conn is not None
    ledger._conn.set_trace_callback(statements.append)
    try:
        assert await _request_ids(runtime, "req-", 1000) == ["req-2", "req-1", "req-0"]
    finally:
        ledger._conn.set_trace_callback(None)
        await runtime.aclose()
    assert statements, "the completion read nothing"
    for statement in statements:
        assert "input" not in statement and "result" not in statement, statement


# ---- what a job row keeps of its input ------------------------------------------------------------------------


async def test_a_local_file_sent_inline_is_kept_as_a_reference(sandbox: Sandbox, tmp_path: Path) -> None:
    photo = tmp_path / "cat photo.png"
    photo.write_bytes(tiny_png() + b"\0" * 50_000)  # a real PNG header, then bulk: a photo of some size
    settings = make_settings(
        sandbox,
        provider="uniapi",
        uniapi_key=sandbox.config.key,
        fal_key=None,
        file_roots=(tmp_path,),
        state_dir=tmp_path,
    )
    body = {"prompt": "the cat blinks", "image_url": str(photo)}
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": body})
        assert not answer.is_error, text_of(answer)
        request_id = answer.structured_content["request_id"]
    sent = next(r for r in sandbox.seen("POST") if r.path == "/" + SEED_MODEL).json()
    assert sent["image_url"].startswith("data:image/png;base64,")  # the model got the file itself
    with SqliteLedger(SqliteLedger.default_path(tmp_path)) as ledger:
        row = ledger.get(request_id)
    assert row is not None
    assert row.input["image_url"] == {
        "local_file": str(photo.resolve()),
        "content_type": "image/png",
        "size": photo.stat().st_size,
        "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
    }
    assert len(json.dumps(row.input)) < 500


async def test_kling_raw_base64_is_kept_as_a_reference_and_an_upload_as_its_url(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tools.catalog import CATALOG
    from tools.uploads import ledger_body, publish_local_files, read_local_files

    photo = tmp_path / "me.png"
    photo.write_bytes(tiny_png())
    reference = {
        "local_file": str(photo.resolve()),
        "content_type": "image/png",
        "size": photo.stat().st_size,
        "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
    }

    class Storage:
        async def upload(self, media: Any) -> str:
            return f"https://storage.example/{media.path.name}"

    entry, body = CATALOG["kling/v1/images/kolors-virtual-try-on"], {"human_image": str(photo), "cloth_image": "x"}
    for storage, kept in ((None, reference), (Storage(), "https://storage.example/me.png")):
        rt = SimpleNamespace(settings=SimpleNamespace(file_roots=(tmp_path,), max_upload_bytes=10**6))
        rt.storage = lambda storage=storage: storage
        files, problems = await read_local_files(rt, entry, body)  # type: ignore[arg-type]
        assert problems == []
        sent, _ = await publish_local_files(rt, entry, body, files)  # type: ignore[arg-type]
        stored = await ledger_body(sent, files)
        assert stored["human_image"] == kept and stored["cloth_image"] == "x"
        if storage is None:  # the model still gets the file itself, as raw base64
            assert sent["human_image"] == base64.b64encode(photo.read_bytes()).decode()


def test_any_data_uri_or_bare_base64_is_shortened(tmp_path: Path) -> None:
    from server.jobs.keeping import Jobs

    jobs = Jobs(lambda: SqliteLedger(tmp_path / "jobs.sqlite3"), secrets=[], max_stored_result_bytes=1024)
    for head in ("data:image/png;name=cat.png;base64,", "data:text/plain;charset=utf-8,", "DATA:,"):
        kept = jobs.stored_input({"image_url": head + "A" * 100_000, "list": [head + "B" * 100_000]})
        assert len(json.dumps(kept)) < 300, head
        assert kept["image_url"].lower().startswith("data:") and "not kept" in kept["image_url"], head
    raw = jobs.stored_input({"image": "iVBORw0KGgo" + "A" * 100_000 + "==", "prompt": "a cat " * 3000})
    assert raw["image"] == "… (100013 characters of base64, not kept)" and raw["prompt"] == "a cat " * 3000


# ---- schema 3: the indexes, added in place ---------------------------------------------------------------------


def _previous_release(backend: Backend) -> None:
    """A ledger at schema 2 holding one job, as the previous release left it."""
    if backend.name == "sqlite":
        from server.jobs.ledger.sqlite import DIALECT

        path = Path(backend.target)
        path.parent.mkdir(parents=True)
        with closing(sqlite3.connect(path)) as old:
            for steps in MIGRATIONS[:2]:
                for statement in DIALECT.migration(steps):
                    old.execute(statement)
            old.execute(
                "INSERT INTO jobs (request_id, endpoint_id, state, input, submitted_at, updated_at)"
                " VALUES ('req-old', 'fal-ai/x', 'submitted', '{}', 1.0, 1.0)"
            )
            old.execute("PRAGMA user_version = 2")
            old.commit()
        return
    import psycopg

    from server.jobs.ledger.postgres_schema import DIALECT, VERSION_TABLE

    with psycopg.connect(backend.target, autocommit=True) as conn:
        for steps in MIGRATIONS[:2]:
            for statement in DIALECT.migration(steps):
                conn.execute(statement)
        conn.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
        conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (2)")
        conn.execute(
            "INSERT INTO fal_mcp_jobs (request_id, endpoint_id, state, input, submitted_at, updated_at)"
            " VALUES ('req-old', 'fal-ai/x', 'submitted', '{}', 1.0, 1.0)"
        )


def _indexes(backend: Backend) -> set[str]:
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.target)) as probe:
            return {name for (name,) in probe.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    import psycopg

    with psycopg.connect(backend.target, autocommit=True) as conn:
        return {name for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'fal_mcp_jobs'")}


def test_a_schema_2_ledger_gets_the_indexes_in_place_keeping_its_jobs(backend: Backend) -> None:
    _previous_release(backend)
    table = "jobs" if backend.name == "sqlite" else "fal_mcp_jobs"
    assert f"{table}_endpoint" not in _indexes(backend)
    with backend.open() as ledger:
        assert [row.request_id for row in ledger.list_jobs(endpoint_id="fal-ai/x")] == ["req-old"]
        assert ledger.claim_wait("req-old", 30) == "taken"
    assert {f"{table}_endpoint", f"{table}_endpoint_state", f"{table}_watch_owner"} <= _indexes(backend)
    with backend.open() as again:  # opened again: nothing left to migrate
        assert again.get("req-old") is not None
    assert SCHEMA_VERSION >= 3  # the indexes came with schema 3; later ones (4: route family) migrate too


# ---- NUL in an upstream error; ledger failures as sentences ------------------------------------------------------


def test_an_error_holding_nul_settles_the_job(backend: Backend) -> None:
    with backend.open() as ledger:
        row_id = ledger.begin_submit("fal-ai/x", {"prompt": "nul \x00 inside"})
        assert ledger.mark_submitted(row_id, "req-nul", None)
        assert ledger.mark_failed("req-nul", "the model said: bad\x00input")
        row = ledger.get("req-nul")
        assert row is not None and row.state == "failed" and row.error == "the model said: bad\ufffdinput"
        assert row.input == {"prompt": "nul \x00 inside"}  # JSON keeps it, escaped
        other = ledger.begin_submit("fal-ai/x", {})
        assert ledger.mark_rejected(other, "refused: \x00")


async def test_a_job_failing_with_nul_in_its_error_is_kept_failed(sandbox: Sandbox, backend: Backend) -> None:
    settings = make_settings(sandbox, **backend.settings())
    async with connect(settings) as client:
        answer = await client.call_tool("submit_fal_job", {"model": SEED_MODEL, "input": SEED_INPUT})
        request_id = answer.structured_content["request_id"]
        sandbox.finish_now(request_id)
        sandbox.inject(
            Fault(
                f"GET /fal-ai/kling-video/requests/{request_id}",
                status=422,
                body=b'{"detail": [{"msg": "bad\\u0000input", "loc": ["body", "prompt"]}]}',
            )
        )
        failed = await client.call_tool("get_fal_result", {"request_id": request_id})
        assert failed.is_error, text_of(failed)
        listed = (await client.call_tool("list_fal_jobs", {"status": "failed"})).structured_content
    assert [job["request_id"] for job in listed["jobs"]] == [request_id]


async def test_a_broken_ledger_answers_with_what_to_do(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger_file = SqliteLedger.default_path(tmp_path)
    ledger_file.parent.mkdir(parents=True, exist_ok=True)
    ledger_file.write_bytes(b"this is not a database at all" * 10)
    async with connect(make_settings(sandbox, state_dir=tmp_path)) as client:
        answer = await client.call_tool("list_fal_jobs", {})
    assert answer.is_error
    assert "not a SQLite database" in text_of(answer) and "Move it aside" in text_of(answer)
    assert "Error executing tool" not in text_of(answer)
