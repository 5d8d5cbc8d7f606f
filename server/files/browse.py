"""Suggesting local image paths while a user types one (argument completion), confined like reading them.

Protocol-free. Only names are looked at, never contents: folders, and files with an image's extension, that
lie inside the configured roots after resolving symlinks (a link is suggested only if its target is inside
too). A folder outside the roots is never listed: the roots themselves are suggested instead, so typing leads
into them, and the answer is the same whether that outside folder exists or not. The folder checked is then
opened as uploads open files, one component at a time from its root with no symlink followed, so a folder
swapped for a link after the check is not listed. At most `max_entries` folder entries are looked at per call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server.files.local import LISTS_BENEATH, absolute_roots, is_inside, open_folder_beneath
from server.files.sniff import EXTENSIONS

IMAGE_EXTENSIONS = frozenset(
    {ext for mime, ext in EXTENSIONS.items() if mime.startswith("image/")} | {".jpeg", ".jpe", ".tif", ".heif"}
)


@dataclass(frozen=True)
class PathSuggestions:
    values: list[str]  # sorted; folders end with a separator
    complete: bool  # False when the listing stopped at max_entries: there may be more


def suggest_image_paths(typed: str, *, roots: Sequence[Path], max_entries: int) -> PathSuggestions:
    """Paths completing `typed` (absolute, or '~/...'): image files and folders inside `roots`."""
    allowed = absolute_roots(roots)
    if not allowed or "\0" in typed:
        return PathSuggestions([], True)
    resolved_roots = [root.resolve() for root in allowed]
    if typed == "~":
        typed = "~" + os.sep
    if typed.startswith("~" + os.sep):
        expanded = str(Path.home()) + typed[1:]
    elif os.path.isabs(typed):
        expanded = typed
    else:  # relative paths and '~user' cannot be read anyway: lead to the roots
        return _roots_matching(typed, allowed)
    folder, stem = os.path.split(expanded)
    try:
        real_folder = Path(folder).resolve(strict=True)
    except (OSError, RuntimeError):
        return _roots_matching(typed, allowed)
    if not real_folder.is_dir() or not is_inside(real_folder, resolved_roots):
        return _roots_matching(typed, allowed)
    shown = typed[: len(typed) - len(stem)]  # what the user typed before the last name ('~/', '/home/me/', ...)
    values: list[str] = []
    complete = True
    try:
        # The listing goes through the descriptor opened beneath the root, not the path checked above.
        fd = open_folder_beneath(real_folder, resolved_roots) if LISTS_BENEATH else None
    except OSError:  # unreadable, or changed since the check: nothing to suggest
        return PathSuggestions([], True)
    try:
        with os.scandir(real_folder if fd is None else fd) as entries:
            for seen, entry in enumerate(entries):
                if seen >= max_entries:
                    complete = False
                    break
                name = entry.name
                if not name.startswith(stem) or (name.startswith(".") and not stem.startswith(".")):
                    continue
                kind = _kind(entry, real_folder / name, resolved_roots)
                if kind == "folder":
                    values.append(f"{shown}{name}{os.sep}")
                elif kind == "image":
                    values.append(f"{shown}{name}")
    except OSError:  # unreadable folder: nothing to suggest
        return PathSuggestions([], True)
    finally:
        if fd is not None:
            os.close(fd)
    return PathSuggestions(sorted(values), complete)


def _kind(entry: os.DirEntry[str], path: Path, resolved_roots: Sequence[Path]) -> str | None:
    """'folder', 'image' or None; a symlink counts only when its target lies inside the roots."""
    try:
        if entry.is_symlink():
            target = path.resolve(strict=True)
            if not is_inside(target, resolved_roots):
                return None
            is_folder, is_file = target.is_dir(), target.is_file()
        else:
            is_folder, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
    except (OSError, RuntimeError):
        return None
    if is_folder:
        return "folder"
    if is_file and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
        return "image"
    return None


def _roots_matching(typed: str, roots: Sequence[Path]) -> PathSuggestions:
    """The roots (as '~/...' when the user typed that form) that complete `typed`."""
    home = Path.home()
    values = set()
    for root in roots:
        shown = str(root)
        if typed.startswith("~") and root.is_relative_to(home):
            relative = str(root.relative_to(home))
            shown = "~" if relative == "." else f"~{os.sep}{relative}"
        shown = shown.rstrip(os.sep) + os.sep
        if shown.startswith(typed):
            values.add(shown)
    return PathSuggestions(sorted(values), True)
