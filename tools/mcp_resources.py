"""MCP resources: the catalog (and, with the ledger, the jobs) as readable JSON documents."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from server.errors import FalError
from server.ids import InvalidIdError
from tools import models_info

JSON = "application/json"


def register_resources(server: MCPServer[Any]) -> None:
    @server.resource(
        "fal://models",
        name="fal-models",
        title="Catalogued fal models",
        mime_type=JSON,
        description="Every catalogued fal model with its family, task, required fields and main options.",
    )
    def all_models() -> str:
        return models_info.list_models().model_dump_json()

    @server.resource(
        "fal://models/{+endpoint_id}",
        name="fal-model",
        title="A fal model's schema",
        mime_type=JSON,
        description="One model's input schema, output schema and a minimal example input.",
    )
    def one_model(endpoint_id: str) -> str:
        try:
            return models_info.describe_model(endpoint_id).model_dump_json()
        except (FalError, InvalidIdError) as exc:
            raise ResourceError(str(exc)) from None
