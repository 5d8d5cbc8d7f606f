"""The caps on spending: per job (`FAL_MCP_MAX_JOB_COST`) and per day (`FAL_MCP_DAILY_BUDGET`).

Pure rules here; the atomic part (the day's spend read and the job's reservation written in one transaction, so two
concurrent submits cannot both pass the last dollar) is the ledger's (`reserve` in the ledger backends). No tool
argument can raise a cap: `max_cost_usd` only ever lowers what one submit may spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from server.errors import BudgetError


@dataclass(frozen=True)
class Caps:
    max_job_cost: float | None
    daily_budget: float | None
    allow_unpriced: bool
    time_zone: str

    @property
    def any(self) -> bool:
        return self.max_job_cost is not None or self.daily_budget is not None


@dataclass(frozen=True)
class Reservation:
    """What a submit asks the ledger to hold: `usd` counted against `day`'s budget of `daily_budget` (None: no
    daily cap, the amount is still recorded so spend sums see it)."""

    usd: float
    day: str
    daily_budget: float | None


def budget_day(now: datetime, time_zone: str) -> str:
    """The day `now` falls on where the user counts days (their configured time zone), as YYYY-MM-DD."""
    return now.astimezone(ZoneInfo(time_zone)).date().isoformat()


def check_job(caps: Caps, model: str, estimate_usd: float | None, unknown_why: str | None) -> None:
    """The rules that need no ledger: a known price under the per-job cap. Raises `BudgetError`."""
    if estimate_usd is None:
        if caps.any and not caps.allow_unpriced:
            names = " and ".join(
                name
                for name, value in (
                    ("FAL_MCP_MAX_JOB_COST", caps.max_job_cost),
                    ("FAL_MCP_DAILY_BUDGET", caps.daily_budget),
                )
                if value is not None
            )
            raise BudgetError(
                f"Refused: {names} is set but the cost of this {model} job is unknown ({unknown_why or 'no price'}), "
                "so the cap cannot be kept. Give the model a price in FAL_MCP_PRICES, or set "
                "FAL_MCP_ALLOW_UNPRICED=true to allow unpriced models. Nothing was submitted."
            )
        return
    if caps.max_job_cost is not None and estimate_usd > caps.max_job_cost:
        raise BudgetError(
            f"Refused: this job is estimated at ${estimate_usd:.2f}, over FAL_MCP_MAX_JOB_COST "
            f"(${caps.max_job_cost:.2f} per job). Choose a shorter or cheaper setting, or ask the user to raise "
            "FAL_MCP_MAX_JOB_COST. Nothing was submitted."
        )


def check_day(reservation: Reservation, spent: float) -> None:
    """Inside the ledger's transaction: would `reservation` pass the day's budget, given `spent` (costs and open
    reservations of that day)? Raises `BudgetError` naming the setting, the estimate and what is left."""
    if reservation.daily_budget is None:
        return
    left = max(0.0, reservation.daily_budget - spent)
    if reservation.usd > left + 1e-9:
        raise BudgetError(
            f"Refused: this job is estimated at ${reservation.usd:.2f}, but only ${left:.2f} of "
            f"FAL_MCP_DAILY_BUDGET (${reservation.daily_budget:.2f} a day) is left for {reservation.day} "
            f"(${spent:.2f} spent or reserved). Wait for the next day, or ask the user to raise "
            "FAL_MCP_DAILY_BUDGET. Nothing was submitted."
        )


def check_ceiling(max_cost_usd: float | None, estimate_usd: float | None) -> None:
    """The assistant's own ceiling (`max_cost_usd`): it may only refuse, never allow more than the caps do."""
    if max_cost_usd is None:
        return
    if estimate_usd is None:
        raise BudgetError(
            f"Refused: max_cost_usd is {max_cost_usd:.2f} but this job's cost is unknown, so the ceiling cannot be "
            "kept. Nothing was submitted."
        )
    if estimate_usd > max_cost_usd:
        raise BudgetError(
            f"Refused: this job is estimated at ${estimate_usd:.2f}, over max_cost_usd (${max_cost_usd:.2f}). "
            "Nothing was submitted."
        )
