"""Keeping webhook URLs and signing secrets out of logs, errors and reports.

A webhook URL travels as a ``Secret`` (``monitor.config.secret``), and every text that leaves
kvmon after touching one (an exception message, a response body, a log line) goes through
``redact`` first, which hides each of the secret's fragments.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

from monitor.config.secret import REDACTED, Secret

# The loggers of the HTTP stack under requests that quote request paths.
HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.response")


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
