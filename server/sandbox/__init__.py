"""The fake upstream (fal queue, Kling, Luma) for `--sandbox`, the demo and the tests: an HTTP server on 127.0.0.1.

Every route family's jobs (fal's queue requests, Kling tasks, Luma generations) live by one mechanism, so that every
sandbox process on one jobs folder answers for every job (`--sandbox` under a client that starts a server per call):
- `new_job(request_id, endpoint_id, body, config, ...)` (`jobs.py`) makes a job submitted now, with the sandbox's
  timing; keep it with `sandbox.jobs[job.request_id] = job` (`sandbox.jobs` is a `JobBook`, `book.py`);
- `sandbox.jobs.get(request_id)` finds one (a copy: store it back after a change, e.g. a cancel's `cancelled_at`);
- `job_phase(job)` gives its phase by the clock (IN_QUEUE, IN_PROGRESS, COMPLETED, in fal's names: map them to the
  family's own, as `native.NativeJobs.stage` does) and `job_logs(job, config, elapsed)` its log lines.
Nothing else may hold a job's state: what is not in its record dies with the process.
"""

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
