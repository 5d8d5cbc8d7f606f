from __future__ import annotations

import pytest

from server.upstream.ids import InvalidIdError, app_id, normalize_endpoint_id, validate_request_id


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("fal-ai/kling-video/v2.1/standard/image-to-video", "fal-ai/kling-video/v2.1/standard/image-to-video"),
        ("kling-video/v2.1/standard/image-to-video", "fal-ai/kling-video/v2.1/standard/image-to-video"),
        ("veo3", "fal-ai/veo3"),
        ("bytedance/seedance/v1/pro/text-to-video", "fal-ai/bytedance/seedance/v1/pro/text-to-video"),
        ("workflows/me/my-flow", "workflows/me/my-flow"),
        ("  fal-ai/flux/dev ", "fal-ai/flux/dev"),
    ],
)
def test_both_spellings_normalise_to_the_fal_endpoint_id(given: str, expected: str) -> None:
    assert normalize_endpoint_id(given) == expected


@pytest.mark.parametrize(
    ("endpoint", "app"),
    [
        ("fal-ai/kling-video/v2.1/standard/image-to-video", "fal-ai/kling-video"),
        ("fal-ai/veo3", "fal-ai/veo3"),
        ("fal-ai/bytedance/seedance/v1/pro/text-to-video", "fal-ai/bytedance"),
        ("workflows/me/my-flow/sub", "workflows/me/my-flow"),
        ("comfy/me/graph", "comfy/me/graph"),
    ],
)
def test_app_id_rule(endpoint: str, app: str) -> None:
    assert app_id(endpoint) == app


HOSTILE_ENDPOINTS = [
    "",
    "../../etc/passwd",
    "fal-ai/../admin",
    "fal-ai/%2e%2e/admin",
    "//evil.example/fal-ai/x",
    "https://evil.example/fal-ai/x",
    "fal-ai/x@evil.example",
    "fal-ai\\kling",
    "fal-ai/kling\u2024video",  # one-dot leader, a look-alike of '.'
    "fal-ai/kling-video?x=1",
    "fal-ai/kling-video#frag",
    "Fal-AI/Kling",
    "fal-ai//kling",
    "fal-ai/kling video",
    "workflows/only",
    "x" * 300,
]


@pytest.mark.parametrize("model", HOSTILE_ENDPOINTS)
def test_hostile_endpoint_ids_are_refused(model: str) -> None:
    with pytest.raises(InvalidIdError):
        normalize_endpoint_id(model)


@pytest.mark.parametrize(
    "request_id",
    ["", "../x", "a/b", "%2e%2e", "id?x=1", "id#x", "a b", "https://evil", "\u0430bc", "x" * 200, "-lead"],
)
def test_hostile_request_ids_are_refused(request_id: str) -> None:
    with pytest.raises(InvalidIdError):
        validate_request_id(request_id)


def test_uuid_request_id_is_accepted() -> None:
    assert validate_request_id("764cabcf-b745-4b3e-ae38-1200304cf45b") == "764cabcf-b745-4b3e-ae38-1200304cf45b"
