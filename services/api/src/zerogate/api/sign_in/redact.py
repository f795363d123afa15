"""Keep the provider's authorization code and our state out of logs and traces.

The provider sends the browser to ``/v1/sign_in/callback?code=...&state=...``
(RFC 6749 §4.1.2). Both are single use and the code is bound to our PKCE
verifier, yet they are credentials while they live, and the URL would otherwise
land in uvicorn's access log and in the HTTP server span's URL attributes.
:class:`AccessLogFilter` rewrites the access log line; :func:`redact_current_span`
rewrites the current span's URL attributes. Only the query's values go; the
names stay, so a log still says which parameters came.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from opentelemetry import trace

REDACTED: Final = "REDACTED"
#: Paths whose query strings carry credentials.
SENSITIVE_PATHS: Final = ("/v1/sign_in/callback",)
#: Span attributes (old and new HTTP semantic conventions) that hold the query.
_URL_ATTRIBUTES: Final = ("http.url", "http.target", "url.full", "url.query")


def redact_query(text: str) -> str:
    """``text`` (a URL, a path with query, or a bare query) with every value replaced."""
    if "?" not in text and "=" in text and "/" not in text:
        return urlencode([(k, REDACTED) for k, _ in parse_qsl(text, keep_blank_values=True)])
    parts = urlsplit(text)
    if not parts.query:
        return text
    query = urlencode([(k, REDACTED) for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def is_sensitive(path: str) -> bool:
    return path.split("?", 1)[0] in SENSITIVE_PATHS


def redact_current_span() -> None:
    """Overwrite the URL attributes the HTTP server span got from the request."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_query(value))


class AccessLogFilter(logging.Filter):
    """For ``uvicorn.access``: its records' args are (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and is_sensitive(args[2])
        ):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True
