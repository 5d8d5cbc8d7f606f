"""The stdio transport's byte I/O, done on the event loop when stdin and stdout are pipes (as a host runs us).

The SDK's `stdio_server()` reads each line and writes each answer through worker threads: a read, a write and a
flush per message, three thread hand-offs that are most of a call's fixed cost. Given streams of its own (its
`stdin=`/`stdout=` parameters) it only parses and serialises, and these do the I/O: lines are read when the pipe is
readable, and an answer is written straight into the pipe when that cannot block (at most PIPE_BUF bytes while the
pipe has room: such a write is atomic), else from a worker thread.

Explicit streams skip the SDK's claim of the standard descriptors, so it is made here the same way: the wire is
served from private duplicates while fd 0 reads the null device and fd 1 writes to stderr, so nothing else in the
process (a library's stray print, a child process) can write into the JSON-RPC stream; both are put back on exit.
On Windows, and when either side is not a pipe or socket (a file, a terminal), `claim_pipes` yields None and the
SDK's own transport serves.
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread

READ_CHUNK = 64 * 1024
# What a write to stdout raises once its reader has gone (SIGPIPE is ignored in Python: EPIPE, or a reset socket).
READER_GONE = (BrokenPipeError, ConnectionResetError)


class PipeLines:
    """stdin as an async iterator of text lines (UTF-8, undecodable bytes replaced, as the SDK reads them)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0  # no newline before this offset: a long line is not searched again from its start
        self._eof = False

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._scanned = 0
                return line.decode("utf-8", errors="replace")
            self._scanned = len(self._buffer)
            if self._eof:
                if not self._buffer:
                    raise StopAsyncIteration
                rest = bytes(self._buffer)  # a last line without a newline
                self._buffer.clear()
                self._scanned = 0
                return rest.decode("utf-8", errors="replace")
            await anyio.wait_readable(self._fd)
            try:
                chunk = os.read(self._fd, READ_CHUNK)  # readable: returns what is there without blocking
            except BlockingIOError:
                continue
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


class PipeWriter:
    """stdout with the `write`/`flush` the SDK's writer calls; each `write` is one whole message."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self.writing_in_thread = False

    async def write(self, text: str) -> None:
        data = text.encode()
        if len(data) <= select.PIPE_BUF and self._poll.poll(0):
            _write_all(self._fd, data)
            return
        self.writing_in_thread = True
        try:
            await anyio.to_thread.run_sync(_write_all, self._fd, data)
        finally:
            self.writing_in_thread = False

    async def flush(self) -> None:
        """Nothing is buffered here."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a pipe its creator made non-blocking: wait until it has room
            select.select([], [fd], [])


@dataclass
class Pipes:
    reader: PipeLines
    writer: PipeWriter


@contextmanager
def claim_pipes() -> Iterator[Pipes | None]:
    """Serve the wire from private duplicates of fd 0 and fd 1 (see the module's docstring), or yield None."""
    if sys.platform == "win32" or not (_is_pipe(0) and _is_pipe(1)):
        yield None
        return
    sys.stdout.flush()
    wire_in = wire_out = -1
    try:
        wire_in = _dup_above_std(0)
        wire_out = _dup_above_std(1)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
        os.dup2(2, 1)
    except OSError:
        _put_back(wire_in, wire_out)
        yield None
        return
    writer = PipeWriter(wire_out)
    try:
        yield Pipes(PipeLines(wire_in), writer)
    finally:
        sys.stdout.flush()  # anything printed meanwhile went to stderr: send it there, not onto the wire
        # A write still blocked in a worker thread (the process is being ended) keeps its descriptor open.
        _put_back(wire_in, -1 if writer.writing_in_thread else wire_out)


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _dup_above_std(fd: int) -> int:
    import fcntl  # POSIX only; Windows never gets here

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _put_back(wire_in: int, wire_out: int) -> None:
    for fd, wire in ((0, wire_in), (1, wire_out)):
        if wire >= 0:
            try:
                os.dup2(wire, fd)
            finally:
                os.close(wire)


def stdout_gone() -> None:
    """Stdout's reader has gone (a client that left, `| head`): point fd 1 at the null device, so that no later
    write or flush (the interpreter's own, at exit) fails on the broken pipe and prints about it."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, 1)
    except OSError:
        pass
    finally:
        os.close(null)
