"""Saving a result's media files on disk (get_fal_result download=true), recorded in the ledger.

The transfer itself (http(s) only, no key, size- and time-capped, atomic, sha256) is `server.files.downloads`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from server.errors import FalError
from server.files.downloads import download_media
from server.upstream.outputs import MediaFile
from tools.answers import SavedDownload

if TYPE_CHECKING:
    from server.runtime import Runtime

APP_FOLDER = "fal-queue-mcp"


def download_dir(rt: Runtime) -> Path:
    if rt.settings.download_dir is not None:
        return rt.settings.download_dir
    return platformdirs.user_downloads_path() / APP_FOLDER


async def save_media(
    rt: Runtime, request_id: str, media: list[MediaFile]
) -> tuple[list[SavedDownload], list[str], Path]:
    """Download the media files (at most FAL_MCP_MAX_DOWNLOAD_FILES of them); returns what was saved, why each
    file not saved was not, and the folder."""
    directory = download_dir(rt)
    limits = rt.download_limits()
    saved: list[SavedDownload] = []
    problems: list[str] = []
    most = rt.settings.max_download_files
    if len(media) > most:
        # A result is steerable: thousands of URLs must not become thousands of downloads.
        problems.append(
            f"{len(media) - most} more media file(s) not downloaded: at most {most} are saved per result "
            "(FAL_MCP_MAX_DOWNLOAD_FILES); their URLs are in the output."
        )
    for item in media[:most]:
        try:
            file = await download_media(
                rt.media_http,
                item.url,
                directory=directory,
                request_id=request_id,
                suggested_name=None,
                content_type=item.content_type,
                limits=limits,
                resolve=rt.resolve,
            )
        except FalError as exc:
            problems.append(f"{item.field}: {exc.message}")
            continue
        await rt.jobs.record_download(request_id, item.url, str(file.path), file.sha256, file.size)
        saved.append(SavedDownload(url=item.url, path=str(file.path), size=file.size, sha256=file.sha256))
    return saved, problems, directory
