"""Logging for the process: every record scrubbed of the configured secrets, whichever logger or handler.

An upstream can echo the key anywhere, a response header included, and the HTTP libraries log every header at
DEBUG. So the libraries' loggers are kept above DEBUG, and every record is redacted as it is created (a record
factory, not a handler filter: it covers loggers with handlers of their own too, such as uvicorn's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from server.errors import redact

# Loggers that write request or response headers verbatim at DEBUG.
HTTP_LIBRARY_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "h11", "h2", "hpack", "uvicorn", "sse_starlette")


def install(secrets: Sequence[str], level: str) -> None:
    """Redact `secrets` from every log record from now on, and keep the HTTP libraries above DEBUG."""
    floor = max(logging.getLevelName(level), logging.INFO)
    for name in HTTP_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    kept = [secret for secret in secrets if secret]
    if kept:
        logging.setLogRecordFactory(redacting_factory(logging.getLogRecordFactory(), kept))


RecordFactory = Callable[..., logging.LogRecord]


def redacting_factory(make: RecordFactory, secrets: Sequence[str]) -> RecordFactory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        scrub_record(record, secrets)
        return record

    return factory


def scrub_record(record: logging.LogRecord, secrets: Sequence[str]) -> None:
    """Format the message (and any traceback) now, redacted, so no handler sees the raw text."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: let logging report it as it would
        return
    record.msg, record.args = _redact_all(message, secrets), None
    if record.exc_info:
        record.exc_text = _redact_all(logging.Formatter().formatException(record.exc_info), secrets)
        record.exc_info = None  # a handler formatting the exception itself would see the raw text again
    if record.stack_info:
        record.stack_info = _redact_all(record.stack_info, secrets)


def _redact_all(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = redact(text, secret)
    return text
