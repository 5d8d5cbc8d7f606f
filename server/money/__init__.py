"""Money, free of MCP: what a model costs (prices), what one input will cost (estimates), what was spent and
what is left (spend and budgets). The tools only ask and show; every rule about money lives here."""
