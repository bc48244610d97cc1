"""What aiohttp's own loggers may write: never a traceback for a client's bad HTTP.

aiohttp's server logger writes a traceback at ERROR for every request it cannot parse (a NUL in a
header, a broken chunk size), which any client can send. The logger is the process's, whatever
runs the app (``restora serve``, a test server, another runner), so the filter goes on it; adding
one is idempotent.
"""
from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError


class MalformedHttpAsInfo(logging.Filter):
    """A request aiohttp could not parse is the client's fault (it got a 400): one INFO line,
    no traceback, and only the first line of the reason (the rest echoes the client's bytes).
    That includes a body that is not the encoding it claims: after the app answered 400, aiohttp
    drains the rest of it, meets the same error again and logs it as "Unhandled exception"."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (HttpProcessingError, RequestPayloadError)):
            record.msg, record.args = f"{record.getMessage()}: malformed HTTP request ({_phrase(error)})", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _phrase(error: Exception) -> str:
    # aiohttp's messages read "400, message:\n  Invalid header value char:\n\n  b'X-A: a\\x00b'":
    # keep the first phrase, never the client's echoed bytes.
    text = str(error).split("message:", 1)[-1].strip()
    return text.splitlines()[0].split(": ", 1)[0].rstrip(":") if text else type(error).__name__


_FILTERS = {"aiohttp.server": MalformedHttpAsInfo()}


def install_http_log_filters() -> None:
    for name, log_filter in _FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
