"""A text that must not be shown (a webhook URL, a signing key): ``Secret``.

A webhook URL is a bearer credential: whoever has it can post to the channel. It travels as a
``Secret``, whose repr and str say nothing; ``fragments`` lists every text that would give it
away, for ``monitor.outputs.notify.redact`` to hide. HTTP libraries quote pieces of a URL rather
than the whole (urllib3 names the path alone in its errors and debug logs), so a URL's path, query
and each of their opaque parts count as fragments too.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, unquote, urlsplit

REDACTED = "[redacted]"

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
