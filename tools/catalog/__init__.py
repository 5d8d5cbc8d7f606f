"""The catalog: model id -> parameter model, output model, family, task.

A model id is the path after the base URL: fal's endpoint ids (`fal-ai/...`) and UniAPI's native Kling and Luma
routes (`kling/v1/videos/text2video`, `luma/generations`); `CatalogEntry.route_family` says which.
"""

from __future__ import annotations

from tools.catalog import flux, kling, kling_native, luma, luma_native, minimax, pixverse, seedance, sora, veo, wan
from tools.catalog.base import CatalogEntry, FalFile, FalInput

__all__ = ["CATALOG", "CatalogEntry", "FalFile", "FalInput", "lookup"]

CATALOG: dict[str, CatalogEntry] = {
    entry.endpoint_id: entry
    for module in (kling, veo, minimax, luma, wan, seedance, pixverse, sora, flux, kling_native, luma_native)
    for entry in module.ENTRIES
}


def lookup(endpoint_id: str) -> CatalogEntry | None:
    return CATALOG.get(endpoint_id)
