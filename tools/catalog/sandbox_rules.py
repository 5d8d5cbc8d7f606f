"""The catalog as the sandbox's model rules: fal's 422 for an input a model refuses, outputs of each model's shape,
and the unit each model is priced in."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from server.sandbox import MediaKind
from tools.catalog import lookup
from tools.catalog.examples import example_output
from tools.catalog.quantity import priced_quantity


class CatalogRules:
    """Implements `server.sandbox.ModelRules` from the same classes the tools validate with."""

    def problems(self, endpoint_id: str, body: dict[str, Any]) -> list[dict[str, Any]] | None:
        entry = lookup(endpoint_id)
        if entry is None:
            return None
        try:
            entry.params.model_validate(body)
        except ValidationError as exc:
            return [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
        return None

    def media_kind(self, endpoint_id: str) -> MediaKind:
        entry = lookup(endpoint_id)
        return "video" if entry is None else entry.media_kind

    def output(self, endpoint_id: str, media_url: str, content_type: str) -> dict[str, Any] | None:
        entry = lookup(endpoint_id)
        return None if entry is None else example_output(entry.output, media_url, content_type)

    def price_unit(self, endpoint_id: str) -> str | None:
        """Seconds for a video model that takes a duration, else one video; megapixels for an image model that takes
        an image size, else one image. A model the catalog does not know is not priced."""
        entry = lookup(endpoint_id)
        if entry is None:
            return None
        fields = entry.params.model_fields
        if entry.media_kind == "video":
            return "second" if "duration" in fields else "video"
        return "megapixel" if "image_size" in fields else "image"

    def units(self, endpoint_id: str, body: dict[str, Any], unit: str) -> float | None:
        quantity = priced_quantity(lookup(endpoint_id), body, unit)
        return None if quantity is None else quantity.amount
