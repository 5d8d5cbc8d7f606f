"""The fake upstream (fal queue, Kling, Luma) for `--sandbox`, the demo and the tests: an HTTP server on 127.0.0.1."""

from server.sandbox.faults import Fault
from server.sandbox.jobs import SandboxConfig
from server.sandbox.native import FAIL_MARKER, OTHER_DIALECT, NativeConfig
from server.sandbox.upstream import MediaKind, ModelRules, Sandbox, SeenRequest

__all__ = [
    "FAIL_MARKER",
    "OTHER_DIALECT",
    "Fault",
    "MediaKind",
    "ModelRules",
    "NativeConfig",
    "Sandbox",
    "SandboxConfig",
    "SeenRequest",
]
