"""One line about an Azure SDK error, safe to log, store and show.

Every reader of Azure (ARM, Resource Graph, Log Analytics) and the data-plane probe describes
what Azure said through these helpers, so each description is one line, cut to a length a report
can hold, and redacted: Azure's error messages echo pieces of the request (Key Vault's 403 names
the caller's token claims, a proxy may quote an ``Authorization`` header, a storage error a SAS
URL or a connection string), and none of that may reach a log, the store or a notification.

Pure string work: azure-core's exception type is named for the type checker only, so the CLI can
describe any error without importing an SDK (azure-core alone costs a tenth of a second).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.exceptions import HttpResponseError

REDACTED = "[redacted]"
MESSAGE_LIMIT = 300  # characters of one description

# What must not leak, and what stands in its place; a bearer token is a JWT too, so it goes first.
# Kept as text: ``re`` compiles each on first use and caches it, so a CLI command that imports
# this module and never describes an error compiles none.
_SECRETS: tuple[tuple[str, re.RegexFlag, str], ...] = (
    # A token after its scheme (a quoted Authorization header). Key Vault's own wording "a Bearer
    # or PoP token" is not one: a token is longer than a word.
    (r"\b(Bearer|PoP)\s+[A-Za-z0-9._~+/-]{16,}=*", re.IGNORECASE, rf"\1 {REDACTED}"),
    # A JWT anywhere: base64url header and payload (both JSON, so "eyJ"), signature possibly empty.
    (r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", re.NOFLAG, REDACTED),
    # Key Vault's 403 lists the caller's token claims (appid, oid, issuer) after "Caller:".
    (r"\bCaller:[^\r\n]*", re.NOFLAG, f"Caller: {REDACTED}"),
    # Connection strings, SAS URLs and OAuth form fields.
    (
        r"\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig|access_token|refresh_token"
        r"|client_secret|client_assertion)=[^;&\s\"']+",
        re.IGNORECASE,
        rf"\1={REDACTED}",
    ),
)


def redact(text: str) -> str:
    """``text`` with every token, token claim, key and signature replaced by ``[redacted]``."""
    for pattern, flags, replacement in _SECRETS:
        text = re.sub(pattern, replacement, text, flags=flags)
    return text


def first_line(text: str, *, limit: int = MESSAGE_LIMIT) -> str:
    """The first non-blank line of ``text``, redacted, cut to ``limit`` characters ("" if blank).

    Later lines are dropped rather than joined: Azure puts its detail there (Key Vault's 403 the
    caller's claims, azure-core the whole error body again)."""
    return _cut(redact(next((part.strip() for part in text.splitlines() if part.strip()), "")), limit)


def describe_exception(exc: BaseException, *, limit: int = MESSAGE_LIMIT) -> str:
    """``Type: first line`` of any exception (a network fault, an SDK that choked on an answer)."""
    return f"{type(exc).__name__}: {first_line(str(exc), limit=limit) or 'no detail'}"


def error_code(exc: HttpResponseError) -> str | None:
    """A ``ScanError``'s code for ``exc``: the HTTP status, or the service's error code when no
    status is known; None when neither is."""
    if exc.status_code is not None:
        return str(exc.status_code)
    return exc.error.code if exc.error is not None else None


def storage_error_code(exc: BaseException) -> str:
    """The Storage service's error code of an azure-data-tables, -storage-blob or -storage-queue
    error ("" when it has none): each SDK gives an enum member or a plain string."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def service_error(exc: HttpResponseError, *, limit: int = MESSAGE_LIMIT) -> str | None:
    """What the answer's error body said, in one line; None when it held no error.

    Its code and most specific message: the innermost ``innererror`` (where Log Analytics says
    what is wrong with a query), then the first of its ``details`` in brackets (Resource Graph's
    own message is often only "Please provide below info when asking for support")."""
    error = exc.error
    if error is None or not (error.code or error.message):
        return None
    message = error.message or ""
    inner: object = error.innererror
    while isinstance(inner, Mapping):
        message = str(inner.get("message") or message)
        inner = inner.get("innererror")
    # Each part is redacted on its own: a claim redacted to the end of its line must not swallow
    # the parts after it.
    described = ": ".join(first_line(part, limit=limit) for part in (error.code, message) if part)
    if error.details:
        detail = error.details[0]
        parts = [first_line(part, limit=limit) for part in (detail.code, detail.message) if part]
        if parts:
            described += f" ({': '.join(parts)})"
    return _cut(described, limit)


def describe_azure_error(exc: HttpResponseError, *, limit: int = MESSAGE_LIMIT) -> str:
    """One line for an ``HttpResponseError``: the service's error (``service_error``); the HTTP
    status and reason when the body held none; the exception itself when no answer came (a
    credential that could not get a token raises one without a status: ``describe_token_failure``)."""
    if exc.status_code is None:
        if any(cls.__name__ == "ClientAuthenticationError" for cls in type(exc).__mro__):
            return describe_token_failure(exc, limit=limit)
        return describe_exception(exc, limit=limit)
    return service_error(exc, limit=limit) or f"HTTP {exc.status_code} {exc.reason or ''}".strip()


def describe_token_failure(exc: BaseException, *, limit: int = MESSAGE_LIMIT) -> str:
    """``the token request failed: why``. DefaultAzureCredential's message names each credential
    of its chain on a line of its own, the unavailable ones too; the last one that was available is
    the one whose request failed, and its line says how (``ManagedIdentityCredential: ... Read
    timed out. (read timeout=5)``). Any other credential's message: its first line."""
    tried = [
        line.strip()
        for line in str(exc).splitlines()
        if line.startswith("\t") and "unavailable" not in line.lower()
    ]
    reason = redact(tried[-1]) if tried else first_line(str(exc), limit=limit) or type(exc).__name__
    return _cut(f"the token request failed: {reason}", limit)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"
