"""Start-up tuning, in one place: the cyclic garbage collector is kept out of the start.

A start imports the MCP SDK, pydantic and this server and builds their models: some 130,000 objects that live as
long as the process. With the collector on, every few hundred allocations it walks the young objects, and every so
often all of them, again and again while they are being created: about a tenth of the time to the first `tools/list`
answer goes there, and none of it frees anything. So it is off until the server is built, then what the start
allocated is moved out of its sight for good (`gc.freeze`), and it runs as usual on what serving allocates.
"""

from __future__ import annotations

import gc


class StartupGC:
    """`pause()` first thing; `serving()` once the server is built; `restore()` on the way out, whatever happened
    (it leaves the collector as it was found when the start never got as far as serving: `main` may run in-process,
    in the tests)."""

    def __init__(self) -> None:
        self._was_enabled = gc.isenabled()
        self._paused = False

    def pause(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._paused = True

    def serving(self) -> None:
        """The start is over: what it allocated stays for the process's life, so the collector never needs to look
        at it again; from here on it collects as usual."""
        if self._paused:
            gc.freeze()
            self.restore()

    def restore(self) -> None:
        if self._paused:
            self._paused = False
            if self._was_enabled:
                gc.enable()
