"""MCP resources: the catalog (and, with the ledger, the jobs and what they cost) as readable JSON documents.

An unknown (or malformed) model or job is "not found" (-32602), not an internal error (-32603).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from server.errors import FalError
from server.jobs.ledger.base import LedgerError
from server.runtime import Runtime
from server.upstream.ids import InvalidIdError, validate_request_id

JSON = "application/json"
T = TypeVar("T")
RECENT_JOBS = 50


def register_resources(server: MCPServer[Runtime], current: Callable[[], Runtime]) -> None:
    """`current()` gives the running server's runtime: static resources get no Context in this SDK."""

    async def _from_ledger(read: Callable[[Runtime], Awaitable[T]]) -> T:
        """A read of the running server's ledger; a configuration error found at start-up, or a broken ledger, is
        the resource's error (its sentence says what to fix)."""
        rt = current()
        try:
            rt.check_config()
            return await read(rt)
        except (FalError, LedgerError) as exc:
            raise ResourceError(str(exc)) from None

    @server.resource(
        "fal://models",
        name="fal-models",
        title="Catalogued fal models",
        mime_type=JSON,
        description="Every catalogued fal model with its family, task, required fields and main options.",
    )
    def all_models() -> str:
        from tools.catalog import views  # the catalog loads on first use, not at start-up

        return views.list_models().model_dump_json()

    @server.resource(
        "fal://models/{+endpoint_id}",
        name="fal-model",
        title="A fal model's schema",
        mime_type=JSON,
        description="One model's input schema, output schema and a minimal example input.",
    )
    def one_model(endpoint_id: str) -> str:
        from tools.catalog import views

        try:
            return views.describe_model(endpoint_id).model_dump_json()
        except (FalError, InvalidIdError) as exc:  # not catalogued, or not an endpoint id at all
            raise ResourceNotFoundError(str(exc)) from None

    @server.resource(
        "fal://jobs",
        name="fal-jobs",
        title="Recent fal jobs",
        mime_type=JSON,
        description="The 50 most recent jobs recorded by this server, newest first.",
    )
    async def recent_jobs() -> str:
        from tools import history

        jobs = await _from_ledger(lambda rt: history.list_jobs(rt, None, None, None, RECENT_JOBS))
        return jobs.model_dump_json(exclude_none=True)

    @server.resource(
        "fal://spend",
        name="fal-spend",
        title="Spend and balance",
        mime_type=JSON,
        description="What jobs cost today, this month and by model; the daily budget left; the account's balance.",
    )
    async def spend() -> str:
        from tools import history

        return json.dumps(await _from_ledger(history.spend_document), ensure_ascii=False)

    @server.resource(
        "fal://jobs/{request_id}",
        name="fal-job",
        title="One fal job",
        mime_type=JSON,
        description="One recorded job: status, input, result when kept, downloads.",
    )
    async def one_job(request_id: str) -> str:
        from tools import history

        try:  # the id is checked after the configuration, as before
            row = await _from_ledger(lambda rt: rt.jobs.get(validate_request_id(request_id)))
        except InvalidIdError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        if row is None:
            raise ResourceNotFoundError(f"No job with request id {request_id} is recorded here (see fal://jobs).")
        return json.dumps(history.job_document(row), ensure_ascii=False)
