"""Leases (one follower per job) and the relay of other instances' changes, on both ledger backends: several
ledgers with different instance names on one file or database stand for several server instances."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from server.jobs.ledger import JobLedger
from tests.postgres import Backend

MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
LONG = 600.0  # a lease that cannot expire during a test


@pytest.fixture
def pair(backend: Backend) -> Iterator[tuple[JobLedger, JobLedger]]:
    with backend.open(instance="inst-a") as first, backend.open(instance="inst-b") as second:
        yield first, second


def submit(ledger: JobLedger, count: int, prefix: str = "req") -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(count)]
    for request_id in ids:
        ledger.mark_submitted(ledger.begin_submit(MODEL, {"id": request_id}), request_id, None)
    return ids


def claimed(ledger: JobLedger, lease: float = LONG, limit: int = 100) -> list[str]:
    return [str(row.request_id) for row in ledger.claim_watch(lease, limit=limit, submitted_since=0.0)]


def eventually(check, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def test_two_watchers_claim_disjoint_jobs_and_renew_their_own(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    ids = submit(a, 6)
    assert claimed(a, limit=4) == ids[:4]  # oldest first
    assert claimed(b) == ids[4:]  # what is left; a's are not taken
    assert claimed(a, limit=4) == ids[:4]  # renewed, still a's
    assert claimed(b) == ids[4:]
    lease = a.lease(ids[0])
    assert lease is not None and (lease.owner, lease.kind) == ("inst-a", "watch") and lease.seconds_left > LONG - 60


def test_an_expired_lease_is_taken_over(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    ids = submit(a, 3)
    assert claimed(a, lease=1.0) == ids  # a stops renewing: as if killed
    assert claimed(b) == []
    eventually(lambda: claimed(b) == ids)
    assert claimed(a) == []  # b holds them now
    lease = b.lease(ids[1])
    assert lease is not None and lease.owner == "inst-b"


def test_a_wait_takes_a_watchers_lease_but_not_another_waits(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    (job,) = submit(a, 1)
    assert claimed(a) == [job]
    assert b.claim_wait(job, LONG) == "taken"  # from a's watcher
    lease = a.lease(job)
    assert lease is not None and (lease.owner, lease.kind) == ("inst-b", "wait")
    assert claimed(a) == []  # a's watcher leaves it alone now
    assert a.claim_wait(job, LONG) == "busy"  # b's wait keeps it
    assert b.claim_wait(job, LONG) == "taken"  # b again (a second wait of b's) is fine
    assert b.release(job)
    assert a.claim_wait(job, LONG) == "taken"
    assert a.claim_wait("never-submitted", LONG) == "untracked"


def test_renewing_a_wait_and_noticing_a_lost_lease(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    (job,) = submit(a, 1)
    assert b.claim_wait(job, 1.0) == "taken"
    assert b.renew_wait(job, 1.0)
    eventually(lambda: a.claim_wait(job, LONG) == "taken")  # b stopped renewing: its lease expired
    assert not b.renew_wait(job, LONG)  # b learns it no longer follows the job
    assert not b.release(job)  # and cannot give back what it does not hold
    lease = b.lease(job)
    assert lease is not None and lease.owner == "inst-a"


def test_keeping_an_outcome_ends_the_lease(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    done, failed = submit(a, 2)
    assert a.claim_wait(done, LONG) == "taken"
    assert claimed(b) == [failed]
    assert a.store_result(done, {"ok": True}, [])
    assert b.mark_failed(failed, "boom")
    assert a.lease(done) is None and b.lease(failed) is None
    assert claimed(a) == [] and claimed(b) == []  # finished jobs are never claimed
    assert a.claim_wait(done, LONG) == "untracked"


def test_release_all_gives_every_lease_back(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    ids = submit(a, 4)
    assert claimed(a, limit=3) == ids[:3]
    assert a.claim_wait(ids[3], LONG) == "taken"
    assert a.release_all() == 4
    assert claimed(b) == ids  # at once, no expiry to wait for
    assert a.release_all() == 0


def test_claims_leave_old_jobs_and_respect_the_limit(backend: Backend) -> None:
    now = [1000.0]
    with backend.open(clock=lambda: now[0], instance="inst-a") as ledger:
        old = submit(ledger, 2, "old")
        now[0] = 5000.0
        new = submit(ledger, 3, "new")
        rows = ledger.claim_watch(LONG, limit=2, submitted_since=4000.0)
        assert [row.request_id for row in rows] == new[:2]
        assert [row.request_id for row in ledger.claim_watch(LONG, limit=10, submitted_since=4000.0)] == new
        assert all(ledger.lease(request_id) is None for request_id in old)


def test_concurrent_claims_never_overlap(backend: Backend) -> None:
    ledgers = [backend.open(instance=f"inst-{n}") for n in range(4)]
    try:
        ids = set(submit(ledgers[0], 60))
        held: dict[str, set[str]] = {ledger.instance: set() for ledger in ledgers}

        def work(ledger: JobLedger) -> None:
            for _ in range(15):
                held[ledger.instance].update(claimed(ledger, limit=20))  # 4 x 20 >= 60: all are held

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(work, ledgers))
        owners = list(held.values())
        overlaps = [a & b for i, a in enumerate(owners) for b in owners[i + 1 :]]
        assert all(not overlap for overlap in overlaps), overlaps
        assert set().union(*owners) == ids
        for request_id in ids:
            lease = ledgers[0].lease(request_id)
            assert lease is not None and request_id in held[lease.owner]
    finally:
        for ledger in ledgers:
            ledger.close()


# ---- changes made by another instance -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_changes_made_elsewhere_are_relayed(pair: tuple[JobLedger, JobLedger]) -> None:
    a, b = pair
    heard: list[str] = []
    job, probe = submit(a, 2)

    async with anyio.create_task_group() as group:
        group.start_soon(b.relay_changes, heard.append)
        with anyio.fail_after(30):
            # until b's relay is listening: a change made before that is not relayed
            while probe not in heard:
                a.record_download(probe, "https://x/o.mp4", f"/tmp/{time.monotonic()}.mp4", "0" * 64, 1)
                await anyio.sleep(0.3)
            assert a.store_result(job, {"video": {"url": "https://x/o.mp4"}}, ["https://x/o.mp4"])
            while job not in heard:
                await anyio.sleep(0.05)
        group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_postgres_relays_only_other_instances_changes(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite tells changes by time, not by who made them; a repeat is allowed")
    with backend.open(instance="inst-a") as a, backend.open(instance="inst-b") as b:
        own, probe, other = submit(a, 3)
        heard: list[str] = []
        async with anyio.create_task_group() as group:
            group.start_soon(a.relay_changes, heard.append)
            with anyio.fail_after(30):
                while probe not in heard:
                    b.record_download(probe, "https://x/o.mp4", f"/tmp/{time.monotonic()}.mp4", "0" * 64, 1)
                    await anyio.sleep(0.3)
                a.store_result(own, {"ok": True}, [])  # a's own change, committed first
                b.store_result(other, {"ok": True}, [])
                while other not in heard:  # notifications arrive in commit order: a's would have come first
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        assert own not in heard
