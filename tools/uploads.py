"""Local files as model inputs: a photo on disk becomes a URL (fal storage) or a data URI (UniAPI only).

Reading is confined by `server.files.local` (allowed roots, media only, size cap); this module decides how the
bytes reach the model and which input fields may name a local file.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

import anyio

from server.files.local import LocalMedia, is_local_reference, read_media, to_data_uri
from tools.answers import UploadAnswer

if TYPE_CHECKING:
    from server.app import Runtime
    from tools.catalog import CatalogEntry

DATA_URI_NOTE = (
    "No fal key is configured (a UniAPI token cannot upload to fal storage), so the file was inlined as a "
    "data URI, which most fal models accept."
)


async def upload(rt: Runtime, reference: str) -> UploadAnswer:
    media = await _read(rt, reference)
    url, kind = await _publish(rt, media)
    shown = url if kind == "uploaded" else f"data:{media.mime};base64,… ({len(url)} characters)"
    note = (
        f"Put this URL into the model's file field (image_url, start_image_url, ...): {shown}"
        if kind == "uploaded"
        else DATA_URI_NOTE + " Put the url value into the model's file field (image_url, ...)."
    )
    return UploadAnswer(url=url, kind=kind, content_type=media.mime, size=media.size, note=note)


def file_fields(entry: CatalogEntry) -> list[str]:
    """The catalogued model's fields that take file URLs (`image_url`, `tail_image_url`, `image_urls`, ...)."""
    return [name for name in entry.params.model_fields if name.endswith(("_url", "_urls"))]


async def convert_local_fields(
    rt: Runtime, entry: CatalogEntry | None, body: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Replace local paths in a catalogued model's file fields by URLs; returns the new body and notes."""
    if entry is None:
        return body, []
    converted = dict(body)
    notes: list[str] = []
    for name in file_fields(entry):
        value = body.get(name)
        if isinstance(value, str) and is_local_reference(value):
            converted[name], note = await _convert(rt, name, value)
            notes.append(note)
        elif isinstance(value, list) and any(isinstance(v, str) and is_local_reference(v) for v in value):
            items = []
            for index, item in enumerate(value):
                if isinstance(item, str) and is_local_reference(item):
                    item, note = await _convert(rt, f"{name}[{index}]", item)
                    notes.append(note)
                items.append(item)
            converted[name] = items
    return converted, notes


async def _convert(rt: Runtime, field: str, reference: str) -> tuple[str, str]:
    media = await _read(rt, reference)
    url, kind = await _publish(rt, media)
    how = "uploaded to fal storage" if kind == "uploaded" else "inlined as a data URI (no fal key to upload with)"
    return url, f"{field}: local file {media.path.name} ({media.mime}, {media.size} bytes) {how}."


async def _read(rt: Runtime, reference: str) -> LocalMedia:
    settings = rt.settings
    read = functools.partial(read_media, reference, roots=settings.file_roots, max_bytes=settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(read)


async def _publish(rt: Runtime, media: LocalMedia) -> tuple[str, Literal["uploaded", "data_uri"]]:
    storage = rt.storage()
    if storage is None:
        return to_data_uri(media), "data_uri"
    return await storage.upload(media), "uploaded"
