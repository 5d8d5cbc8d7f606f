"""Reading a user's local media file so it can be given to a model, tightly confined.

Protocol-free (no MCP here). An assistant can be steered by text it reads, so a path it passes is treated as
hostile: it must resolve (symlinks followed) to a regular file inside one of the configured roots, be no larger
than the cap, and be an image, video or audio file by its content, not by its name. A refusal never quotes the
file's bytes, reads at most the first few KB (to sniff), and sends nothing anywhere.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from server.errors import FalError
from server.files.sniff import SNIFF_BYTES, sniff_mime

ROOTS_SETTING = "FAL_MCP_FILE_ROOTS"
MAX_BYTES_SETTING = "FAL_MCP_MAX_UPLOAD_BYTES"


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
    return f"data:{media.mime};base64,{to_raw_base64(media)}"


def to_raw_base64(media: LocalMedia) -> str:
    """The file as bare base64, without a `data:` prefix (Kling's native routes want it so)."""
    return base64.b64encode(media.data).decode("ascii")


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

    fd = _open_beneath(reference, path, resolved_roots)
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


# O_NONBLOCK: if the file is swapped for a FIFO after the stat, opening it must not hang.
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# O_PATH where there is one: a folder the user may search but not list can still be walked through.
_FOLDER_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_WALKS_BENEATH = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")


# A folder opened to list it (O_PATH would not do): never through a symlink, never blocking.
_LIST_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
LISTS_BENEATH = _WALKS_BENEATH and os.scandir in os.supports_fd


def open_beneath(path: Path, roots: Sequence[Path], flags: int) -> int:
    """Open the resolved `path`, inside one of the resolved `roots`, one component at a time from its root's
    descriptor, following no symlink; `flags` for the last component. OSError when a component is (now) a
    symlink, missing or not a folder.

    O_NOFOLLOW on the whole path guards only its last component: a folder on the way swapped for a symlink
    after the checks would lead out of the root. Here every folder is opened with O_NOFOLLOW relative to the one
    before, so such a swap makes the open fail instead.
    """
    root = max((r for r in roots if is_inside(path, [r])), key=lambda r: len(r.parts))
    parts = path.relative_to(root).parts
    if not parts or not _WALKS_BENEATH:  # the root itself; or no openat (Windows): callers check what they got
        return os.open(path, flags)
    fd = os.open(root, _FOLDER_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)


def open_folder_beneath(path: Path, roots: Sequence[Path]) -> int:
    """`open_beneath` for a folder to list with `os.scandir(fd)` (where LISTS_BENEATH)."""
    return open_beneath(path, roots, _LIST_FLAGS)


def _open_beneath(reference: str, path: Path, roots: Sequence[Path]) -> int:
    """Open the file at the resolved `path` (see `open_beneath`); a refusal that says what happened."""
    try:
        return open_beneath(path, roots, _FILE_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            # A component became a symlink (or vanished) after the path was resolved and checked.
            raise FileRefusedError(f"{reference} changed while it was being opened; try again.") from None
        raise FileRefusedError(f"Cannot open {reference}: {exc.strerror or type(exc).__name__}.") from None


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
