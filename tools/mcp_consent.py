"""Asking the person before an expensive submit, the MCP way: the SDK's resolver (`Resolve` + `Elicit`), which asks
through the 2026-07-28 input-required round trip or through `elicitation/create` on 2025-11-25, before the submit's
body runs. What to ask and what an answer means are tools.pricing's (free of MCP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from server.errors import FalError
from server.runtime import Runtime

if TYPE_CHECKING:
    from tools.pricing import Consent

INPUT_REQUIRED_VERSION = "2026-07-28"  # from this revision on, a resolver asks by the input-required round trip


class SpendConsent(BaseModel):
    confirm: bool = Field(True, title="Spend it", description="Run this job at about this cost.")


async def spend_consent(
    ctx: Context[Runtime, Any],
    model: str,
    input: dict[str, Any],
    dry_run: bool = False,
    max_cost_usd: float | None = None,
) -> Elicit[SpendConsent] | str:
    """Runs before submit_fal_job's body (again on each input-required round). Never raises: a refusal of any other
    kind (a bad input, a cap) is the body's to report."""
    if dry_run:
        return "not_needed"
    rt: Runtime = ctx.request_context.lifespan_context
    if rt.settings.confirm_above is None or rt.config_error is not None:
        return "not_needed"
    # Imported here: start-up (the first tools/list) needs none of the catalog or the money code.
    from server.upstream.ids import normalize_endpoint_id
    from tools.catalog.validation import review_input
    from tools.pricing import consent_question, quote_input
    from tools.tasks import input_exchange

    try:
        endpoint_id = normalize_endpoint_id(model)
        checked = review_input(endpoint_id, input) if isinstance(input, dict) else None
        if checked is None or checked.problems:
            return "not_needed"
        quote = await quote_input(rt, checked)
    except (FalError, ValueError):
        return "not_needed"
    if not rt.money.needs_confirmation(quote, max_cost_usd):
        return "not_needed"
    if input_exchange() is not None:
        return "in_task"
    if not _can_ask(ctx):
        return "unavailable"
    return Elicit(consent_question(endpoint_id, quote), SpendConsent)


def consent_of(outcome: ElicitationResult[Any]) -> Consent:
    """The resolver's outcome as tools.pricing reads it."""
    if not isinstance(outcome, AcceptedElicitation):
        return "declined"  # declined or cancelled
    data = outcome.data
    if isinstance(data, SpendConsent):
        return "confirmed" if data.confirm else "declined"
    return data if data in ("not_needed", "unavailable", "in_task") else "not_needed"


def _can_ask(ctx: Context[Runtime, Any]) -> bool:
    """Whether a form question can reach the person: the client says it shows forms, and (before 2026-07-28) the
    server can send it a request mid-call (not on stateless HTTP)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION):
        return True
    return bool(ctx.session.can_send_request)
