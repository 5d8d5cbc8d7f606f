"""Which UniAPI route family a model id belongs to, read from the id alone.

A model id is the path after the base URL: `fal-ai/...` (or UniAPI's short spelling without the owner) goes to
the FalAI route, `kling/...` to the native Kling routes and `luma/...` to the native Luma routes. Protocol-free
and import-free, so the catalog, the id rules and the upstream adapters all ask this one function.
"""

from __future__ import annotations

from typing import Literal, get_args

RouteFamily = Literal["fal", "kling", "luma"]
ROUTE_FAMILIES: tuple[RouteFamily, ...] = get_args(RouteFamily)
# First path segments of the native routes; fal has no app of these names (its are kling-video, luma-dream-machine).
NATIVE_PREFIXES: dict[str, RouteFamily] = {"kling": "kling", "luma": "luma"}


def route_family_of(model_id: str) -> RouteFamily:
    """`kling` for `kling/v1/...`, `luma` for `luma/generations...`, `fal` for everything else."""
    first = model_id.strip().split("/", 1)[0]
    return NATIVE_PREFIXES.get(first, "fal")
