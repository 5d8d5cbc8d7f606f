"""Compacting published JSON schemas: every byte of `tools/list` is context an assistant pays for each turn."""

from __future__ import annotations

from typing import Any

# Keys that only restate what the names already say.
_NOISE = ("title",)


def compact(schema: Any) -> Any:
    """Return `schema` without generated titles and redundant `null` defaults; property names are kept."""
    if isinstance(schema, list):
        return [compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NOISE and isinstance(value, str):
            continue
        if key == "default" and value is None:
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: compact(sub) for name, sub in value.items()}
        else:
            out[key] = compact(value)
    return out
