"""The caps' rules, free of the ledger: per job, per day (with what is left), the unknown-price rule, the
assistant's ceiling, and the day a job counts against in the user's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.errors import BudgetError
from server.money.budget import Caps, Reservation, budget_day, check_ceiling, check_day, check_job

CAPS = Caps(max_job_cost=2.0, daily_budget=5.0, allow_unpriced=False, time_zone="UTC")


def test_per_job_cap_refuses_above_and_names_the_setting() -> None:
    check_job(CAPS, "m", 2.0, None)  # at the cap is fine
    with pytest.raises(BudgetError, match=r"FAL_MCP_MAX_JOB_COST.*Nothing was submitted") as caught:
        check_job(CAPS, "m", 2.01, None)
    assert "$2.01" in str(caught.value)


def test_unknown_price_is_refused_under_a_cap_unless_allowed() -> None:
    with pytest.raises(BudgetError, match="FAL_MCP_ALLOW_UNPRICED"):
        check_job(CAPS, "m", None, "no price in FAL_MCP_PRICES")
    check_job(Caps(2.0, None, allow_unpriced=True, time_zone="UTC"), "m", None, None)
    check_job(Caps(None, None, allow_unpriced=False, time_zone="UTC"), "m", None, None)  # no cap, no rule


def test_daily_budget_says_what_is_left() -> None:
    check_day(Reservation(1.0, "2026-12-08", 5.0), spent=4.0)  # exactly the last dollar
    with pytest.raises(BudgetError, match="FAL_MCP_DAILY_BUDGET") as caught:
        check_day(Reservation(1.5, "2026-12-08", 5.0), spent=4.0)
    assert "$1.00" in str(caught.value) and "$1.50" in str(caught.value)
    check_day(Reservation(100.0, "2026-12-08", None), spent=1000.0)  # no daily cap


def test_the_assistants_ceiling_only_refuses() -> None:
    check_ceiling(None, 3.0)
    check_ceiling(3.0, 3.0)
    with pytest.raises(BudgetError, match="max_cost_usd"):
        check_ceiling(2.99, 3.0)
    with pytest.raises(BudgetError, match="unknown"):
        check_ceiling(2.0, None)


def test_the_budget_day_is_the_users_day() -> None:
    late_evening_utc = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)
    assert budget_day(late_evening_utc, "UTC") == "2026-12-08"
    assert budget_day(late_evening_utc, "Europe/Paris") == "2026-12-09"
    assert budget_day(late_evening_utc, "America/New_York") == "2026-12-08"
