"""Helpers shared by the tests: the seed example, settings for a sandbox, an in-memory client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client

from server.app import create_server
from server.sandbox import Sandbox
from server.settings import Settings

SEED_MODEL = "fal-ai/kling-video/v2.1/standard/image-to-video"
# UniAPI's own example body: `aspect_ratio` is not in fal's schema and must pass through unchanged.
SEED_INPUT: dict[str, Any] = {
    "prompt": "A cat slowly turns its head toward the camera and blinks",
    "image_url": "https://storage.googleapis.com/falserverless/kling/kling_input.jpeg",
    "duration": "5",
    "aspect_ratio": "16:9",
}


def make_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "fal",
        "base_url": sandbox.base_url,
        "fal_key": sandbox.config.key,
        "retry_deadline": 2.0,
        "request_timeout": 2.0,
        "submit_timeout": 2.0,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Client]:
    async with Client(create_server(settings)) as client:
        yield client


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)
