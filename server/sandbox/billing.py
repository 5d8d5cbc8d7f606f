"""Money routes for the sandbox upstream, so prices, costs and balances are tried and tested offline.

- `GET /v1/models/pricing?endpoint_id=...` (fal's pricing API, `Authorization: Key`): `{prices: [{endpoint_id,
  unit_price, unit, currency}], next_cursor, has_more}` for the models the sandbox prices.
- `GET /v1/billing/usage` (UniAPI's balance route, `Authorization: Bearer` or `Key`): `{data: {balance, used,
  cache_used}, success}` in USD, the balance going down as the sandbox's jobs are billed.
- `GET /v1/account/billing?expand=credits` (fal's account credits, `Authorization: Key`): `{credits:
  {current_balance, currency}}`, the same balance.
The `x-fal-billable-units` header of a result fetch is the sandbox upstream's (see `Sandbox._bill`).
Prices are the sandbox's own (`SANDBOX_UNIT_PRICES`), nothing like a real provider's.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# USD a unit: round numbers, so a test or the demo can check an estimate by hand.
SANDBOX_UNIT_PRICES: dict[str, float] = {"second": 0.05, "video": 0.40, "megapixel": 0.025, "image": 0.03}
SANDBOX_STARTING_BALANCE = 25.0
# A video is billed for a little more than its nominal length, as fal's own bills show ("3.008" for 3 s): so the
# cost differs from the estimate, and a fractional count is read on every test run.
BILLED_EXTRA_SECONDS = 0.008
MAX_PRICED_IDS = 50  # fal's own limit a call


def billed_units(unit: str, quantity: float) -> float:
    """What the sandbox bills a job for: its quantity, a little more for seconds of video."""
    return round(quantity + BILLED_EXTRA_SECONDS, 6) if unit == "second" else quantity


def billing_routes(
    key: str, unit_of: Callable[[str], str | None], spent: Callable[[], float], *, balance: float
) -> list[Route]:
    """`unit_of(endpoint_id)` is the unit a model is priced in (None: not priced); `spent()` what the sandbox's jobs
    have cost so far (the used amount, taken off `balance`)."""

    async def pricing(request: Request) -> Response:
        if request.headers.get("authorization") != f"Key {key}":
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        ids = request.query_params.getlist("endpoint_id")
        if not 1 <= len(ids) <= MAX_PRICED_IDS:
            return JSONResponse({"detail": f"give 1 to {MAX_PRICED_IDS} endpoint_id values"}, status_code=422)
        prices = []
        for endpoint_id in ids:
            unit = unit_of(endpoint_id)
            if unit is not None:
                prices.append(
                    {
                        "endpoint_id": endpoint_id,
                        "unit_price": SANDBOX_UNIT_PRICES[unit],
                        "unit": unit,
                        "currency": "USD",
                    }
                )
        return JSONResponse({"prices": prices, "next_cursor": None, "has_more": False})

    async def usage(request: Request) -> Response:
        if request.headers.get("authorization") not in (f"Bearer {key}", f"Key {key}"):
            return JSONResponse({"success": False, "message": "invalid token"}, status_code=401)
        used = round(spent(), 6)
        return JSONResponse(
            {"data": {"balance": round(balance - used, 6), "used": used, "cache_used": 0}, "success": True}
        )

    async def credits(request: Request) -> Response:
        if request.headers.get("authorization") != f"Key {key}":
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        return JSONResponse({"credits": {"current_balance": round(balance - spent(), 6), "currency": "USD"}})

    return [
        Route("/v1/models/pricing", pricing, methods=["GET"]),
        Route("/v1/billing/usage", usage, methods=["GET"]),
        Route("/v1/account/billing", credits, methods=["GET"]),
    ]
