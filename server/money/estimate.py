"""An estimate: quantity x unit price, with where the price came from and when."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.money.prices import Price


@dataclass(frozen=True)
class Estimate:
    usd: float | None  # None when the price is in another currency (never converted: a guess is worse than none)
    unit: str
    quantity: float
    unit_price: float
    currency: str
    source: str
    as_of: str
    basis: str  # how the quantity was read from the input, e.g. "duration '5'"

    def describe(self) -> str:
        total = self.quantity * self.unit_price
        amount = f"${self.usd:.2f}" if self.usd is not None else f"{total:.4g} {self.currency}"
        return (
            f"about {amount} ({self.quantity:g} {self.unit}{'s' if self.quantity != 1 else ''} x "
            f"{self.unit_price:g} {self.currency}; {self.basis}; price from {self.source}, as of {self.as_of})"
        )


def estimate(price: Price, quantity: float, basis: str) -> Estimate:
    total = quantity * price.unit_price
    return Estimate(
        usd=round(total, 6) if price.currency == "USD" else None,
        unit=price.unit,
        quantity=quantity,
        unit_price=price.unit_price,
        currency=price.currency,
        source=price.source,
        as_of=price.as_of,
        basis=basis,
    )


def billed_usd(estimate_json: dict[str, Any] | None, billable_units: float | None) -> float | None:
    """A finished job's bill: the upstream's billable units x the unit price of its estimate (as the ledger keeps it);
    None when either is missing (the estimate then stands, marked as one) or the price is not in USD."""
    if billable_units is None or not estimate_json or estimate_json.get("currency") != "USD":
        return None
    unit_price = estimate_json.get("unit_price")
    return round(billable_units * unit_price, 6) if isinstance(unit_price, int | float) else None
