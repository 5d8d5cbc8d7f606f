"""Reading a user's local media file so it can be given to a model, tightly confined.

Protocol-free (no MCP here). An assistant can be steered by text it reads, so a path it passes is treated as
hostile: it must resolve (symlinks followed) to a regular file inside one of the configured roots, be no larger
than the cap, and be an image, video or audio file by its content, not by its name. A refusal never quotes the
file's bytes, reads at most the first few KB (to sniff), and sends nothing anywhere.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from server.errors import FalError

SNIFF_BYTES = 4096
ROOTS_SETTING = "FAL_MCP_FILE_ROOTS"
MAX_BYTES_SETTING = "FAL_MCP_MAX_UPLOAD_BYTES"

# The file extension for each MIME type sniff_mime can answer (used to name uploads).
EXTENSIONS: dict[str, str] = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/ogg": ".ogv",
    "audio/mpeg": ".mp3",
    "audio/aac": ".aac",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
}


class FileRefusedError(FalError):
    """A local file was not read (or not used): the message says why and what to do; never its contents."""

    kind = "file_refused"


@dataclass(frozen=True)
class LocalMedia:
    path: Path  # resolved
    mime: str
    size: int
    data: bytes = field(repr=False)  # keep megabytes out of reprs and logs


def is_local_reference(value: str) -> bool:
    """True for an absolute path, '~/...', or a file:// URL; False for http(s), data: and anything else."""
    if value[:7].lower() == "file://":
        return True
    if value.startswith("~/") or (os.sep != "/" and value.startswith("~" + os.sep)):
        return True
    return "://" not in value and not value.lower().startswith("data:") and Path(value).is_absolute()


def to_data_uri(media: LocalMedia) -> str:
    return f"data:{media.mime};base64,{base64.b64encode(media.data).decode('ascii')}"


def read_media(reference: str, *, roots: Sequence[Path], max_bytes: int) -> LocalMedia:
    """Read a local image, video or audio file that lies inside one of `roots`, or raise FileRefusedError."""
    candidate = _path_of(reference)
    allowed = absolute_roots(roots)
    resolved_roots = [root.resolve() for root in allowed]
    if not allowed:
        raise FileRefusedError(
            f"Reading local files is turned off: no folders are allowed. Set {ROOTS_SETTING} to the folders the "
            "server may read media from and restart it, or pass an http(s) URL of the file instead."
        )
    try:
        path = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        # Outside the roots, a missing file gets the same answer as an existing one, so paths can't be probed.
        if not is_inside(Path(os.path.normpath(candidate)), allowed + resolved_roots):
            raise _outside(reference, resolved_roots) from None
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise FileRefusedError(f"No file exists at {reference}. Check the path and try again.") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it could not be resolved"
        raise FileRefusedError(f"Cannot open {reference}: {reason}.") from None
    # Checked after symlinks are resolved, so a link inside a root cannot lead elsewhere.
    if not is_inside(path, resolved_roots):
        raise _outside(reference, resolved_roots)

    try:
        info = os.lstat(path)  # lstat: the resolved path must not have become a link since
    except OSError as exc:
        raise FileRefusedError(f"Cannot open {reference}: {exc.strerror or type(exc).__name__}.") from None
    _require_regular(reference, info)
    if info.st_size > max_bytes:
        raise _too_large(reference, info.st_size, max_bytes)

    # O_NONBLOCK: if the file is swapped for a FIFO after the stat, opening it must not hang.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefusedError(f"Cannot open {reference}: {exc.strerror or type(exc).__name__}.") from None
    try:
        # Re-check on the open descriptor: the path may have been replaced since the stat above.
        opened = os.fstat(fd)
        _require_regular(reference, opened)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise FileRefusedError(f"{reference} changed while it was being opened; try again.")
        head = _read_up_to(fd, min(SNIFF_BYTES, max_bytes + 1))
        mime = sniff_mime(head)
        if mime is None:
            raise FileRefusedError(
                f"{reference} is not an image, video or audio file (judged by its content, not its name), so it "
                "was not used. Only media files can be sent to a model; nothing was sent."
            )
        data = head + _read_up_to(fd, max_bytes + 1 - len(head))
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # the file grew after the stat
        raise _too_large(reference, len(data), max_bytes)
    return LocalMedia(path=path, mime=mime, size=len(data), data=data)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of an image, video or audio file from its first bytes, or None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"BM") and head[6:10] == b"\0\0\0\0" and head[14:18] in _BMP_DIB_SIZES:
        return "image/bmp"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: the DocType says which
        if b"webm" in head[:64]:
            return "video/webm"
        if b"matroska" in head[:64]:
            return "video/x-matroska"
        return None
    if head.startswith(b"OggS"):
        return "video/ogg" if b"\x80theora" in head[:128] else "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    return _sniff_mpeg_frame(head)


# "BM" alone is too weak (text can start so): also require zero reserved bytes and a known DIB header size.
_BMP_DIB_SIZES = frozenset(n.to_bytes(4, "little") for n in (12, 16, 40, 52, 56, 64, 108, 124))
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V ", b"MSNV", b"f4v "}
)


def _sniff_ftyp(head: bytes) -> str | None:
    """ISO base media (MP4, MOV, M4A, HEIC, AVIF): the major brand, then the compatible brands."""
    end = min(len(head), max(16, int.from_bytes(head[:4], "big")))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if brands[0] in _AVIF_BRANDS or (brands[0] in _HEIC_BRANDS and _AVIF_BRANDS.intersection(brands)):
        return "image/avif"
    if brands[0] in _HEIC_BRANDS:
        return "image/heic"
    if brands[0] in _M4A_BRANDS:
        return "audio/mp4"
    if brands[0] == b"qt  ":
        return "video/quicktime"
    if _MP4_BRANDS.intersection(brands) or brands[0].startswith(b"3g"):
        return "video/mp4"
    return None


def _sniff_mpeg_frame(head: bytes) -> str | None:
    """An MPEG audio frame header (MP3 without ID3 tag) or ADTS (raw AAC): 11 sync bits, then sane fields."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    if layer == 0:
        # ADTS: MPEG-4/2 AAC with layer bits 00; sampling index 13-15 are invalid.
        return "audio/aac" if head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0xF < 13 else None
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
    if version == 0b01 or bitrate in (0, 0xF) or rate == 0b11:
        return None
    return "audio/mpeg"


def _path_of(reference: str) -> Path:
    """Turn a path, '~/...' or file:// URL into an absolute path, refusing anything else."""
    if "\0" in reference:
        raise FileRefusedError("The file path contains a NUL character; give a plain absolute path.")
    text = reference
    if text[:7].lower() == "file://":
        parts = urlsplit(text)
        if parts.netloc.lower() not in ("", "localhost"):
            raise FileRefusedError(
                f"{reference} names a file on another machine ({parts.netloc}); only files on this computer can "
                "be read. Pass an http(s) URL for remote files."
            )
        if parts.query or parts.fragment:
            raise FileRefusedError(f"{reference} has a query or fragment; give a plain file:// URL or path.")
        text = url2pathname(parts.path)  # percent-decodes (and maps /C:/... on Windows)
        if "\0" in text:
            raise FileRefusedError("The file path contains a NUL character; give a plain absolute path.")
    path = Path(text).expanduser() if text.startswith("~") else Path(text)
    if not path.is_absolute():
        raise FileRefusedError(
            f"{reference} is not an absolute path; give the full path (for example /Users/me/Pictures/cat.jpg), "
            "a path starting with ~/, or a file:// URL."
        )
    return path


def absolute_roots(roots: Sequence[Path]) -> list[Path]:
    """The configured folders as absolute paths ('~' expanded), symlinks not yet resolved."""
    return [Path(os.path.abspath(root.expanduser())) for root in roots]


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether `path` is one of `roots` or lies below one (lexically: resolve both first to follow links)."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def _outside(reference: str, roots: Sequence[Path]) -> FileRefusedError:
    shown = ", ".join(str(root) for root in roots)
    return FileRefusedError(
        f"{reference} is outside the folders this server may read ({shown}), so it was not read. Move or copy the "
        f"file into one of them, or add its folder to {ROOTS_SETTING} and restart the server, or pass an http(s) "
        "URL of the file instead."
    )


def _too_large(reference: str, size: int, max_bytes: int) -> FileRefusedError:
    return FileRefusedError(
        f"{reference} is {size:,} bytes, over the {max_bytes:,}-byte limit for local files "
        f"({MAX_BYTES_SETTING}), so it was not read. Upload it somewhere that gives a public link and pass that "
        f"http(s) URL instead, or raise {MAX_BYTES_SETTING} and restart the server."
    )


def _require_regular(reference: str, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        what = "a folder"
    elif stat.S_ISFIFO(mode):
        what = "a named pipe"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "a special file"
    raise FileRefusedError(f"{reference} is {what}, not a media file; give the path of one image, video or audio file.")


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
