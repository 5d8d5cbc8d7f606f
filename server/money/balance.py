"""The account's balance where the provider tells it: UniAPI's `GET /v1/billing/usage?type=token&unit=usd` (the
key in use, in USD) and fal's `GET {platform}/account/billing?expand=credits` (an admin-scoped key).

A balance is information, never a gate: any failure is `None` with a reason, and a submit goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from server.money.small_json import SmallJsonUnavailable, get_small_json

MAX_BALANCE_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Balance:
    usd: float | None  # None: no limit on this key (UniAPI answers -1), or not in USD
    used_usd: float | None
    source: str


class BalanceUnavailable(SmallJsonUnavailable):
    """Why no balance could be read (never quoting the key)."""


async def uniapi_balance(http: httpx.AsyncClient, base_url: str, key: str, *, seconds: float) -> Balance:
    data = await _get(
        http,
        f"{base_url.rstrip('/')}/v1/billing/usage",
        [("type", "token"), ("unit", "usd")],
        f"Bearer {key}",
        seconds,
        "UniAPI's usage route",
    )
    body = data.get("data") if isinstance(data, dict) else None
    if not isinstance(body, dict) or data.get("success") is False:
        raise BalanceUnavailable("UniAPI's usage route answered without a balance")
    balance, used = _number(body.get("balance")), _number(body.get("used"))
    if balance is None:
        raise BalanceUnavailable("UniAPI's usage route answered without a balance")
    # -1 was seen for a key with no limit: there is then no balance to warn about
    return Balance(None if balance < 0 else balance, used, "UniAPI /v1/billing/usage")


async def fal_balance(http: httpx.AsyncClient, platform_url: str, key: str, *, seconds: float) -> Balance:
    url = f"{platform_url.rstrip('/')}/account/billing"
    data = await _get(http, url, [("expand", "credits")], f"Key {key}", seconds, "fal's billing route")
    credits = data.get("credits") if isinstance(data, dict) else None
    if not isinstance(credits, dict):
        raise BalanceUnavailable("fal's billing route answered without credits (the key may not be admin-scoped)")
    amount = _number(credits.get("current_balance"))
    currency = credits.get("currency", "USD")
    if amount is None:
        raise BalanceUnavailable("fal's billing route answered without a current balance")
    return Balance(amount if currency == "USD" else None, None, "fal /account/billing")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


async def _get(
    http: httpx.AsyncClient,
    url: str,
    params: list[tuple[str, str | int | float | bool | None]],
    auth: str,
    seconds: float,
    what: str,
) -> Any:
    try:
        return await get_small_json(
            http,
            url,
            params=params,
            headers={"Authorization": auth},
            seconds=seconds,
            max_bytes=MAX_BALANCE_ANSWER_BYTES,
            what=what,
        )
    except SmallJsonUnavailable as exc:
        raise BalanceUnavailable(str(exc)) from None
