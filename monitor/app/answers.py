"""What the Functions app's HTTP handlers answer, and the one place an error becomes an HTTP status.

Every HTTP handler is wrapped in ``answers_errors``: whatever it raises is answered as JSON
``{"error": {"code", "message"}}`` with the status of its kind (``status_for``), as the CLI turns
each kind into an exit code in one place. A ``KvmonError``'s message is written for whoever sees
it (it names the setting, file or parameter, never a secret's value) and goes in the body; any
other exception is a bug: the log has its traceback, the body one generic line.

Light on purpose: the probe role's functions import it, and nothing of the monitor.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any, ParamSpec

from monitor.errors import ConfigurationError, InputError, KvmonError, SourceError, StoreError
from monitor.jsonable import to_jsonable

log = logging.getLogger("kvmon.functions")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    mimetype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, data: Any) -> Answer:
    return Answer(status=status, body=json.dumps(to_jsonable(data), indent=2))


def error_answer(status: int, code: str, message: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message}})


class ErrorCode(StrEnum):
    """The ``error.code`` of an answer to a raised error, one per kind."""

    BAD_REQUEST = "BadRequest"
    MISCONFIGURED = "Misconfigured"
    SOURCE_UNREADABLE = "SourceUnreadable"
    STORE_UNAVAILABLE = "StoreUnavailable"
    INTERNAL_ERROR = "InternalError"


# Each kind of KvmonError: who can act on it decides the status. The kinds are siblings, so the
# order only matters for a class that would inherit two of them.
_STATUS_OF_KIND: tuple[tuple[type[KvmonError], HTTPStatus, ErrorCode], ...] = (
    (InputError, HTTPStatus.BAD_REQUEST, ErrorCode.BAD_REQUEST),  # the caller's to fix
    (ConfigurationError, HTTPStatus.INTERNAL_SERVER_ERROR, ErrorCode.MISCONFIGURED),  # the operator's
    (SourceError, HTTPStatus.BAD_GATEWAY, ErrorCode.SOURCE_UNREADABLE),  # an upstream answered badly
    (StoreError, HTTPStatus.SERVICE_UNAVAILABLE, ErrorCode.STORE_UNAVAILABLE),  # try again later
)

INTERNAL_ERROR_MESSAGE = "the request failed; the function's log has the details"


def status_for(exc: BaseException) -> tuple[HTTPStatus, ErrorCode]:
    """The HTTP status and error code of a failure: 400 input, 500 configuration, 502 source,
    503 store, and 500 for anything kvmon did not raise on purpose."""
    for kind, status, code in _STATUS_OF_KIND:
        if isinstance(exc, kind):
            return status, code
    return HTTPStatus.INTERNAL_SERVER_ERROR, ErrorCode.INTERNAL_ERROR


def answer_for(exc: Exception, *, handler: str, redact: Callable[[str], str] = str) -> Answer:
    """The answer to ``exc`` raised by ``handler``, logged as its kind deserves. ``redact`` cleans
    a ``KvmonError``'s message of the secrets the caller knows of before it is logged or answered."""
    status, code = status_for(exc)
    if not isinstance(exc, KvmonError):
        log.exception("%s failed", handler)
        return error_answer(status, code, INTERNAL_ERROR_MESSAGE)
    message = redact(str(exc))
    if isinstance(exc, InputError):
        log.info("%s refused the request: %s", handler, message)
    elif isinstance(exc, ConfigurationError):
        log.error("kvmon is misconfigured: %s", message)
    else:
        log.error("%s failed: %s", handler, message)
    return error_answer(status, code, message)


P = ParamSpec("P")


def answers_errors(
    redact: Callable[[str], str] = str,
) -> Callable[[Callable[P, Answer]], Callable[P, Answer]]:
    """Decorate an HTTP handler so that whatever it raises is answered by ``answer_for``."""

    def decorate(handler: Callable[P, Answer]) -> Callable[P, Answer]:
        @functools.wraps(handler)
        def answered(*args: P.args, **kwargs: P.kwargs) -> Answer:
            try:
                return handler(*args, **kwargs)
            except Exception as exc:
                return answer_for(exc, handler=handler.__name__, redact=redact)

        return answered

    return decorate
