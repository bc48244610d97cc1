"""What aiohttp's own loggers may write: never an API key, never a traceback for a client's bad HTTP.

aiohttp's access logger writes the request line with its query string, where the progress stream
and downloads carry ``?key=``; its server logger writes a traceback at ERROR for every request it
cannot parse (a NUL in a header, a broken chunk size), which any client can send. Both loggers are
the process's, whatever runs the app (``restora serve``, a test server, another runner), so the
filters go on them; adding one is idempotent.
"""
from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

_KEY_VALUE = re.compile(r"(?i)(\bkey=)[^&\s\"']*")
REDACTED = "REDACTED"


def redact_keys(text: str) -> str:
    return _KEY_VALUE.sub(rf"\1{REDACTED}", text)


class RedactKeys(logging.Filter):
    """Rewrites ``key=VALUE`` in the message and in the fields the access logger adds as extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_keys(record.getMessage()), ()
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                setattr(record, name, redact_keys(value))
            elif isinstance(value, dict):
                setattr(record, name, {k: redact_keys(v) if isinstance(v, str) else v for k, v in value.items()})
        return True


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


_FILTERS = {"aiohttp.access": RedactKeys(), "aiohttp.server": MalformedHttpAsInfo()}


def install_http_log_filters() -> None:
    for name, log_filter in _FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
