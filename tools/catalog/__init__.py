"""The catalog: fal endpoint id -> parameter model, output model, family, task."""

from __future__ import annotations

from tools.catalog import flux, kling, luma, minimax, pixverse, seedance, sora, veo, wan
from tools.catalog.base import CatalogEntry, FalFile, FalInput

__all__ = ["CATALOG", "CatalogEntry", "FalFile", "FalInput", "lookup"]

CATALOG: dict[str, CatalogEntry] = {
    entry.endpoint_id: entry
    for module in (kling, veo, minimax, luma, wan, seedance, pixverse, sora, flux)
    for entry in module.ENTRIES
}


def lookup(endpoint_id: str) -> CatalogEntry | None:
    return CATALOG.get(endpoint_id)
