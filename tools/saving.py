"""Saving a result's media files on disk (get_fal_result download=true), recorded in the ledger.

The transfer itself (http(s) only, no key, size- and time-capped, atomic, sha256) is `server.downloads`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from server.downloads import DownloadLimits, download_media
from server.errors import FalError
from server.runtime import Runtime
from server.settings import is_loopback_host
from tools.answers import MediaFile, SavedDownload

APP_FOLDER = "fal-queue-mcp"


def download_dir(rt: Runtime) -> Path:
    if rt.settings.download_dir is not None:
        return rt.settings.download_dir
    return platformdirs.user_downloads_path() / APP_FOLDER


async def save_media(rt: Runtime, request_id: str, media: list[MediaFile]) -> tuple[list[SavedDownload], list[str]]:
    """Download every media file; returns what was saved and, for each file that failed, why."""
    limits = DownloadLimits(
        max_bytes=rt.settings.max_download_bytes,
        timeout_seconds=rt.settings.download_timeout,
        # Only a loopback upstream (the sandbox) may hand out loopback media URLs.
        allow_loopback=is_loopback_host(urlsplit(rt.settings.base_url).hostname or ""),
    )
    saved: list[SavedDownload] = []
    problems: list[str] = []
    for item in media:
        try:
            file = await download_media(
                rt.media_http,
                item.url,
                directory=download_dir(rt),
                request_id=request_id,
                suggested_name=None,
                content_type=item.content_type,
                limits=limits,
            )
        except FalError as exc:
            problems.append(f"{item.field}: {exc.message}")
            continue
        await rt.db(rt.ledger.record_download, request_id, item.url, str(file.path), file.sha256, file.size)
        saved.append(SavedDownload(url=item.url, path=str(file.path), size=file.size, sha256=file.sha256))
    return saved, problems
