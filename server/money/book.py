"""The price book: one answer to "what does a unit of this model cost, and how sure are we".

Order: the user's price table (it overrides fal, since UniAPI bills in its own rates); a fresh cached fal price;
fal's pricing API (when a fal key is set), whose answer is cached for every instance sharing the ledger; a stale
cached price, said to be stale. A pricing API that fails, is slow or answers garbage never blocks a submit: the
book falls back and says so in `PriceLookup.note`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from server.money.fal_pricing import PricingUnavailable
from server.money.prices import Price, price_key
from server.route_family import route_family_of

log = logging.getLogger(__name__)

Fetch = Callable[[list[str]], Awaitable[dict[str, Price]]]
MISS_SECONDS = 600.0  # a model the pricing API does not list is asked about again after this
FAILURE_SECONDS = 60.0  # after a failed lookup, the API is left alone this long (submits must not wait on it)


class PriceCache(Protocol):
    """Where fetched prices are kept (the ledger's database, shared by every instance)."""

    async def cached_price(self, key: str) -> tuple[Price, float] | None:
        """The price and when it was fetched (epoch seconds), or None."""

    async def cache_price(self, key: str, price: Price, fetched_at: float) -> None: ...


@dataclass(frozen=True)
class PriceLookup:
    price: Price | None
    note: str | None = None  # why the price is missing, or stale


class PriceBook:
    def __init__(
        self,
        table: dict[str, Price],
        cache: PriceCache | None,
        fetch: Fetch | None,
        *,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._cache = cache
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._misses: dict[str, tuple[str, float]] = {}  # key -> (why there is no price, until when)

    async def lookup(self, model_id: str) -> PriceLookup:
        key = price_key(model_id)
        if key in self._table:
            return PriceLookup(self._table[key])
        cached = await self._cache.cached_price(key) if self._cache else None
        if cached and self._clock() - cached[1] < self._max_age:
            return PriceLookup(cached[0])
        if key in self._misses and self._clock() < self._misses[key][1]:
            return _stale_or_none(cached, self._misses[key][0])
        if route_family_of(model_id) != "fal":
            return PriceLookup(
                None,
                "no price is known for this model: UniAPI's native routes are priced only by FAL_MCP_PRICES "
                "(fal's pricing API knows fal models alone)",
            )
        if self._fetch is None:
            return PriceLookup(
                None,
                "no price is known for this model: none in FAL_MCP_PRICES, and fal's pricing API needs a fal key",
            )
        try:
            fetched = await self._fetch([key])
        except PricingUnavailable as exc:
            log.info("pricing: %s", exc)  # the answer says so; a warning would repeat it on stderr
            self._misses[key] = (str(exc), self._clock() + FAILURE_SECONDS)
            return _stale_or_none(cached, str(exc))
        for fetched_key, price in fetched.items():
            if self._cache:
                await self._cache.cache_price(fetched_key, price, self._clock())
        if key in fetched:
            return PriceLookup(fetched[key])
        why = "fal's pricing API does not list it"
        self._misses[key] = (why, self._clock() + MISS_SECONDS)
        return _stale_or_none(cached, why)


def _stale_or_none(cached: tuple[Price, float] | None, why: str) -> PriceLookup:
    """No fresh price: the cached one, said to be stale, or none, said why."""
    if cached:
        return PriceLookup(cached[0], f"{why}; using the price cached on {cached[0].as_of}")
    return PriceLookup(None, f"no price is known for this model: {why}")
