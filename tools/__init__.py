"""What the assistant sees: the tools and the catalog of fal models they accept."""
