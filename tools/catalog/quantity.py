"""How many priced units one input asks for: seconds of video, images, megapixels, or one video.

Computed from what the user sent, with the model's own defaults (from its parameter class) for what they left out,
so `{"prompt": ...}` on a 5 s-by-default model counts 5 seconds. `None` means the input does not tell (a unit this
module does not know, a model not in the catalog); the caller then says so rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticUndefined

from tools.catalog.base import CatalogEntry

# fal's image size presets (https://fal.ai/models: image_size), in pixels.
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
# The fields that say how many outputs one request makes (fal's `num_images`, Kling's `n`).
COUNT_FIELDS = ("num_images", "n", "num_videos")
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")


@dataclass(frozen=True)
class Quantity:
    """`amount` units, and how it was worked out (shown beside the estimate)."""

    amount: float
    basis: str


def priced_quantity(entry: CatalogEntry | None, body: dict[str, Any], unit: str) -> Quantity | None:
    if unit in ("video", "request", "generation", "call"):
        count = _count(entry, body)
        return Quantity(float(count), "one per request" if count == 1 else f"{count} per request")
    if entry is None:
        return None
    if unit == "second":
        return _seconds(entry, body)
    if unit == "image":
        count = _count(entry, body)
        return Quantity(float(count), f"{count} image{'s' if count != 1 else ''}")
    if unit == "megapixel":
        return _megapixels(entry, body)
    return None


def _value(entry: CatalogEntry | None, body: dict[str, Any], name: str) -> Any:
    """What the job will use for `name`: the user's value, else the model's default, else None."""
    if name in body:
        return body[name]
    if entry is None or name not in entry.params.model_fields:
        return None
    default = entry.params.model_fields[name].default
    return None if default is PydanticUndefined else default


def _count(entry: CatalogEntry | None, body: dict[str, Any]) -> int:
    for name in COUNT_FIELDS:
        value = _value(entry, body, name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


def _seconds(entry: CatalogEntry, body: dict[str, Any]) -> Quantity | None:
    value = _value(entry, body, "duration")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return Quantity(float(value), f"duration {value} s")
    if isinstance(value, str) and (match := _SECONDS.match(value)):
        return Quantity(float(match.group(1)), f"duration {value!r}")
    return None


def _megapixels(entry: CatalogEntry, body: dict[str, Any]) -> Quantity | None:
    size = _value(entry, body, "image_size")
    if hasattr(size, "model_dump"):
        size = size.model_dump()
    if isinstance(size, str) and size in SIZE_PRESETS:
        width, height = SIZE_PRESETS[size]
    elif isinstance(size, dict) and all(isinstance(size.get(k), int) for k in ("width", "height")):
        width, height = size["width"], size["height"]
    else:
        return None
    count = _count(entry, body)
    # fal rounds each image up to whole megapixels (a 1024x768 image is billed as 1 MP)
    per_image = max(1, -(-width * height // 1_000_000))
    return Quantity(float(per_image * count), f"{count} x {width}x{height} ({per_image} MP each)")
