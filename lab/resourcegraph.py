"""Azure Resource Graph's query endpoint, emulated over HTTPS on loopback from the lab's ``Estate``.

``POST /providers/Microsoft.ResourceGraph/resources?api-version=...`` with a ``QueryRequest``
body (``subscriptions``, ``query``, ``options``: ``$top``, ``$skipToken``, ``resultFormat``)
answers in the real REST shape: ``totalRecords``, ``count``, ``data`` (``objectArray`` rows),
``facets`` (always empty), ``resultTruncated`` ("true"/"false") and ``$skipToken`` while rows
remain, with the throttling headers ``x-ms-user-quota-remaining`` and
``x-ms-user-quota-resets-after``.

What this emulator is, honestly: it does not run KQL. It recognises the queries kvmon sends
and evaluates their meaning in Python; the text must be exactly what kvmon builds:

- the vault query (``monitor.sources.resource_graph.build_vault_query``, with or without the
  vault-name filter): one row per vault (``id, name, type, location, resourceGroup,
  subscriptionId, tags, properties``; ``type`` and ``resourceGroup`` lower-cased, as Resource
  Graph returns them) and one row per visible subscription (``ResourceContainers``), ordered by
  ``id``;
- the storage account query (``monitor.sources.storage.resource_graph.build_account_query``): one row
  per storage account of a readable subscription (``id, name, type, kind, sku, location,
  resourceGroup, subscriptionId, tags, properties``, lower-cased as above), one per private endpoint
  there whose properties name a storage account (``id, name, type, subscriptionId, properties``:
  the ``groupIds`` the accounts' connections lack), and the subscription rows, ordered by ``id``;
  these rows are built whole for each answer (the lab's storage estates are small);
- the change query (``monitor.sources.change_history.build_change_query``: its vault ids and window
  start are read back from the text), answered from the estate's change history
  (``Estate.changes``, recorded by every ``add_vault``, ``update_vault`` and ``remove_vault``,
  so by every write the lab's ARM serves, with the caller it stamps): per vault, the newest
  ``Create``, or ``Update`` whose changed keys match the query's network pattern (the same
  regular expression over the same JSON text of the key list), in the window; ``changeTime`` with
  seven fractional digits, as Resource Graph writes datetimes.

Any other query gets a 400 with Resource Graph's error shape. The KQL itself is checked by
Microsoft's Kusto language service (``tests/inventory``, ``tests/changes``).

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
  Throttling, resets, server errors and redirects also come from the ``LabServer``'s fault
  injection. ``mislink(fault)`` makes answers misdirect their client (``LinkFault``): a
  ``$skipToken`` that gives the same page again, a ring of pages, pages without end, or a
  ``nextLink`` to another host (a field Resource Graph's answers do not have, which a client must
  not follow).

Unlike Azure, the ``Resources`` index is never stale: a change to the estate shows in the next
answer. The change history trails by ``change_lag`` (Azure: up to about 5 minutes; none by
default), read on the estate's clock, and keeps 14 days. ``fail_change_queries(fault)`` answers
the next change queries with ``fault`` (status, body, headers, delay) and leaves vault queries
alone: both share one path, so the server's path-matched faults cannot tell them apart.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from lab.estate import ChangeType, Estate, ResourceChange, token_claims
from lab.http import Fault, LabServer, LinkFault, Request, Response
from monitor.sources.change_history import NETWORK_KEY_PATTERN, build_change_query
from monitor.sources.resource_graph import (
    MAX_PAGE_SIZE,
    QUOTA_REMAINING_HEADER,
    QUOTA_RESETS_AFTER_HEADER,
    SUBSCRIPTION_TYPE,
    VAULT_TYPE,
    build_vault_query,
)
from monitor.sources.storage.resource_graph import ACCOUNT_TYPE, PRIVATE_ENDPOINT_TYPE, build_account_query

QUERY_ROUTE = "resourcegraph.resources"
_QUERY_PATH = r"(?i)/providers/Microsoft\.ResourceGraph/resources"
_NAME_FILTER = re.compile(r"^\| where name =~ '([^']*)'$", re.MULTILINE)
_CHANGE_SINCE = re.compile(r"^\| where changeTime >= datetime\(([^)]*)\)$", re.MULTILINE)
_CHANGE_TARGETS = re.compile(r"^\| where targetResourceId in \((.*)\)$", re.MULTILINE)
_NETWORK_KEYS = re.compile(NETWORK_KEY_PATTERN)
CHANGE_RETENTION = dt.timedelta(days=14)
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
        change_lag: dt.timedelta = dt.timedelta(0),
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
        self._link_fault: tuple[LinkFault, str | None] | None = None
        self.change_lag = change_lag
        self._change_faults: list[Fault] = []

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
        """A fresh quota, no truncation, no link fault, no change lag or change-query fault, and
        optionally another estate (tests share one server)."""
        with self._lock:
            self._windows.clear()
            self._truncate_after = None
            self._link_fault = None
            self.change_lag = dt.timedelta(0)
            self._change_faults.clear()
        if estate is not None:
            self.estate = estate

    def truncate_after(self, rows: int | None) -> None:
        """Answers stop after ``rows`` rows, ``resultTruncated`` true and no skip token."""
        self._truncate_after = rows

    def mislink(self, fault: LinkFault, *, elsewhere: str | None = None) -> None:
        """Answers misdirect their client with ``fault`` until ``reset``; a ``FOREIGN`` answer's
        ``nextLink`` goes to ``elsewhere`` (an origin). Answers that are truncated keep no link."""
        if (fault is LinkFault.FOREIGN) != (elsewhere is not None):
            raise ValueError("a foreign link needs elsewhere, and only a foreign link takes it")
        with self._lock:
            self._link_fault = (fault, elsewhere)

    def fail_change_queries(self, fault: Fault) -> None:
        """The next change queries (``fault.times``, 0: all) get ``fault`` instead of an answer."""
        if fault.reset:
            raise ValueError("a change-query fault answers; use the server's faults to reset connections")
        with self._lock:
            self._change_faults.append(fault)

    def _change_fault(self) -> Fault | None:
        with self._lock:
            if not self._change_faults:
                return None
            fault = self._change_faults[0]
            if fault.times == 1:
                self._change_faults.pop(0)
            elif fault.times > 1:
                self._change_faults[0] = replace(fault, times=fault.times - 1)
            return fault

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
        query = _recognise(body["query"])
        if query is None:
            return _error(
                400,
                "BadRequest",
                _support_message(),
                detail=(
                    "InvalidQuery",
                    "The lab's Resource Graph answers kvmon's vault, storage account and change "
                    "queries only (monitor.sources.resource_graph.build_vault_query, "
                    "monitor.sources.storage.resource_graph.build_account_query, "
                    "monitor.sources.change_history.build_change_query).",
                ),
            )
        if isinstance(query, _ChangeQuery):
            fault = self._change_fault()
            if fault is not None:
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                return Response(fault.status or 500, fault.body, headers=dict(fault.headers))
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
        keys, render = self._rows(readable, query)
        size = min(top, self.page_size)
        answer: dict[str, Any] = {"totalRecords": len(keys), "facets": [], "resultTruncated": "false"}
        truncate_after = self._truncate_after
        if truncate_after is not None and offset + size >= truncate_after:
            size = max(0, truncate_after - offset)
            if offset + size < len(keys):
                answer["resultTruncated"] = "true"
        page = keys[offset : offset + size]
        answer["data"] = [render(item) for item in page]
        answer["count"] = len(page)
        if answer["resultTruncated"] == "false":
            link_fault, elsewhere = self._link_fault or (None, None)
            more = offset + size < len(keys)
            following = {
                None: offset + size if more else None,
                LinkFault.FOREIGN: offset + size if more else None,
                LinkFault.SELF: offset,
                LinkFault.CYCLE: offset + size if more else 0,
                LinkFault.ENDLESS: offset + size,
            }[link_fault]
            if following is not None:
                answer["$skipToken"] = _encode_skip_token(following, fingerprint)
            if elsewhere is not None:
                answer["nextLink"] = f"{elsewhere}{request.path}?{urlencode(request.query)}"
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

    def _rows(
        self, subscriptions: list[str], query: _VaultQuery | _ChangeQuery | _StorageQuery
    ) -> tuple[list[Any], Callable[[Any], dict[str, Any]]]:
        """What the answer's rows are made of, and how one becomes a row: vault rows are built
        for the page only (each a deep copy), change and storage rows are few and built at once."""
        if isinstance(query, _ChangeQuery):
            return self._change_rows(subscriptions, query), dict
        if isinstance(query, _StorageQuery):
            return self._storage_rows(subscriptions), dict
        return self._row_keys(subscriptions, query.name), lambda item: self._row(*item)

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

    def _storage_rows(self, subscriptions: list[str]) -> list[dict[str, Any]]:
        """The storage account query's rows: accounts, the endpoints that name an account, and
        the subscriptions, ordered by id (lower-cased, as ``_row_keys``)."""
        rows: list[tuple[str, dict[str, Any]]] = []
        for subscription in subscriptions:
            rows.append((f"/subscriptions/{subscription}".lower(), self._row("subscription", subscription)))
            for key in list(self.estate.storage_subscriptions.get(subscription, ())):
                account = self.estate.storage_account(key) or {}
                # Columns from the key (the lower-cased id), as for vaults: a test may break the id.
                parts = key.split("/")
                rows.append(
                    (
                        key,
                        {
                            "id": account.get("id"),
                            "name": account.get("name"),
                            "type": str(account.get("type", ACCOUNT_TYPE)).lower(),
                            "kind": account.get("kind"),
                            "sku": account.get("sku"),
                            "location": account.get("location"),
                            "resourceGroup": parts[4],
                            "subscriptionId": parts[2],
                            "tags": account.get("tags"),
                            "properties": account.get("properties"),
                        },
                    )
                )
            for endpoint in self.estate.private_endpoints_in(subscription):
                # The query's `tostring(properties) contains`: case-insensitive, over the JSON text.
                if ACCOUNT_TYPE not in json.dumps(endpoint.get("properties")).lower():
                    continue
                rows.append(
                    (
                        str(endpoint["id"]).lower(),
                        {
                            "id": endpoint["id"],
                            "name": endpoint.get("name"),
                            "type": str(endpoint.get("type", PRIVATE_ENDPOINT_TYPE)).lower(),
                            "subscriptionId": str(endpoint["id"]).split("/")[2],
                            "properties": endpoint.get("properties"),
                        },
                    )
                )
        return [row for _, row in sorted(rows, key=lambda keyed: keyed[0])]

    def _change_rows(self, subscriptions: list[str], query: _ChangeQuery) -> list[dict[str, Any]]:
        """Per requested vault in a readable subscription, its newest change in the window that
        created it or touched a network key, as the query projects it, ordered by vault id."""
        readable = {subscription.lower() for subscription in subscriptions}
        now = self.estate.now()
        indexed_until, kept_since = now - self.change_lag, now - CHANGE_RETENTION
        newest: dict[str, ResourceChange] = {}
        for change in self.estate.resource_changes():
            key = change.target_resource_id.lower()
            if key not in query.vault_keys or key.split("/")[2] not in readable:
                continue
            if not max(query.since, kept_since) <= change.timestamp <= indexed_until:
                continue
            keys_text = json.dumps(list(change.changes), separators=(",", ":"))
            if change.change_type is not ChangeType.CREATE and not _NETWORK_KEYS.search(keys_text):
                continue
            if key not in newest or change.timestamp >= newest[key].timestamp:
                newest[key] = change
        return [_change_row(key, newest[key]) for key in sorted(newest)]

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


@dataclass(frozen=True)
class _VaultQuery:
    name: str | None  # the vault-name filter, None for every vault


@dataclass(frozen=True)
class _StorageQuery:
    pass  # every storage account: the query takes no argument


@dataclass(frozen=True)
class _ChangeQuery:
    vault_keys: frozenset[str]
    since: dt.datetime


def _recognise(query: str) -> _VaultQuery | _ChangeQuery | _StorageQuery | None:
    """Which of kvmon's queries this is, with what it asks; None for any other text."""
    if query == build_vault_query():
        return _VaultQuery(name=None)
    if query == build_account_query():
        return _StorageQuery()
    match = _NAME_FILTER.search(query)
    if match is not None:
        try:
            if query == build_vault_query(name=match.group(1)):
                return _VaultQuery(name=match.group(1))
        except ValueError:
            pass
        return None
    since, targets = _CHANGE_SINCE.search(query), _CHANGE_TARGETS.search(query)
    if since is None or targets is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(since.group(1))
        vault_ids = json.loads(f"[{targets.group(1)}]")
        if query == build_change_query(vault_ids=vault_ids, since=moment):
            return _ChangeQuery(vault_keys=frozenset(v.lower() for v in vault_ids), since=moment)
    except (ValueError, TypeError, AttributeError):
        pass
    return None


def _change_row(key: str, change: ResourceChange) -> dict[str, Any]:
    # Resource Graph writes datetimes with seven fractional digits.
    moment = change.timestamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return {
        "targetResourceId": key,
        "changeTime": moment,
        "changeType": change.change_type.value,
        "changedBy": change.changed_by,
        "changedByType": change.changed_by_type,
        "clientType": change.client_type,
        "operation": change.operation,
        "correlationId": change.correlation_id,
    }


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
