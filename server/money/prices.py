"""Unit prices: what one unit of a model's output costs, where that fact came from and when.

Two sources, in order: the user's price table (`FAL_MCP_PRICES`, a JSON file; it wins, since UniAPI bills in its own
rates) and fal's pricing API (when a fal key is configured; cached in the ledger, see `server.money.fal_pricing`).
A model's id may be written either way (`fal-ai/x` or UniAPI's short `x`): both find the same price.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FAL_PREFIX = "fal-ai/"
PRICE_TABLE_SOURCE = "price table (FAL_MCP_PRICES)"
MAX_PRICE_TABLE_BYTES = 4 * 1024 * 1024  # a table of every model fal has is far smaller


@dataclass(frozen=True)
class Price:
    """One unit's price: `unit_price` `currency` per `unit` (e.g. 0.05 USD per second), from `source` as of `as_of`
    (an ISO 8601 date or time)."""

    unit: str
    unit_price: float
    currency: str
    source: str
    as_of: str


class _TableRow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    unit: str = Field(min_length=1, max_length=40)
    unit_price: float = Field(ge=0)
    currency: str = Field("USD", min_length=3, max_length=3)


class PriceTableError(ValueError):
    """The price table cannot be used; the message says which entry and why (never a secret: it holds none)."""


def price_key(model_id: str) -> str:
    """One spelling for both forms of a fal model id, so `fal-ai/x` and `x` share a price."""
    model_id = model_id.strip().strip("/")
    return model_id.removeprefix(FAL_PREFIX)


def normalize_unit(unit: str) -> str:
    """fal writes units in the singular (`second`, `image`); a table may not (`seconds`, `Images`)."""
    unit = unit.strip().lower()
    return unit[:-1] if unit.endswith("s") and unit not in ("s",) else unit


def load_price_table(path: Path, as_of: str | None = None) -> dict[str, Price]:
    """Read a price table: `{"<model id>": {"unit": "second", "unit_price": 0.05, "currency": "USD"}}`.
    `as_of` defaults to the file's modification date, the best date there is for a price someone wrote down."""
    try:
        if path.stat().st_size > MAX_PRICE_TABLE_BYTES:
            raise PriceTableError(f"FAL_MCP_PRICES: {path} is larger than {MAX_PRICE_TABLE_BYTES} bytes")
        raw = json.loads(path.read_text(encoding="utf-8"))
        when = as_of or _file_date(path)
    except OSError as exc:
        raise PriceTableError(f"FAL_MCP_PRICES: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PriceTableError(f"FAL_MCP_PRICES: {path} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PriceTableError('FAL_MCP_PRICES: the file must hold a JSON object {"<model id>": {...}, ...}')
    table: dict[str, Price] = {}
    for model_id, row in raw.items():
        try:
            checked = _TableRow.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise PriceTableError(f"FAL_MCP_PRICES: entry {model_id!r}: {problems}") from None
        if not math.isfinite(checked.unit_price):
            raise PriceTableError(f"FAL_MCP_PRICES: entry {model_id!r}: unit_price must be a finite number")
        table[price_key(model_id)] = Price(
            unit=normalize_unit(checked.unit),
            unit_price=checked.unit_price,
            currency=checked.currency.upper(),
            source=PRICE_TABLE_SOURCE,
            as_of=when,
        )
    return table


def _file_date(path: Path) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()
