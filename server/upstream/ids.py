"""Endpoint and request ids: strict validation, normalisation and the app-id rule.

Everything that ends up in an upstream URL path passes through here first, so a crafted id can never
leave the configured base path or host.
"""

from __future__ import annotations

import re

from server.route_family import route_family_of

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
MAX_ENDPOINT_ID_LENGTH = 200
DEFAULT_OWNER = "fal-ai"
# Owners whose app id spans three segments (owner/namespace/app) instead of two.
_THREE_SEGMENT_OWNERS = frozenset({"workflows", "comfy"})
# Owners recognised in a full id; any other first segment is the UniAPI spelling and gets `fal-ai/` in front
# (UniAPI routes only `/fal-ai/{model}`, and fal's own `fal-ai/bytedance/...` ids start with an app name).
_KNOWN_OWNERS = frozenset({DEFAULT_OWNER, *_THREE_SEGMENT_OWNERS})


class InvalidIdError(ValueError):
    """An endpoint or request id that is not safe or not well-formed; the message says what to send."""


def normalize_endpoint_id(model: str) -> str:
    """Return the full fal endpoint id (`fal-ai/kling-video/...`) for either accepted spelling.

    Accepts `fal-ai/kling-video/v2.1/standard/image-to-video` and the UniAPI spelling without the owner,
    `kling-video/v2.1/standard/image-to-video`; ids of UniAPI's native routes (`kling/v1/videos/text2video`,
    `luma/generations`) are returned as they are. Raises InvalidIdError for anything that is not plain
    lowercase path segments.
    """
    if not isinstance(model, str) or not model.strip():
        raise InvalidIdError(
            "model must be a fal endpoint id such as 'fal-ai/kling-video/v2.1/standard/image-to-video'"
        )
    text = model.strip()
    if len(text) > MAX_ENDPOINT_ID_LENGTH:
        raise InvalidIdError(f"model id is longer than {MAX_ENDPOINT_ID_LENGTH} characters")
    segments = text.split("/")
    bad = [s for s in segments if not _SEGMENT.fullmatch(s) or s in (".", "..") or ".." in s]
    if bad or not text.isascii():
        raise InvalidIdError(
            f"model {text[:80]!r} is not a valid fal endpoint id: use lowercase path segments of letters, digits, "
            "'.', '_' and '-' (no URL, no '..', no '%' escapes), e.g. 'fal-ai/kling-video/v2.1/standard/image-to-video'"
        )
    # A native route's id (`kling/v1/...`, `luma/generations`) is its path: no owner goes in front.
    if route_family_of(text) == "fal" and segments[0] not in _KNOWN_OWNERS:
        segments.insert(0, DEFAULT_OWNER)
    if len(segments) < 2 or (segments[0] in _THREE_SEGMENT_OWNERS and len(segments) < 3):
        raise InvalidIdError(f"model {text!r} is too short: an endpoint id has an owner and an app, e.g. 'fal-ai/veo3'")
    return "/".join(segments)


def app_id(endpoint_id: str) -> str:
    """The app id that status, result and cancel calls use: owner/app (owner/ns/app for workflows and comfy)."""
    segments = endpoint_id.split("/")
    count = 3 if segments[0] in _THREE_SEGMENT_OWNERS else 2
    return "/".join(segments[:count])


def validate_request_id(request_id: str) -> str:
    """Return the request id if it is a plain token (fal uses UUIDs); raise InvalidIdError otherwise."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id.strip()):
        shown = request_id[:80] if isinstance(request_id, str) else type(request_id).__name__
        raise InvalidIdError(
            f"request_id {shown!r} is not a valid fal request id: it is a token of letters, digits, '-' and '_' "
            "(a UUID such as '764cabcf-b745-4b3e-ae38-1200304cf45b'), as returned by submit_fal_job"
        )
    return request_id.strip()
