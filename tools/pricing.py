"""What a submit will cost, and whether the person must agree first: free of MCP.

The quote is the money service's (`server.money`), with the quantity read by the catalog's typed models
(`tools.catalog.quantity`). The person's consent comes in one of three ways, decided by the MCP layer and the task
extension: asked before the submit runs (the SDK's resolver, on either protocol version), asked inside a task
(`tools.tasks.input_exchange`), or not askable (the assistant must ask and resubmit with `max_cost_usd`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from server.errors import BudgetError
from server.money.service import Quote
from tools.answers import CostEstimate
from tools.catalog.quantity import priced_quantity
from tools.catalog.validation import CheckedInput
from tools.tasks import input_exchange

if TYPE_CHECKING:
    from server.runtime import Runtime

# What became of the question "spend about $X?": no need to ask; the person said yes or no; the client cannot be
# asked; or the question is the task's to ask (the submit runs inside an MCP task).
Consent = Literal["not_needed", "confirmed", "declined", "unavailable", "in_task"]
CONSENT_KEY = "confirm_cost"  # the task input request's key


async def quote_input(rt: Runtime, checked: CheckedInput) -> Quote:
    def count(unit: str) -> tuple[float, str] | None:
        quantity = priced_quantity(checked.entry, checked.body, unit)
        return None if quantity is None else (quantity.amount, quantity.basis)

    return await rt.money.quote(checked.endpoint_id, count)


def cost_estimate(quote: Quote) -> CostEstimate | None:
    found = quote.estimate
    if found is None:
        return None
    return CostEstimate(
        usd=found.usd,
        unit=found.unit,
        quantity=found.quantity,
        unit_price=found.unit_price,
        source=found.source,
        as_of=found.as_of,
    )


def consent_question(model: str, quote: Quote) -> str:
    assert quote.estimate is not None
    return f"Spend about ${quote.estimate.usd or 0:.2f} on {model}? ({quote.estimate.describe()})"


async def require_consent(rt: Runtime, model: str, quote: Quote, max_cost_usd: float | None, consent: Consent) -> None:
    """Raise BudgetError unless the person agreed (or needs not be asked). Nothing has been sent yet."""
    if not rt.money.needs_confirmation(quote, max_cost_usd):
        return
    usd = quote.usd or 0.0
    threshold = rt.settings.confirm_above or 0.0
    if consent == "in_task" and (exchange := input_exchange()) is not None:
        answer = await exchange.ask(CONSENT_KEY, consent_request(model, quote))
        consent = "confirmed" if _accepted(answer) else "declined"
    if consent == "confirmed":
        return
    if consent == "declined":
        raise BudgetError(
            f"The user did not agree to spend about ${usd:.2f} on {model}, so nothing was submitted. Ask them what "
            "they want instead (a shorter or cheaper setting, another model)."
        )
    raise BudgetError(
        f"This job is estimated at ${usd:.2f}, above FAL_MCP_CONFIRM_ABOVE (${threshold:.2f}), and this client cannot "
        f"ask the user. Ask the user whether to spend about ${usd:.2f} on {model}; if they agree, submit again with "
        f"max_cost_usd={_ceiling(usd)}. Nothing was submitted."
    )


def consent_request(model: str, quote: Quote) -> dict[str, object]:
    """The form question, as an `elicitation/create` request (a task's input request carries it as it is)."""
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": consent_question(model, quote),
            "requestedSchema": {
                "type": "object",
                "properties": {"confirm": {"type": "boolean", "title": "Spend it", "default": True}},
                "required": ["confirm"],
            },
        },
    }


def _accepted(answer: object) -> bool:
    if not isinstance(answer, dict) or answer.get("action") != "accept":
        return False
    content = answer.get("content")
    return not isinstance(content, dict) or content.get("confirm", True) is not False


def _ceiling(usd: float) -> str:
    """The estimate rounded up to the cent, so a ceiling the assistant copies covers it."""
    cents = -(-round(usd * 1_000_000) // 10_000)
    return f"{cents / 100:.2f}"


__all__ = ["Consent", "Quote", "consent_question", "cost_estimate", "quote_input", "require_consent"]
