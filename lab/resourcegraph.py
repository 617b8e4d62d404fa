"""Azure Resource Graph's query endpoint, emulated over HTTPS on loopback from the lab's ``Estate``.

``POST /providers/Microsoft.ResourceGraph/resources?api-version=...`` with a ``QueryRequest``
body (``subscriptions``, ``query``, ``options``: ``$top``, ``$skipToken``, ``resultFormat``)
answers in the real REST shape: ``totalRecords``, ``count``, ``data`` (``objectArray`` rows),
``facets`` (always empty), ``resultTruncated`` ("true"/"false") and ``$skipToken`` while rows
remain, with the throttling headers ``x-ms-user-quota-remaining`` and
``x-ms-user-quota-resets-after``.

What this emulator is, honestly: it does not run KQL. It recognises the query kvmon sends
(``monitor.sources.resource_graph.build_vault_query``, with or without the vault-name filter: the text
must be exactly what kvmon builds) and evaluates that query's meaning in Python: one row per
vault (``id, name, type, location, resourceGroup, subscriptionId, tags, properties``; ``type``
and ``resourceGroup`` lower-cased, as Resource Graph returns them) and one row per visible
subscription (``ResourceContainers``), ordered by ``id``. Any other query gets a 400 with
Resource Graph's error shape. The KQL itself is checked by Microsoft's Kusto language service in
``tests/inventory`` against the ``Resources`` and ``ResourceContainers`` schemas.

Azure's behaviour it reproduces:

- Subscriptions the caller cannot read (``estate.forbidden_subscriptions``) or that do not exist
  are left out of the answer silently, as Resource Graph does; when none of the requested
  subscriptions is readable the answer is 400 ``BadRequest`` with the detail
  ``NoValidSubscriptionsInQueryRequest``.
- Quota: ``quota`` queries per ``quota_window_s`` per caller (Azure documents 15 per 5 seconds as
  an example); past it, 429 ``RateLimiting`` with ``Retry-After`` and the quota headers.
- 401 without a bearer token, 400 without ``api-version`` or with a skip token it did not issue
  for this query. ``truncate_after(n)`` makes answers stop after ``n`` rows with
  ``resultTruncated`` true and no skip token (Azure does this when paging is impossible).
  Throttling, resets and server errors also come from the ``LabServer``'s fault injection.

Unlike Azure, the index is never stale: a change to the estate shows in the next answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import threading
import time
from typing import Any

from lab.estate import Estate, token_claims
from lab.http import LabServer, Request, Response
from monitor.sources.resource_graph import (
    MAX_PAGE_SIZE,
    QUOTA_REMAINING_HEADER,
    QUOTA_RESETS_AFTER_HEADER,
    SUBSCRIPTION_TYPE,
    VAULT_TYPE,
    build_vault_query,
)

QUERY_ROUTE = "resourcegraph.resources"
_QUERY_PATH = r"(?i)/providers/Microsoft\.ResourceGraph/resources"
_NAME_FILTER = re.compile(r"^\| where name =~ '([^']*)'$", re.MULTILINE)
_SUPPORT = "Please provide below info when asking for support: timestamp = {now}, correlationId = {cid}."


def _error(status: int, code: str, message: str, *, detail: tuple[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["details"] = [{"code": detail[0], "message": detail[1]}]
    return Response(status, {"error": error})


def _support_message() -> str:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cid = hashlib.sha1(str(time.perf_counter_ns()).encode()).hexdigest()[:32]
    return _SUPPORT.format(now=now, cid=f"{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:]}")


class ResourceGraphEmulator:
    """``with ResourceGraphEmulator(estate) as rg:``; ``rg.url`` is the ARM endpoint to give the
    SDK client (``base_url``), ``rg.server`` the ``LabServer`` (request counts, faults).

    Resource Graph lives on ARM's endpoint, as in Azure, when given the ARM emulator's server
    (``server=arm.server``): then one ``KVMON_ARM_ENDPOINT`` serves both inventory sources, and
    that server's owner starts and stops it.
    """

    def __init__(
        self,
        estate: Estate,
        *,
        page_size: int = MAX_PAGE_SIZE,
        latency_s: float = 0.0,
        quota: int = 15,
        quota_window_s: float = 5.0,
        server: LabServer | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        if quota < 1 or quota_window_s <= 0:
            raise ValueError("quota must be at least 1 and quota_window_s positive")
        self.estate = estate
        self.page_size = page_size
        self.quota = quota
        self.quota_window_s = quota_window_s
        self._owns_server = server is None
        self.server = server if server is not None else LabServer(name="resourcegraph", latency_s=latency_s)
        self.server.route("POST", _QUERY_PATH, self._query, name=QUERY_ROUTE)
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # caller -> (window start, queries used)
        self._truncate_after: int | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ResourceGraphEmulator:
        if self._owns_server:
            self.server.start()
        return self

    def stop(self) -> None:
        if self._owns_server:
            self.server.stop()

    def __enter__(self) -> ResourceGraphEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, estate: Estate | None = None) -> None:
        """A fresh quota, no truncation, and optionally another estate (tests share one server)."""
        with self._lock:
            self._windows.clear()
            self._truncate_after = None
        if estate is not None:
            self.estate = estate

    def truncate_after(self, rows: int | None) -> None:
        """Answers stop after ``rows`` rows, ``resultTruncated`` true and no skip token."""
        self._truncate_after = rows

    # -- the route -----------------------------------------------------------------------------

    def _query(self, request: Request) -> Response:
        authorization = request.header("Authorization")
        claims = token_claims(authorization)
        if not authorization:
            return _error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        if claims is None:
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if not request.query.get("api-version"):
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        remaining, resets_after = self._spend(str(claims.get("oid", "")))
        quota_headers = {
            QUOTA_REMAINING_HEADER: str(max(remaining, 0)),
            QUOTA_RESETS_AFTER_HEADER: _hms(resets_after),
        }
        if remaining < 0:
            response = _error(
                429,
                "RateLimiting",
                _support_message(),
                detail=(
                    "RateLimiting",
                    "Client application has been throttled and should not attempt to repeat the "
                    "request until an amount of time has elapsed.",
                ),
            )
            response.headers.update(quota_headers)
            response.headers["Retry-After"] = str(max(1, round(resets_after)))
            return response
        response = self._answer(request)
        response.headers.update(quota_headers)
        return response

    def _answer(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "InvalidRequestContent", "The request content is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(400, "InvalidRequestContent", "The request needs a 'query' string.")
        recognised, name = _recognise(body["query"])
        if not recognised:
            return _error(
                400,
                "BadRequest",
                _support_message(),
                detail=(
                    "InvalidQuery",
                    "The lab's Resource Graph answers kvmon's vault query only "
                    "(monitor.sources.resource_graph.build_vault_query).",
                ),
            )
        options = body.get("options") or {}
        if not isinstance(options, dict):
            return _error(400, "InvalidRequestContent", "'options' must be an object.")
        if str(options.get("resultFormat", "objectArray")).lower() != "objectarray":
            return _error(
                400, "BadRequest", "The lab's Resource Graph answers resultFormat objectArray only."
            )
        requested = body.get("subscriptions") or []
        if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
            return _error(400, "InvalidRequestContent", "'subscriptions' must be a list of strings.")
        readable = self._readable(requested)
        if not readable:
            return _error(
                400,
                "BadRequest",
                _support_message(),
                detail=(
                    "NoValidSubscriptionsInQueryRequest",
                    "There must be at least one subscription that is eligible to contain resources. "
                    f"Given: '{','.join(requested)}'.",
                ),
            )
        try:
            top = int(options.get("$top") or self.page_size)
        except (TypeError, ValueError):
            return _error(400, "BadRequest", "$top must be a whole number.")
        if not 1 <= top <= MAX_PAGE_SIZE:
            return _error(400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
        fingerprint = _fingerprint(body["query"], requested)
        try:
            offset = _decode_skip_token(options.get("$skipToken"), fingerprint)
        except ValueError as exc:
            return _error(400, "BadRequest", _support_message(), detail=("InvalidSkipToken", str(exc)))
        keys = self._row_keys(readable, name)
        size = min(top, self.page_size)
        answer: dict[str, Any] = {"totalRecords": len(keys), "facets": [], "resultTruncated": "false"}
        truncate_after = self._truncate_after
        if truncate_after is not None and offset + size >= truncate_after:
            size = max(0, truncate_after - offset)
            if offset + size < len(keys):
                answer["resultTruncated"] = "true"
        page = keys[offset : offset + size]
        answer["data"] = [self._row(kind, key) for kind, key in page]
        answer["count"] = len(page)
        if answer["resultTruncated"] == "false" and offset + size < len(keys):
            answer["$skipToken"] = _encode_skip_token(offset + size, fingerprint)
        return Response(200, answer)

    # -- what the query means ------------------------------------------------------------------

    def _readable(self, requested: list[str]) -> list[str]:
        """The requested subscriptions the caller may read, in the estate's spelling."""
        forbidden = {s.lower() for s in self.estate.forbidden_subscriptions}
        known = {s.lower(): s for s in self.estate.subscriptions}
        readable = []
        for subscription in requested:
            canonical = known.get(subscription.lower())
            if canonical is not None and subscription.lower() not in forbidden and canonical not in readable:
                readable.append(canonical)
        return readable

    def _row_keys(self, subscriptions: list[str], name: str | None) -> list[tuple[str, str]]:
        """(kind, key) of every row, in ``order by id asc`` order (Resource Graph sorts ids as
        strings; the lab compares them lower-cased)."""
        rows: list[tuple[str, str, str]] = []
        for subscription in subscriptions:
            rows.append((f"/subscriptions/{subscription}".lower(), "subscription", subscription))
            for key in list(self.estate.subscriptions.get(subscription, ())):
                vault = self.estate.vaults.get(key)
                if vault is None or (name is not None and vault["name"].lower() != name.lower()):
                    continue
                rows.append((key, "vault", key))
        rows.sort()
        return [(kind, key) for _, kind, key in rows]

    def _row(self, kind: str, key: str) -> dict[str, Any]:
        if kind == "subscription":
            return {
                "id": f"/subscriptions/{key}",
                "name": key,
                "type": SUBSCRIPTION_TYPE,
                "subscriptionId": key,
            }
        vault = self.estate.vault(key) or {}
        # Group and subscription come from the key (the lower-cased id), as Resource Graph
        # derives its columns from the id; a test may break the vault's own fields.
        parts = key.split("/")
        return {
            "id": vault.get("id"),
            "name": vault.get("name"),
            "type": str(vault.get("type", VAULT_TYPE)).lower(),
            "location": vault.get("location"),
            "resourceGroup": parts[4],
            "subscriptionId": parts[2],
            "tags": vault.get("tags"),
            "properties": vault.get("properties"),
        }

    def _spend(self, caller: str) -> tuple[int, float]:
        """One query from ``caller``: (quota left after it, negative when refused; seconds until
        the window resets)."""
        now = time.monotonic()
        with self._lock:
            started, used = self._windows.get(caller, (now, 0))
            if now - started >= self.quota_window_s:
                started, used = now, 0
            used += 1
            self._windows[caller] = (started, used)
        return self.quota - used, max(0.0, self.quota_window_s - (now - started))


def _recognise(query: str) -> tuple[bool, str | None]:
    """(is it kvmon's vault query, the vault name it filters on or None for every vault)."""
    if query == build_vault_query():
        return True, None
    match = _NAME_FILTER.search(query)
    if match is not None:
        try:
            return query == build_vault_query(name=match.group(1)), match.group(1)
        except ValueError:
            pass
    return False, None


def _hms(seconds: float) -> str:
    whole = math.ceil(seconds)  # never promise a reset sooner than it comes
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _fingerprint(query: str, subscriptions: list[str]) -> str:
    text = json.dumps([query, sorted(s.lower() for s in subscriptions)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_skip_token(offset: int, fingerprint: str) -> str:
    return base64.b64encode(json.dumps({"$skip": offset, "q": fingerprint}).encode()).decode()


def _decode_skip_token(token: Any, fingerprint: str) -> int:
    if token is None or token == "":
        return 0
    try:
        data = json.loads(base64.b64decode(str(token).encode(), validate=True))
        offset = data["$skip"] if isinstance(data, dict) and data.get("q") == fingerprint else -1
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
        offset = -1
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("The $skipToken was not issued for this query and these subscriptions.")
    return offset
