"""The catalog as the sandbox's model rules: fal's 422 for an input a model refuses, outputs of each model's shape."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from server.sandbox import MediaKind
from tools.catalog import lookup
from tools.catalog.examples import example_output


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
