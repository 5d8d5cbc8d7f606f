"""fal's pricing API: `GET {platform}/models/pricing?endpoint_id=...` answers each model's unit and unit price.

Asked only with a fal key (the key goes to fal's platform host, nowhere else), bounded in time and size, and never
trusted blindly: a row that is not a price is skipped, an answer that is not JSON is no answer.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx

from server.money.prices import FAL_PREFIX, Price, normalize_unit, price_key
from server.money.small_json import SmallJsonUnavailable, get_small_json

PRICING_SOURCE = "fal pricing API"
MAX_IDS_PER_CALL = 50  # the API's own limit
MAX_PRICING_ANSWER_BYTES = 256 * 1024  # fifty prices are a few KB


class PricingUnavailable(Exception):
    """The pricing API did not give an answer we can use; the message says why, never the key."""


async def fetch_fal_prices(
    http: httpx.AsyncClient, platform_url: str, key: str, model_ids: list[str], *, seconds: float
) -> dict[str, Price]:
    """Prices of up to `MAX_IDS_PER_CALL` models, keyed by `price_key`; a model fal does not price is absent."""
    ids = [FAL_PREFIX + price_key(model_id) for model_id in model_ids[:MAX_IDS_PER_CALL]]
    try:
        data = await get_small_json(
            http,
            f"{platform_url.rstrip('/')}/models/pricing",
            params=[("endpoint_id", endpoint) for endpoint in ids],
            headers={"Authorization": f"Key {key}"},
            seconds=seconds,
            max_bytes=MAX_PRICING_ANSWER_BYTES,
            what="the pricing API",
        )
    except SmallJsonUnavailable as exc:
        raise PricingUnavailable(str(exc)) from None
    return parse_prices(data, as_of=datetime.now(UTC).isoformat(timespec="seconds"))


def parse_prices(data: Any, *, as_of: str) -> dict[str, Price]:
    rows = data.get("prices") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise PricingUnavailable("the pricing API's answer had no list of prices")
    prices: dict[str, Price] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        endpoint, unit, unit_price = row.get("endpoint_id"), row.get("unit"), row.get("unit_price")
        currency = row.get("currency") or "USD"
        if not (isinstance(endpoint, str) and isinstance(unit, str) and isinstance(currency, str)):
            continue
        if isinstance(unit_price, bool) or not isinstance(unit_price, int | float):
            continue
        if not math.isfinite(unit_price) or unit_price < 0 or len(unit) > 40 or len(currency) != 3:
            continue
        prices[price_key(endpoint)] = Price(
            normalize_unit(unit), float(unit_price), currency.upper(), PRICING_SOURCE, as_of
        )
    return prices
