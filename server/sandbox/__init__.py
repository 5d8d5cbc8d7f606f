"""The fake fal upstream for `--sandbox`, the demo and the tests: a real HTTP server on 127.0.0.1."""

from server.sandbox.faults import Fault
from server.sandbox.jobs import SandboxConfig
from server.sandbox.upstream import FAIL_MARKER, MediaKind, ModelRules, Sandbox, SeenRequest

__all__ = ["FAIL_MARKER", "Fault", "MediaKind", "ModelRules", "Sandbox", "SandboxConfig", "SeenRequest"]
