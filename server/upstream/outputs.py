"""The media files in a model's output (every `{url: ...}` object), so each can be surfaced and kept."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

MAX_DEPTH = 8


class MediaFile(BaseModel):
    url: str
    content_type: str | None = None
    field: str = Field(description="Where in the output the file was found, e.g. 'video' or 'images[0]'.")


def find_media(output: Any) -> list[MediaFile]:
    """Every `{url: ...}` object with an http(s) URL, in output order, with its MIME type when knowable."""
    found: list[MediaFile] = []
    _walk(output, "", found, 0)
    return found


def _walk(node: Any, where: str, found: list[MediaFile], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, dict):
        url = node.get("url")
        if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
            content_type = node.get("content_type")
            if not isinstance(content_type, str) or not content_type:
                content_type = mimetypes.guess_type(urlsplit(url).path)[0]
            found.append(MediaFile(url=url, content_type=content_type, field=where or "output"))
            return
        for key, value in node.items():
            _walk(value, f"{where}.{key}" if where else str(key), found, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk(value, f"{where}[{index}]", found, depth + 1)
