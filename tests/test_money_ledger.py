"""Money in the ledger, on both backends: a submit's hold and the day's budget checked in one atomic step (raced
by two processes), holds settled to the bill or the estimate and released by jobs that never ran, spend summed
by day and model, and fal's prices cached for every instance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.errors import BudgetError
from server.jobs.ledger.base import Charge
from server.money.budget import Reservation, check_day
from tests.postgres import Backend

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-12-08"
MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"


def _charge(usd: float, budget: float | None = None, day: str = DAY) -> Charge:
    reservation = Reservation(usd, day, budget)
    return Charge({"usd": usd, "unit": "second"}, usd, day, lambda spent: check_day(reservation, spent))


def test_a_hold_is_kept_then_settled_to_the_estimate_or_the_bill(backend: Backend) -> None:
    with backend.open() as ledger:
        for name in ("billed", "estimated", "unknown"):
            row_id = ledger.begin_submit(MODEL, {"n": name}, _charge(1.0))
            row = ledger.get_row(row_id)
            assert row is not None and (row.cost_usd, row.cost_kind, row.budget_day) == (1.0, "reserved", DAY)
            assert row.estimate == {"usd": 1.0, "unit": "second"}
            if name != "unknown":
                ledger.mark_submitted(row_id, f"req-{name}", None)
                ledger.store_result(f"req-{name}", {"ok": True}, [])
            else:
                ledger.mark_unknown(row_id, "timed out")  # a job may be running: its hold stays
        assert ledger.settle_cost("req-billed", 0.75)
        kinds = {row.request_id: (row.cost_usd, row.cost_kind) for row in ledger.list_jobs()}
        assert kinds["req-billed"] == (0.75, "billed")
        assert kinds["req-estimated"] == (1.0, "estimated")
        assert kinds[None] == (1.0, "reserved")
        lines = ledger.spend(since_day=DAY)
        assert [(line.endpoint_id, line.usd, line.jobs, line.billed_usd) for line in lines] == [(MODEL, 2.75, 3, 0.75)]


def test_a_submit_cut_off_by_a_kill_keeps_its_hold_until_resolved(backend: Backend) -> None:
    """A server killed mid-submit leaves the row 'submitting'; the next start settles it 'unknown' (the job may be
    running and billed), and its hold keeps counting against the budget: no budget leaks for ever, none is freed
    that may have been spent."""
    with backend.open() as ledger:
        ledger.begin_submit(MODEL, {}, _charge(3.0, budget=5.0))
    with backend.open() as restarted:
        assert restarted.settle_stale_submits(older_than=float("inf")) == 1
        (row,) = restarted.list_jobs()
        assert (row.state, row.cost_usd, row.cost_kind) == ("unknown", 3.0, "reserved")
        with pytest.raises(BudgetError, match=r"only \$2\.00"):
            restarted.begin_submit(MODEL, {}, _charge(2.5, budget=5.0))
        assert restarted.mark_submitted(row.id, "req-found-later", None)  # the request id turned up
        assert restarted.mark_failed("req-found-later", "it failed")
        restarted.begin_submit(MODEL, {}, _charge(5.0, budget=5.0))  # released: the whole budget is back


def test_jobs_that_never_ran_release_their_hold(backend: Backend) -> None:
    with backend.open() as ledger:
        rejected = ledger.begin_submit(MODEL, {}, _charge(2.0))
        assert ledger.mark_rejected(rejected, "422")
        for name, cancelled in (("failed", False), ("cancelled", True)):
            row_id = ledger.begin_submit(MODEL, {}, _charge(2.0))
            ledger.mark_submitted(row_id, f"req-{name}", None)
            assert ledger.mark_failed(f"req-{name}", "no", cancelled=cancelled)
        unpriced = ledger.begin_submit(MODEL, {})  # no estimate: no cost, before or after
        ledger.mark_rejected(unpriced, "422")
        rows = ledger.list_jobs()
        assert {(row.cost_usd, row.cost_kind) for row in rows if row.id != unpriced} == {(0.0, "released")}
        assert next(row for row in rows if row.id == unpriced).cost_kind is None
        assert ledger.spend(since_day=DAY) == []
        # released holds leave the whole budget
        ledger.begin_submit(MODEL, {}, _charge(5.0, budget=5.0))


def test_the_budget_check_refuses_without_writing_a_row(backend: Backend) -> None:
    with backend.open() as ledger:
        ledger.begin_submit(MODEL, {}, _charge(4.0, budget=5.0))
        with pytest.raises(BudgetError, match=r"only \$1\.00 of FAL_MCP_DAILY_BUDGET"):
            ledger.begin_submit(MODEL, {}, _charge(1.5, budget=5.0))
        assert len(ledger.list_jobs()) == 1
        ledger.begin_submit(MODEL, {}, _charge(1.5, budget=5.0, day="2026-12-09"))  # another day, another budget


RACER = """
import sys, threading, json
sys.path.insert(0, {root!r})
from server.errors import BudgetError
from server.jobs.ledger.base import Charge
from server.money.budget import Reservation, check_day
from tests.postgres import open_target

ledger = open_target({target!r})
reservation = Reservation(1.0, {day!r}, 5.0)
start = threading.Barrier({threads})
passed = []

def submit(n):
    start.wait()
    try:
        ledger.begin_submit("m", {{"n": n}}, Charge(None, 1.0, {day!r}, lambda spent: check_day(reservation, spent)))
        passed.append(n)
    except BudgetError:
        pass

threads = [threading.Thread(target=submit, args=(n,)) for n in range({threads})]
for t in threads: t.start()
for t in threads: t.join()
ledger.close()
print(json.dumps(len(passed)))
"""


def test_twenty_racing_submits_pass_a_five_dollar_budget_exactly_five_times(backend: Backend) -> None:
    """Two processes (two instances on PostgreSQL), ten threads each, all at once: $1 each against $5 a day."""
    backend.open().close()  # created and migrated before the race
    script = RACER.format(root=str(ROOT), target=backend.target, day=DAY, threads=10)
    racers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    passed = [json.loads(racer.communicate(timeout=120)[0]) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert sum(passed) == 5
    with backend.open() as ledger:
        assert len(ledger.list_jobs(limit=100)) == 5
        assert [line.usd for line in ledger.spend(since_day=DAY)] == [5.0]


def test_prices_are_cached_for_every_instance(backend: Backend) -> None:
    with backend.open() as ledger:
        assert ledger.cached_price("kling") is None
        ledger.cache_price("kling", {"unit": "second", "unit_price": 0.05}, 100.0)
        ledger.cache_price("kling", {"unit": "second", "unit_price": 0.07}, 200.0)  # refreshed
    with backend.open() as other:  # another instance, or after a restart
        assert other.cached_price("kling") == ({"unit": "second", "unit_price": 0.07}, 200.0)
