"""What the tools share for the server's lifetime: settings, the upstream client, the jobs known here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from server.jobs import JobRegistry
from server.settings import Settings
from server.upstream import FalQueueClient, create_http_client


@dataclass
class Runtime:
    settings: Settings
    upstream: FalQueueClient
    jobs: JobRegistry


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """One pooled HTTP client for the whole lifetime, closed on the way out."""
    async with create_http_client(settings) as http:
        yield Runtime(settings=settings, upstream=FalQueueClient(settings, http), jobs=JobRegistry())
