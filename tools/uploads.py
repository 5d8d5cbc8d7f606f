"""Local files as model inputs: a photo on disk becomes a URL (fal storage) or a data URI (UniAPI only).

Reading is confined by `server.files.local` (allowed roots, media only, size cap); this module decides how the
bytes reach the model. The fields that may name a local file are the catalog's (`CatalogEntry.file_fields`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from server.files.local import (
    FileRefusedError,
    LocalMedia,
    is_local_reference,
    read_media,
    to_data_uri,
    to_raw_base64,
)
from tools.answers import UploadAnswer
from tools.catalog.base import FileInput, file_inputs

if TYPE_CHECKING:
    from server.runtime import Runtime
    from tools.catalog import CatalogEntry

AS_DATA_URI = FileInput()  # how a file field without a mark (`image_url`) takes an inlined file
_DATA_URI = re.compile(r"data:[^,;]*(;[^,;]*)*;base64,", re.IGNORECASE)
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
    """A local file named in a file field: where it goes in the body, its bytes, and how the field takes a file."""

    field: str
    index: int | None  # its place in a list field (image_urls), else None
    media: LocalMedia
    mark: FileInput = AS_DATA_URI

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
    for name, mark in file_inputs(entry.params).items():
        value = body.get(name)
        places: list[tuple[int | None, Any]] = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in places:
            if not (isinstance(item, str) and is_local_reference(item)):
                continue
            where = name if index is None else f"{name}[{index}]"
            try:
                local = LocalFile(name, index, await _read(rt, item), mark)
            except FileRefusedError as exc:
                problems.append(f"{where}: {exc.message.rstrip('.')}")
                continue
            misfit = _misfit(local)
            if misfit:
                problems.append(f"{where}: {misfit}")
            else:
                found.append(local)
    return found, problems


async def publish_local_files(
    rt: Runtime, entry: CatalogEntry | None, body: dict[str, Any], files: list[LocalFile]
) -> tuple[dict[str, Any], list[str]]:
    """`body` with each local file replaced by its URL (fal storage, or the file inlined as the field wants it),
    and a note for each. A field that wants raw base64 (Kling's) also loses the `data:` prefix of a data URI."""
    converted = {name: list(value) if isinstance(value, list) else value for name, value in body.items()}
    notes = _drop_data_prefixes(entry, converted)
    for local in files:
        url, kind = await _publish(rt, local.media, local.mark)
        if local.index is None:
            converted[local.field] = url
        else:
            converted[local.field][local.index] = url
        how = {
            "uploaded": "uploaded to fal storage",
            "data_uri": "inlined as a data URI (no fal key to upload with)",
            "raw_base64": "inlined as raw base64 without a data: prefix, as this model wants (no fal key to upload)",
        }[kind]
        media = local.media
        notes.append(f"{local.label}: local file {media.path.name} ({media.mime}, {media.size} bytes) {how}.")
    return (converted, notes) if notes else (body, [])


async def ledger_body(sent: dict[str, Any], files: list[LocalFile]) -> dict[str, Any]:
    """`sent` as the ledger keeps it: each local file that went inline (a data URI, raw base64) named by its path,
    size and sha256 instead of its megabytes, so a job's row stays small; an uploaded file keeps its URL."""
    inline = [local for local in files if not _is_url(_value_at(sent, local))]
    if not inline:
        return sent
    kept = {name: list(value) if isinstance(value, list) else value for name, value in sent.items()}
    for local in inline:
        reference = await anyio.to_thread.run_sync(local_file_reference, local.media)  # hashing MBs: off the loop
        if local.index is None:
            kept[local.field] = reference
        else:
            kept[local.field][local.index] = reference
    return kept


def local_file_reference(media: LocalMedia) -> dict[str, Any]:
    """What the ledger keeps in place of a local file sent inline."""
    return {
        "local_file": str(media.path),
        "content_type": media.mime,
        "size": media.size,
        "sha256": hashlib.sha256(media.data).hexdigest(),
    }


def _value_at(body: dict[str, Any], local: LocalFile) -> Any:
    value = body.get(local.field)
    return value[local.index] if local.index is not None and isinstance(value, list) else value


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def _drop_data_prefixes(entry: CatalogEntry | None, body: dict[str, Any]) -> list[str]:
    """In place: a data URI given in a raw-base64 field becomes the bare base64 the model wants."""
    notes = []
    marks = file_inputs(entry.params) if entry is not None else {}
    for name, mark in marks.items():
        value = body.get(name)
        if mark.inline == "raw_base64" and isinstance(value, str) and _DATA_URI.match(value):
            body[name] = _DATA_URI.sub("", value, count=1)
            notes.append(f"{name}: the data: prefix was removed, as this model takes raw base64.")
    return notes


def _misfit(local: LocalFile) -> str | None:
    """What is wrong with a file for this model (Kling: jpg or png, at most 10 MB), or None."""
    mark, media = local.mark, local.media
    if mark.accepts and media.mime not in mark.accepts:
        return (
            f"{media.path.name} is {media.mime}, but this model takes only {' or '.join(mark.accepts)}; "
            "convert the file and try again"
        )
    if mark.max_bytes is not None and media.size > mark.max_bytes:
        return f"{media.path.name} is {media.size:,} bytes, over this model's {mark.max_bytes:,}-byte limit"
    return None


async def _read(rt: Runtime, reference: str) -> LocalMedia:
    settings = rt.settings
    read = functools.partial(read_media, reference, roots=settings.file_roots, max_bytes=settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(read)


async def _publish(
    rt: Runtime, media: LocalMedia, mark: FileInput = AS_DATA_URI
) -> tuple[str, Literal["uploaded", "data_uri", "raw_base64"]]:
    storage = rt.storage()
    if storage is not None:
        return await storage.upload(media), "uploaded"
    if mark.inline == "raw_base64":
        return to_raw_base64(media), "raw_base64"
    return to_data_uri(media), "data_uri"
