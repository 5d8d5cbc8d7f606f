"""Prices and estimates, free of MCP: the price table, fal's pricing answers, the book's order and fallbacks, and the
quantity each kind of unit reads from an input (checked against hand-computed values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.money.book import PriceBook
from server.money.estimate import estimate
from server.money.fal_pricing import PricingUnavailable, parse_prices
from server.money.prices import Price, PriceTableError, load_price_table, price_key
from tools.catalog import CATALOG
from tools.catalog.quantity import priced_quantity

KLING = "fal-ai/kling-video/v2.1/standard/image-to-video"
FLUX = "fal-ai/flux/dev"
VEO = "fal-ai/veo3"
SORA = "fal-ai/sora-2/text-to-video"


def _price(unit: str, unit_price: float, source: str = "test") -> Price:
    return Price(unit, unit_price, "USD", source, "2026-12-01")


# ---- quantities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "unit", "expected"),
    [
        (KLING, {}, "second", 5.0),  # the model's default "5"
        (KLING, {"duration": "10"}, "second", 10.0),
        (VEO, {}, "second", 8.0),  # "8s"
        (VEO, {"duration": "4s"}, "second", 4.0),
        (SORA, {"duration": 12}, "second", 12.0),  # an integer duration
        (FLUX, {}, "megapixel", 1.0),  # landscape_4_3 = 1024x768, rounded up to 1 MP
        (FLUX, {"image_size": {"width": 2048, "height": 2048}, "num_images": 2}, "megapixel", 10.0),  # 2 x ceil(4.19)
        (FLUX, {"num_images": 3}, "image", 3.0),
        (FLUX, {}, "image", 1.0),
        (KLING, {}, "video", 1.0),
    ],
)
def test_quantity_of_each_unit_kind(model: str, body: dict[str, object], unit: str, expected: float) -> None:
    quantity = priced_quantity(CATALOG[model], body, unit)
    assert quantity is not None
    assert quantity.amount == expected


def test_a_quantity_the_input_does_not_tell_is_none_not_a_guess() -> None:
    assert priced_quantity(CATALOG[FLUX], {}, "second") is None  # an image model has no duration
    assert priced_quantity(CATALOG[KLING], {}, "gpu-hour") is None  # a unit we do not know
    assert priced_quantity(None, {"duration": "5"}, "second") is None  # an uncatalogued model


def test_estimate_is_quantity_times_unit_price() -> None:
    result = estimate(_price("second", 0.07), 10.0, "duration '10'")
    assert result.usd == pytest.approx(0.70)
    assert "0.7" in result.describe() and "duration '10'" in result.describe()
    euros = estimate(Price("second", 0.05, "EUR", "test", "2026-12-01"), 5.0, "duration '5'")
    assert euros.usd is None  # never converted
    assert "EUR" in euros.describe()


# ---- the price table ----------------------------------------------------------------------------


def test_price_table_accepts_both_spellings_of_an_id(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"kling-video/v2.1/standard/image-to-video": {"unit": "Seconds", "unit_price": 0.05}}))
    table = load_price_table(path, as_of="2026-12-01")
    price = table[price_key(KLING)]
    assert (price.unit, price.unit_price, price.currency) == ("second", 0.05, "USD")
    assert price_key(KLING) == price_key("kling-video/v2.1/standard/image-to-video")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"m": {"unit": "second", "unit_price": -1}}', "'m'"),
        ('{"m": {"unit_price": 1}}', "unit"),
        ('{"m": {"unit": "second", "unit_price": 1, "extra": 2}}', "extra"),
    ],
)
def test_a_bad_price_table_names_the_problem(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PriceTableError, match="FAL_MCP_PRICES") as caught:
        load_price_table(path)
    assert says in str(caught.value)


# ---- fal's pricing answers ----------------------------------------------------------------------


def test_pricing_answer_rows_that_are_not_prices_are_skipped() -> None:
    answer = {
        "prices": [
            {"endpoint_id": KLING, "unit_price": 0.05, "unit": "second", "currency": "USD"},
            {"endpoint_id": FLUX, "unit_price": "cheap", "unit": "megapixel"},
            {"endpoint_id": VEO, "unit_price": float("inf"), "unit": "second"},
            "garbage",
            {"endpoint_id": SORA, "unit_price": True, "unit": "second"},
        ],
        "has_more": False,
    }
    prices = parse_prices(answer, as_of="2026-12-01T00:00:00+00:00")
    assert list(prices) == [price_key(KLING)]
    with pytest.raises(PricingUnavailable):
        parse_prices({"detail": "nope"}, as_of="x")


# ---- the book -----------------------------------------------------------------------------------


class _Cache:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[Price, float]] = {}

    async def cached_price(self, key: str) -> tuple[Price, float] | None:
        return self.rows.get(key)

    async def cache_price(self, key: str, price: Price, fetched_at: float) -> None:
        self.rows[key] = (price, fetched_at)


@pytest.mark.anyio
async def test_book_prefers_the_table_then_a_fresh_cache_then_the_api() -> None:
    calls: list[list[str]] = []
    now = [1000.0]

    async def fetch(ids: list[str]) -> dict[str, Price]:
        calls.append(ids)
        return {price_key(VEO): _price("second", 0.4, "fal pricing API")}

    cache = _Cache()
    book = PriceBook(
        {price_key(KLING): _price("second", 0.05, "table")}, cache, fetch, max_age=86400, clock=lambda: now[0]
    )
    assert (await book.lookup(KLING)).price == _price("second", 0.05, "table")
    assert calls == []  # the table answered
    assert (await book.lookup(VEO)).price == _price("second", 0.4, "fal pricing API")
    assert (await book.lookup(VEO)).price is not None
    assert len(calls) == 1  # the second lookup came from the cache
    now[0] += 86401
    await book.lookup(VEO)
    assert len(calls) == 2  # stale: asked again


@pytest.mark.anyio
async def test_book_falls_back_when_the_api_fails_and_says_so() -> None:
    async def failing(ids: list[str]) -> dict[str, Price]:
        raise PricingUnavailable("the pricing API answered HTTP 503")

    cache = _Cache()
    await cache.cache_price(price_key(VEO), _price("second", 0.4, "fal pricing API"), 0.0)
    book = PriceBook({}, cache, failing, max_age=10, clock=lambda: 1000.0)
    stale = await book.lookup(VEO)
    assert stale.price is not None and stale.note is not None and "HTTP 503" in stale.note
    missing = await book.lookup(FLUX)
    assert missing.price is None and missing.note is not None and "no price is known" in missing.note
    keyless = await PriceBook({}, None, None, max_age=10).lookup(FLUX)
    assert keyless.price is None and keyless.note is not None and "FAL_MCP_PRICES" in keyless.note


@pytest.mark.anyio
async def test_a_failing_or_silent_api_is_not_asked_on_every_submit() -> None:
    calls: list[list[str]] = []
    now = [1000.0]

    async def failing(ids: list[str]) -> dict[str, Price]:
        calls.append(ids)
        raise PricingUnavailable("the pricing API answered HTTP 503")

    book = PriceBook({}, None, failing, max_age=86400, clock=lambda: now[0])
    for _ in range(5):
        assert (await book.lookup(VEO)).price is None
    assert len(calls) == 1  # the failure is remembered a while
    now[0] += 61
    await book.lookup(VEO)
    assert len(calls) == 2


@pytest.mark.anyio
async def test_native_routes_are_priced_by_the_table_alone() -> None:
    calls: list[list[str]] = []

    async def fetch(ids: list[str]) -> dict[str, Price]:
        calls.append(ids)
        return {}

    book = PriceBook({price_key("luma/generations"): _price("video", 0.4)}, None, fetch, max_age=10)
    assert (await book.lookup("luma/generations")).price == _price("video", 0.4)
    missing = await book.lookup("kling/v1/videos/text2video")
    assert missing.price is None and missing.note is not None and "FAL_MCP_PRICES" in missing.note
    assert calls == []  # fal's pricing API is never asked about a route it cannot know
