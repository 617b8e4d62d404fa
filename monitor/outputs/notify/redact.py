"""Keeping webhook URLs and signing secrets out of logs, errors and reports.

A webhook URL is a bearer credential: whoever has it can post to the channel. It travels as a
``Secret`` (whose repr and str say nothing) and every text that leaves kvmon after touching one
(an exception message, a response body, a log line) goes through ``redact`` first. HTTP
libraries quote pieces of a URL rather than the whole (urllib3 names the path alone in its
errors and debug logs), so a URL's path, query and each of their opaque parts are hidden too.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

REDACTED = "[redacted]"

# The loggers of the HTTP stack under requests that quote request paths.
HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.response")

# Parts of a URL shorter than this, or made only of lower-case letters (``triggers``, ``invoke``,
# ``services``: the fixed words of the services' URL shapes), are structure, not secret.
_MIN_FRAGMENT = 6


class Secret:
    """A text that must not be shown: ``reveal()`` gives it to the one place that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("a secret needs a non-empty text value")
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def fragments(self) -> tuple[str, ...]:
        """Every text that would give the secret away, longest first."""
        return _fragments(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(
            self._value.encode("utf-8"), other._value.encode("utf-8")
        )

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not serialisable")


def redact(text: str, secrets: Iterable[Secret | None]) -> str:
    """``text`` with every fragment of every secret replaced by ``[redacted]``."""
    fragments = sorted(
        {fragment for secret in secrets if secret is not None for fragment in secret.fragments()},
        key=len,
        reverse=True,
    )
    for fragment in fragments:
        text = text.replace(fragment, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message with the secrets redacted (a filter may change records)."""

    def __init__(self, secrets: Iterable[Secret | None]) -> None:
        super().__init__()
        self._secrets = tuple(secret for secret in secrets if secret is not None)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self._secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


@contextlib.contextmanager
def redacting_logs(
    secrets: Iterable[Secret | None], *, logger_names: Iterable[str] = HTTP_LOGGERS
) -> Iterator[None]:
    """While inside, records created by ``logger_names`` are redacted before any handler sees them.

    A filter on a logger applies to the records that logger creates, so it sits on each logger of
    the HTTP stack that quotes URLs rather than on the root logger.
    """
    log_filter = RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)


def _fragments(value: str) -> tuple[str, ...]:
    found = {value}
    parts = urlsplit(value)
    if parts.scheme and parts.netloc:
        pieces = [parts.path, parts.query]
        if parts.query:
            pieces.append(f"{parts.path}?{parts.query}")
        if "@" in parts.netloc:
            pieces.append(parts.netloc.rsplit("@", 1)[0])
        pieces.extend(parts.path.split("/"))
        for key, item in parse_qsl(parts.query, keep_blank_values=True):
            pieces.extend((key, item))
        pieces.extend(piece for piece in parts.query.split("&"))
        found.update(piece for piece in pieces if _opaque(piece))
    found.update(unquote(fragment) for fragment in list(found))
    found.discard("")
    return tuple(sorted(found, key=len, reverse=True))


def _opaque(piece: str) -> bool:
    stripped = piece.strip("/")
    return len(stripped) >= _MIN_FRAGMENT and not (stripped.isalpha() and stripped.islower())
