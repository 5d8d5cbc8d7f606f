"""Plain, safe file names for downloaded media: no paths, no control characters, no reserved names, and only media
extensions."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import unquote, urlsplit

from server.files.sniff import EXTENSIONS

MAX_NAME_CHARS = 100
_DROPPED = frozenset({"Cc", "Cf"})  # control and invisible format characters (NUL, bidi overrides) are removed
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._ -]+")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,8}")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,60}/[a-z0-9!#$&^_.+-]{1,60}")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(10)}
)
# Only media extensions are kept: any other (a program, a script, a web page, a shortcut) becomes ".bin", so a
# name from a job result or its Content-Type never turns a download into something a double click would run.
MEDIA_EXTENSIONS = frozenset(ext.lstrip(".") for ext in EXTENSIONS.values()) | {"jpeg", "tif", "m4v", "opus"}


def safe_file_name(request_id: str, url: str, suggested_name: str | None, content_type: str | None) -> str:
    """A plain file name "<first 8 of request id>-<base>.<ext>", safe on any file system.

    The base comes from `suggested_name`, else the URL path's last segment; the extension from that name when it
    is a media extension, else from `content_type` when that is a media type, else "bin".
    """
    prefix = re.sub(r"[^A-Za-z0-9]", "", request_id)[:8] or "job"
    stem, extension = "", ""
    for candidate in (suggested_name, _url_file_name(url)):
        if candidate:
            stem, extension = _split_extension(_clean_name(candidate))
            if stem:
                break
    stem = stem or "output"
    extension = extension or _extension_for(content_type) or "bin"
    if stem.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        stem += "_"
    room = MAX_NAME_CHARS - len(prefix) - len(extension) - 2
    return f"{prefix}-{stem[:room].rstrip(' .')}.{extension}"


def numbered(name: str, n: int) -> str:
    """The name of copy n: name.mp4, then "name (2).mp4", ..., still within MAX_NAME_CHARS."""
    if n == 1:
        return name
    stem, _, extension = name.rpartition(".")
    suffix = f" ({n}).{extension}"
    return stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") + suffix


def media_type(value: str | None) -> str | None:
    """The bare "type/subtype" of a Content-Type value, or None when there is none or it is malformed."""
    if not value:
        return None
    bare = value.split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.fullmatch(bare) else None


def _url_file_name(url: str) -> str:
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.rsplit("/", 1)[-1])


def _clean_name(text: str) -> str:
    # NFKD first: it maps look-alikes (fullwidth ／, ＼, ．) to the characters that are then stripped.
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if unicodedata.category(c) not in _DROPPED and not unicodedata.combining(c))
    text = re.split(r"[/\\]", text)[-1]  # directory parts, both separators, whatever the platform
    return _NAME_CHARS.sub("_", text).strip(" ")


def _split_extension(name: str) -> tuple[str, str]:
    """(stem, extension) with no leading dots or dashes; an unusable extension stays in the stem."""
    stem, dot, extension = name.rpartition(".")
    if not (dot and stem.strip("._- ") and _EXTENSION.fullmatch(extension)):
        stem, extension = name, ""
    elif extension.lower() not in MEDIA_EXTENSIONS:
        extension = ""
    return stem.lstrip("._- ").rstrip(" ."), extension.lower()


def _extension_for(content_type: str | None) -> str | None:
    kind = media_type(content_type)
    if kind is None:
        return None
    guessed = EXTENSIONS.get(kind) or mimetypes.guess_extension(kind, strict=False)
    extension = (guessed or "").lstrip(".").lower()
    return extension if extension in MEDIA_EXTENSIONS else None
