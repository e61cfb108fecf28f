"""Keep secrets out of the logs.

uvicorn's access log prints each request's target as the client sent it. Neptune 3 UI sends the
password in the ``/login`` query string, any client may send a token in one, and a Qt download
URL (``/app/download/<signed token>.appkg``) is itself the credential for ten minutes. The
access-log filter rewrites the target before it is formatted:

- a query value is replaced by ``***`` when its key, decoded as the application decodes it
  (percent-escapes, ``+`` as space), contains ``password``, ``passwd``, ``secret`` or
  ``token`` in any case, so ``passw%6Frd=`` and ``PASSWORD=`` are caught like ``password=``;
- a signed download token is cut to its first characters.

:func:`redact_target` is also what the runtime's own error messages use for a request's path.
"""

from __future__ import annotations

import copy
import http
import logging
import re
from typing import Any
from urllib.parse import quote, unquote_plus

SENSITIVE_KEY = re.compile(r"passw(?:or)?d|secret|token", re.IGNORECASE)
REDACTED = "***"
# Paths whose last segment is a bearer credential, and how much of it a log keeps: enough to
# tell two downloads apart, far too little to use (the signature is at the end).
TOKEN_PATHS = ("/app/download/",)
TOKEN_PREFIX = 8
ACCESS_LOGGER = "uvicorn.access"


def redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):  # the separator Starlette's parse_qsl splits on
        key = unquote_plus(pair.partition("=")[0])
        pairs.append(quote(key, safe="") + "=" + REDACTED if SENSITIVE_KEY.search(key) else pair)
    return "&".join(pairs)


def redact_path(path: str) -> str:
    for prefix in TOKEN_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix) + TOKEN_PREFIX:
            return path[: len(prefix) + TOKEN_PREFIX] + "..."
    return path


def redact_target(target: str) -> str:
    """A request target (path, optionally ``?query``) safe to log."""
    path, sep, query = target.partition("?")
    return redact_path(path) + (sep + redact_query(query) if sep else "")


class RedactAccessLog(logging.Filter):
    """For uvicorn's access logger, whose records carry ``(client, method, target, version,
    status)`` as their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def install() -> None:
    """Put the filter on uvicorn's access logger (once, whatever runs the application)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactAccessLog) for f in logger.filters):
        logger.addFilter(RedactAccessLog())


STATUS_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


class AccessFormatter(logging.Formatter):
    """uvicorn's access line, ``INFO:     client - "GET /path HTTP/1.1" 200 OK``, made without
    the two copies of every record uvicorn's formatter takes, and without colours: at several
    thousand small answers a second that was a third of ``depot serve``'s time per request."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, use_colors: Any = None) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5) or record.exc_info:
            return super().format(record)
        client, method, target, version, status = args
        prefix = record.levelname + ":" + " " * (8 - len(record.levelname))
        phrase = STATUS_PHRASES.get(status, "") if isinstance(status, int) else ""
        return f'{prefix} {client} - "{method} {target} HTTP/{version}" {status} {phrase}'


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`AccessFormatter` for the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"] = {"()": "runtime.accesslog.AccessFormatter"}
    return config
