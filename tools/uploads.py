"""Local files as model inputs: a photo on disk becomes a URL (fal storage) or a data URI (UniAPI only).

Reading is confined by `server.files.local` (allowed roots, media only, size cap); this module decides how the
bytes reach the model. The fields that may name a local file are the catalog's (`CatalogEntry.file_fields`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from server.files.local import FileRefusedError, LocalMedia, is_local_reference, read_media, to_data_uri
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


@dataclass(frozen=True)
class LocalFile:
    """A local file named in a file field: where it goes in the body, and its bytes."""

    field: str
    index: int | None  # its place in a list field (image_urls), else None
    media: LocalMedia

    @property
    def label(self) -> str:
        return self.field if self.index is None else f"{self.field}[{self.index}]"


async def read_local_files(
    rt: Runtime, entry: CatalogEntry | None, body: dict[str, Any]
) -> tuple[list[LocalFile], list[str]]:
    """Read every local file named in a catalogued model's file fields. A refused file is a problem returned, not
    raised, so submit names it with the input's other problems; nothing is uploaded yet (that waits until the whole
    input is good), so the files read are held until then, each within the upload cap."""
    if entry is None:
        return [], []
    found: list[LocalFile] = []
    problems: list[str] = []
    for name in entry.file_fields:
        value = body.get(name)
        places: list[tuple[int | None, Any]] = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in places:
            if not (isinstance(item, str) and is_local_reference(item)):
                continue
            try:
                found.append(LocalFile(name, index, await _read(rt, item)))
            except FileRefusedError as exc:
                where = name if index is None else f"{name}[{index}]"
                problems.append(f"{where}: {exc.message.rstrip('.')}")
    return found, problems


async def publish_local_files(
    rt: Runtime, body: dict[str, Any], files: list[LocalFile]
) -> tuple[dict[str, Any], list[str]]:
    """`body` with each local file replaced by its URL (fal storage, or a data URI), and a note for each."""
    if not files:
        return body, []
    converted = {name: list(value) if isinstance(value, list) else value for name, value in body.items()}
    notes: list[str] = []
    for local in files:
        url, kind = await _publish(rt, local.media)
        if local.index is None:
            converted[local.field] = url
        else:
            converted[local.field][local.index] = url
        how = "uploaded to fal storage" if kind == "uploaded" else "inlined as a data URI (no fal key to upload with)"
        media = local.media
        notes.append(f"{local.label}: local file {media.path.name} ({media.mime}, {media.size} bytes) {how}.")
    return converted, notes


async def _read(rt: Runtime, reference: str) -> LocalMedia:
    settings = rt.settings
    read = functools.partial(read_media, reference, roots=settings.file_roots, max_bytes=settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(read)


async def _publish(rt: Runtime, media: LocalMedia) -> tuple[str, Literal["uploaded", "data_uri"]]:
    storage = rt.storage()
    if storage is None:
        return to_data_uri(media), "data_uri"
    return await storage.upload(media), "uploaded"
