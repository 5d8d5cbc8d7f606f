"""Model and request ids: strict validation, normalisation, the route family of a model id and the app-id rule.

A model id is the path after the base URL: `fal-ai/kling-video/...` (or UniAPI's short `kling-video/...`) on the
fal queue route, `kling/v1/videos/text2video` on UniAPI's native Kling route, `luma/generations` on its Luma route.
Everything that ends up in an upstream URL path passes through here first, so a crafted id can never leave the
configured base path or host.
"""

from __future__ import annotations

import re

from server.route_family import NATIVE_PREFIXES, RouteFamily, route_family_of

Family = RouteFamily  # fal, kling, luma: the one rule is server.route_family.route_family_of
__all__ = ["Family", "route_family_of"]

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
MAX_ENDPOINT_ID_LENGTH = 200
DEFAULT_OWNER = "fal-ai"
# Owners whose app id spans three segments (owner/namespace/app) instead of two.
_THREE_SEGMENT_OWNERS = frozenset({"workflows", "comfy"})
# Owners recognised in a full id; any other first segment is the UniAPI spelling and gets `fal-ai/` in front
# (UniAPI routes only `/fal-ai/{model}`, and fal's own `fal-ai/bytedance/...` ids start with an app name).
_KNOWN_OWNERS = frozenset({DEFAULT_OWNER, *_THREE_SEGMENT_OWNERS})
# UniAPI's native routes (first path segments in NATIVE_PREFIXES). Kling's are `kling/v1/{videos|images}/{action}`;
# Luma's are a generation and its extension (the source generation's id goes in the input, not in the model id).
_KLING_ROUTE = re.compile(r"kling/v1/(videos|images)/[a-z0-9][a-z0-9-]*")
LUMA_GENERATE = "luma/generations"
LUMA_EXTEND = "luma/generations/extend"
LUMA_SOURCE_FIELD = "source_request_id"  # the extend's input field naming the generation to extend
_LUMA_ROUTES = frozenset({LUMA_GENERATE, LUMA_EXTEND})


class InvalidIdError(ValueError):
    """An endpoint or request id that is not safe or not well-formed; the message says what to send."""


def normalize_endpoint_id(model: str) -> str:
    """Return the full fal endpoint id (`fal-ai/kling-video/...`) for either accepted spelling.

    Accepts `fal-ai/kling-video/v2.1/standard/image-to-video` and the UniAPI spelling without the owner,
    `kling-video/v2.1/standard/image-to-video`. Raises InvalidIdError for anything that is not plain
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
    if segments[0] in NATIVE_PREFIXES:
        return _native_route(text)
    if segments[0] not in _KNOWN_OWNERS:
        segments.insert(0, DEFAULT_OWNER)
    if len(segments) < 2 or (segments[0] in _THREE_SEGMENT_OWNERS and len(segments) < 3):
        raise InvalidIdError(f"model {text!r} is too short: an endpoint id has an owner and an app, e.g. 'fal-ai/veo3'")
    return "/".join(segments)


normalize_model_id = normalize_endpoint_id  # the name for any family's model id


def _native_route(text: str) -> str:
    if _KLING_ROUTE.fullmatch(text) or text in _LUMA_ROUTES:
        return text
    raise InvalidIdError(
        f"model {text[:80]!r} is not one of UniAPI's native routes: Kling's are 'kling/v1/videos/text2video', "
        "'kling/v1/videos/image2video', 'kling/v1/images/generations' and 'kling/v1/images/kolors-virtual-try-on'; "
        "Luma's are 'luma/generations' and 'luma/generations/extend' (the generation to extend goes in the input "
        "field source_request_id). For fal's route spell the model with its owner, e.g. 'fal-ai/kling-video/...'."
    )


def app_id(endpoint_id: str) -> str:
    """The app id that status, result and cancel calls use: owner/app (owner/ns/app for workflows and comfy)."""
    segments = endpoint_id.split("/")
    count = 3 if segments[0] in _THREE_SEGMENT_OWNERS else 2
    return "/".join(segments[:count])


def validate_request_id(request_id: str) -> str:
    """Return the request id if it is a plain token (fal and Luma use UUIDs, Kling long decimal strings); raise
    InvalidIdError otherwise."""
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id.strip()):
        shown = request_id[:80] if isinstance(request_id, str) else type(request_id).__name__
        raise InvalidIdError(
            f"request_id {shown!r} is not a valid request id: it is a token of letters, digits, '-' and '_' "
            "(a UUID such as '764cabcf-b745-4b3e-ae38-1200304cf45b', or a Kling task id such as "
            "'831922345719271433'), as returned by submit_fal_job"
        )
    return request_id.strip()
