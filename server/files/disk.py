"""Writing a download to disk, safely: a hidden temporary file in the target folder, fsynced, then published under
a name that never replaces a different file (an identical one is reused). Synchronous: callers run these in a
worker thread. The temporary files of interrupted downloads are recognised by name and removed once stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path

from server.errors import DownloadError
from server.files.names import numbered

PART_PREFIX, PART_SUFFIX = ".download-", ".part"
MAX_COPIES = 999  # "name (999).mp4" is the last name tried before giving up
READ_BYTES = 1024 * 1024  # chunk size when hashing an existing file


def ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # 0o700 applies to the folder this creates
    except FileExistsError:
        raise DownloadError(
            f"Cannot save into {directory}: it exists and is not a folder. Choose another folder."
        ) from None
    except OSError as exc:
        raise DownloadError(
            f"Cannot create the folder {directory} ({exc.strerror or type(exc).__name__}); choose a folder the "
            "server can write to."
        ) from None


def remove_stale_parts(directory: Path, older_than: float) -> int:
    """Remove the temporary files of interrupted downloads last written before `older_than` (epoch seconds);
    returns how many. Only regular files named like this module's own temporary files are touched."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not (entry.name.startswith(PART_PREFIX) and entry.name.endswith(PART_SUFFIX)):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime < older_than:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def create_temporary(directory: Path) -> tuple[io.BufferedWriter, Path]:
    # In the target folder, so the final rename never crosses file systems; hidden, and created 0o600.
    fd, name = tempfile.mkstemp(prefix=PART_PREFIX, suffix=PART_SUFFIX, dir=directory)
    try:
        return os.fdopen(fd, "wb"), Path(name)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise


def publish(file: io.BufferedWriter, temporary: Path, directory: Path, name: str, sha256: str, size: int) -> Path:
    """Make the finished temporary file durable and give it its name; an existing identical file is reused."""
    file.flush()
    os.fsync(file.fileno())
    file.close()
    attempts, n = 0, 1
    while n <= MAX_COPIES and attempts < MAX_COPIES + 10:
        attempts += 1
        final = directory / numbered(name, n)
        try:
            info: os.stat_result | None = os.lstat(final)
        except FileNotFoundError:
            info = None
        if info is None:
            if _link_no_clobber(temporary, final):
                _fsync_directory(directory)
                return final
            continue  # someone else created it just now: look at it again
        if stat.S_ISREG(info.st_mode) and info.st_size == size and _sha256_of(final) == sha256:
            temporary.unlink()
            return final
        n += 1
    raise DownloadError(
        f"{directory} already holds {MAX_COPIES} different files named like {name}, so nothing was saved; "
        "clean up the folder or choose another one."
    )


def _link_no_clobber(temporary: Path, final: Path) -> bool:
    """Give the file its final name unless that name exists; False if it does."""
    try:
        # A hard link is an atomic "create only if absent": unlike os.replace it never replaces a file that
        # appeared after the check above (a concurrent download of the same name, say).
        os.link(temporary, final)
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system (FAT, some network shares): fall back to an atomic rename, which
        # leaves a small window in which a file created by someone else under `final` would be replaced.
        if os.path.lexists(final):
            return False
        os.replace(temporary, final)
        return True
    with contextlib.suppress(OSError):
        temporary.unlink()
    return True


def _sha256_of(path: Path) -> str | None:
    """The sha256 of a regular file (links are not followed), or None when it cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        while chunk := os.read(fd, READ_BYTES):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Make the new name durable; a no-op where folders cannot be opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def discard(file: io.BufferedWriter, temporary: Path) -> None:
    """Remove an unfinished download. Synchronous, so it also runs to the end under cancellation."""
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(OSError):
        temporary.unlink()
