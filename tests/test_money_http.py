"""The money routes over real HTTP on 127.0.0.1: fal's pricing API and the two balance routes, as the sandbox
serves them, and what the clients make of failures (never a crash, never the key in a message)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from server.money.balance import BalanceUnavailable, fal_balance, uniapi_balance
from server.money.fal_pricing import PricingUnavailable, fetch_fal_prices
from server.money.prices import price_key
from server.sandbox.billing import SANDBOX_UNIT_PRICES, billing_routes
from tests.servers import serving_in_thread

KEY = "sandbox-money-key-0123456789"


@pytest.fixture(scope="module")
def billing_url() -> Iterator[str]:
    units = {"fal-ai/kling-video/v2.1/standard/image-to-video": "second", "fal-ai/flux/dev": "megapixel"}
    routes = billing_routes(KEY, units.get, lambda: 1.25, balance=25.0)

    async def garbage(request: object) -> Response:
        return Response(b"\x00not json", media_type="application/json")

    async def huge(request: object) -> Response:
        return Response(b'{"prices": [' + b" " * 300_000 + b"]}", media_type="application/json")

    app = Starlette(routes=[*routes, Route("/garbage/models/pricing", garbage), Route("/huge/models/pricing", huge)])
    with serving_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.anyio
async def test_prices_from_the_pricing_api(billing_url: str) -> None:
    async with httpx.AsyncClient() as http:
        prices = await fetch_fal_prices(
            http, f"{billing_url}/v1", KEY, ["kling-video/v2.1/standard/image-to-video", "fal-ai/unpriced"], seconds=5
        )
    price = prices[price_key("fal-ai/kling-video/v2.1/standard/image-to-video")]
    assert (price.unit, price.unit_price, price.source) == ("second", SANDBOX_UNIT_PRICES["second"], "fal pricing API")
    assert price_key("fal-ai/unpriced") not in prices


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "key", "says"),
    [("/v1", "wrong-key", "HTTP 401"), ("/garbage", KEY, "not JSON"), ("/huge", KEY, "larger than")],
)
async def test_a_pricing_failure_is_a_reason_not_a_crash(billing_url: str, path: str, key: str, says: str) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(PricingUnavailable, match=says) as caught:
            await fetch_fal_prices(http, billing_url + path, key, ["fal-ai/flux/dev"], seconds=5)
    assert key not in str(caught.value)


@pytest.mark.anyio
async def test_an_unreachable_pricing_api_is_a_reason(billing_url: str) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(PricingUnavailable, match="could not be reached"):
            await fetch_fal_prices(http, "http://127.0.0.1:9/v1", KEY, ["fal-ai/flux/dev"], seconds=2)


@pytest.mark.anyio
async def test_uniapi_balance(billing_url: str) -> None:
    async with httpx.AsyncClient() as http:
        balance = await uniapi_balance(http, billing_url, KEY, seconds=5)
        assert (balance.usd, balance.used_usd) == (23.75, 1.25)
        with pytest.raises(BalanceUnavailable, match="HTTP 401"):
            await uniapi_balance(http, billing_url, "wrong", seconds=5)


@pytest.mark.anyio
async def test_fal_credits(billing_url: str) -> None:
    async with httpx.AsyncClient() as http:
        balance = await fal_balance(http, f"{billing_url}/v1", KEY, seconds=5)
        assert (balance.usd, balance.source) == (23.75, "fal /account/billing")
        with pytest.raises(BalanceUnavailable, match="HTTP 401"):  # a key that may not read the credits
            await fal_balance(http, f"{billing_url}/v1", "wrong", seconds=5)
        with pytest.raises(BalanceUnavailable):
            await fal_balance(http, f"{billing_url}/garbage", KEY, seconds=5)  # no such route there
