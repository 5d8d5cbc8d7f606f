"""The money service one running server holds: a quote for an input, the charge a submit puts on its row, what a
finished job cost, what was spent, and the account's balance. Protocol-free; the tools ask it and show its answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.errors import ConfigurationError
from server.jobs.ledger.base import Charge
from server.money.balance import Balance, BalanceUnavailable, fal_balance, uniapi_balance
from server.money.book import PriceBook
from server.money.budget import Caps, Reservation, budget_day, check_ceiling, check_day, check_job
from server.money.estimate import Estimate, estimate
from server.money.fal_pricing import fetch_fal_prices
from server.money.prices import Price, PriceTableError, load_price_table
from server.settings import Settings

if TYPE_CHECKING:
    import httpx

    from server.jobs.keeping import Jobs
    from server.jobs.ledger.base import SpendLine

log = logging.getLogger(__name__)
BALANCE_CACHE_SECONDS = 60.0  # a balance is asked at most this often (it only warns; it never gates)
# How many of a unit an input makes, and how that was read from it (e.g. (5.0, "duration '5'")); None when the input
# does not tell. The catalog's typed models answer it (tools.catalog.quantity): the money service knows no catalog.
CountUnits = Callable[[str], "tuple[float, str] | None"]


@dataclass(frozen=True)
class Quote:
    """What a submit will cost: an estimate, or None and why."""

    estimate: Estimate | None
    note: str | None = None  # why there is no estimate, or what to know about it

    @property
    def usd(self) -> float | None:
        return None if self.estimate is None else self.estimate.usd

    def as_json(self) -> dict[str, Any] | None:
        return None if self.estimate is None else asdict(self.estimate)


@dataclass(frozen=True)
class SpendSummary:
    today: str
    today_usd: float
    month_usd: float
    by_model: dict[str, float]  # this month
    daily_budget: float | None
    left_today: float | None
    balance: Balance | None

    def line(self) -> str:
        text = f"Spent ${self.today_usd:.2f} today ({self.today}), ${self.month_usd:.2f} this month"
        if self.left_today is not None:
            text += f"; ${self.left_today:.2f} of the ${self.daily_budget:.2f} daily budget left"
        if self.balance is not None and self.balance.usd is not None:
            text += f"; account balance ${self.balance.usd:.2f}"
        return text + "."


class PriceCacheInLedger:
    """fal's prices, kept in the ledger's database (every instance shares them) with a memo in front of it."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs
        self._memo: dict[str, tuple[Price, float]] = {}

    async def cached_price(self, key: str) -> tuple[Price, float] | None:
        if key in self._memo:
            return self._memo[key]
        found = await self._jobs.db(self._jobs.ledger.cached_price, key)
        if found is None:
            return None
        price = Price(**found[0])
        self._memo[key] = (price, found[1])
        return self._memo[key]

    async def cache_price(self, key: str, price: Price, fetched_at: float) -> None:
        self._memo[key] = (price, fetched_at)
        await self._jobs.db(self._jobs.ledger.cache_price, key, asdict(price), fetched_at)


class Money:
    def __init__(
        self,
        settings: Settings,
        jobs: Jobs,
        http: Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.caps = Caps(settings.max_job_cost, settings.daily_budget, settings.allow_unpriced, settings.time_zone)
        self._jobs = jobs
        self._http = http
        self._clock = clock
        self._book: PriceBook | None = None
        self._balance: tuple[Balance | None, float] | None = None

    # ---- prices --------------------------------------------------------------------------------------------------

    @property
    def book(self) -> PriceBook:
        if self._book is None:
            try:
                table = load_price_table(self.settings.prices_file) if self.settings.prices_file else {}
            except PriceTableError as exc:
                raise ConfigurationError(f"{exc}. Fix the file, or unset FAL_MCP_PRICES.") from None
            fal_key = self.settings.fal_api_key()
            fetch = None
            if fal_key:
                platform, seconds = self.settings.platform_url, self.settings.pricing_timeout

                async def fetch(ids: list[str]) -> dict[str, Price]:
                    return await fetch_fal_prices(self._http(), platform, fal_key, ids, seconds=seconds)

            cache = PriceCacheInLedger(self._jobs)
            self._book = PriceBook(table, cache, fetch, max_age=self.settings.price_cache_seconds, clock=self._clock)
        return self._book

    async def quote(self, model_id: str, count: CountUnits) -> Quote:
        looked_up = await self.book.lookup(model_id)
        price = looked_up.price
        if price is None:
            return Quote(None, looked_up.note)
        counted = count(price.unit)
        if counted is None:
            return Quote(
                None,
                f"the price is {price.unit_price:g} {price.currency} per {price.unit} ({price.source}), but how many "
                f"{price.unit}s this input makes is not known here",
            )
        amount, basis = counted
        return Quote(estimate(price, amount, basis), looked_up.note)

    async def price_of(self, model_id: str) -> tuple[Price | None, str | None]:
        looked_up = await self.book.lookup(model_id)
        return looked_up.price, looked_up.note

    # ---- the caps ------------------------------------------------------------------------------------------------

    def charge(self, model_id: str, quote: Quote, max_cost_usd: float | None) -> Charge:
        """The caps that need no ledger, then the charge whose check the ledger runs when it writes the row.
        Raises BudgetError (nothing sent, nothing written)."""
        usd = quote.usd
        check_job(self.caps, model_id, usd, quote.note)
        check_ceiling(max_cost_usd, usd)
        day = self.today()
        check = None
        if usd is not None and self.caps.daily_budget is not None:
            reservation = Reservation(usd, day, self.caps.daily_budget)

            def check(spent: float) -> None:
                check_day(reservation, spent)

        return Charge(quote.as_json(), usd, day, check)

    async def check_day_now(self, charge: Charge) -> None:
        """A dry run's look at the daily budget: the check a submit would run, on today's spend as it stands (not a
        reservation: a real submit checks again, atomically)."""
        if charge.check is not None:
            lines = await self._jobs.db(self._jobs.ledger.spend, since_day=charge.day)
            charge.check(sum(line.usd for line in lines if line.day == charge.day))

    def needs_confirmation(self, quote: Quote, max_cost_usd: float | None) -> bool:
        """Above FAL_MCP_CONFIRM_ABOVE the person is asked first, unless the assistant passed a ceiling covering the
        estimate (which it does after asking them itself)."""
        threshold, usd = self.settings.confirm_above, quote.usd
        if threshold is None or usd is None or usd <= threshold:
            return False
        return not (max_cost_usd is not None and max_cost_usd >= usd)

    def today(self) -> str:
        return budget_day(datetime.fromtimestamp(self._clock(), UTC), self.caps.time_zone)

    # ---- what was spent, what is left ----------------------------------------------------------------------------

    async def summary(self, *, ask_balance: bool = True) -> SpendSummary:
        """Spend today, this month and by model; with the balance unless `ask_balance` is False (a summary from the
        ledger alone, asking no provider)."""
        today = self.today()
        lines: list[SpendLine] = await self._jobs.db(self._jobs.ledger.spend, since_day=today[:8] + "01")
        by_model: dict[str, float] = {}
        for line in lines:
            by_model[line.endpoint_id] = round(by_model.get(line.endpoint_id, 0.0) + line.usd, 6)
        today_usd = round(sum(line.usd for line in lines if line.day == today), 6)
        budget = self.caps.daily_budget
        return SpendSummary(
            today=today,
            today_usd=today_usd,
            month_usd=round(sum(line.usd for line in lines), 6),
            by_model=by_model,
            daily_budget=budget,
            left_today=None if budget is None else max(0.0, round(budget - today_usd, 6)),
            balance=await self.balance() if ask_balance else None,
        )

    async def balance(self) -> Balance | None:
        """The account's balance where the provider tells it; None when it cannot be read (never an error)."""
        now = self._clock()
        if self._balance is not None and now - self._balance[1] < BALANCE_CACHE_SECONDS:
            return self._balance[0]
        found: Balance | None = None
        try:
            seconds = self.settings.pricing_timeout
            if self.settings.provider == "uniapi" and self.settings.uniapi_key is not None:
                key = self.settings.uniapi_key.get_secret_value()
                found = await uniapi_balance(self._http(), self.settings.base_url, key, seconds=seconds)
            elif (fal_key := self.settings.fal_api_key()) is not None:
                found = await fal_balance(self._http(), self.settings.platform_url, fal_key, seconds=seconds)
        except BalanceUnavailable as exc:
            log.info("balance: %s", exc)
        self._balance = (found, now)
        return found

    async def balance_warning(self, quote: Quote) -> str | None:
        usd = quote.usd
        if usd is None:
            return None
        balance = await self.balance()
        if balance is None or balance.usd is None or balance.usd >= usd:
            return None
        return (
            f"The account balance (${balance.usd:.2f}, {balance.source}) is below this job's estimate (${usd:.2f}): "
            "the provider may refuse it; top up the account."
        )
