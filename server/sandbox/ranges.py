"""Serving the sandbox's sample files as a CDN does: byte ranges answered with 206.

Safari plays a `<video>` only from a server that answers range requests, and Chromium seeks only then; fal's
CDN answers them, so the sandbox does too (one `bytes=first-last` range, the form players send).
"""

from __future__ import annotations

import re

from starlette.responses import Response

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def ranged_response(content: bytes, media_type: str, range_header: str | None) -> Response:
    """The whole file (200), the one range asked for (206), or 416 for a range outside the file."""
    headers = {"Accept-Ranges": "bytes"}
    match = _RANGE.fullmatch((range_header or "").strip())
    if match is None or match.groups() == ("", ""):  # no range, or one this sandbox does not serve: all of it
        return Response(content, media_type=media_type, headers=headers)
    first, last = match.groups()
    size = len(content)
    if not first:  # "bytes=-N": the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(content[start : end + 1], status_code=206, media_type=media_type, headers=headers)
