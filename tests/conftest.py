"""Shared fixtures: a real sandbox upstream on 127.0.0.1 and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.sandbox import Sandbox, SandboxConfig
from server.settings import Settings
from tests.helpers import make_settings
from tools.catalog.sandbox_rules import CatalogRules

pytest_plugins = ["tests.postgres"]  # PostgreSQL: one cluster per session, `postgres_url`, `backend`


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    config = SandboxConfig(queue_seconds=0.2, run_seconds=0.6, key="test-key-0123456789")
    with Sandbox(config, CatalogRules()) as running:
        yield running


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    return make_settings(sandbox)
