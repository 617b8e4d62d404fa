"""Who changed a vault's network configuration, from Resource Graph's change history.

ARM's ``systemData`` names a vault's last modifier, but Resource Graph's ``Resources`` table
carries none, so a scan above the Resource Graph threshold cannot say who loosened a firewall.
Resource Graph keeps every ARM change for 14 days in the ``resourcechanges`` table (one
``Microsoft.Resources/changes`` row per create, update or delete): ``properties.changeType``,
``properties.targetResourceId``, ``properties.changeAttributes`` (``timestamp``, ``changedBy``,
``changedByType``, ``clientType``, ``operation``, ``correlationId``) and, for updates,
``properties.changes``, one entry per changed property path with its ``previousValue`` and
``newValue``. This module asks it, for the vaults a scan found changed, which change last touched
their network configuration and who made it.

How a change is known to touch the network (``build_change_query``): ``properties.changes`` is a
property bag keyed by the changed property's path in the resource's JSON, dotted, with array
elements indexed (``properties.networkAcls.defaultAction``,
``properties.networkAcls.ipRules[0].value``, ``properties.privateEndpointConnections[1]...``).
The query lists the keys (``bag_keys``) as JSON text and matches a key that *starts* with
``properties.networkAcls``, ``properties.publicNetworkAccess`` or
``properties.privateEndpointConnections`` followed by the end of the key, a ``.`` or a ``[``
(so ``properties.networkAclsFoo`` would not count), case-insensitively. Matching the key list
rather than the serialised changes means a value that happens to contain such a path is never
mistaken for a key. A ``Create`` carries no ``changes`` (Azure includes them for updates only)
and counts: a vault deleted and created again between two scans was given its configuration by
its creator. A ``Delete`` does not: the vault is there now.

What Azure does that the reader copes with:

- The change history trails ARM by up to about 5 minutes. A change younger than that may not be
  there yet: the vault then gets no actor, and KV301 names nobody ("last modified by unknown").
  The scan that follows does not fix this: its stored posture already holds the change, so KV301
  does not fire again and resolves. Where KV301 does come again with the same change (one-vault
  checks store no posture, so each is judged against the last full scan), an actor that arrived
  meanwhile changes only its summary and evidence: the lifecycle announces a new severity, not a
  new summary, so nobody is told twice, and the record takes the name at its next evidence refresh.
  Naming nobody beats naming the wrong person, which is also why the window starts exactly at the
  previous scan of the vault, with no margin before it.
- Subscriptions the caller cannot read are left out of the answer, as for ``Resources``; their
  vaults get no actor.
- Faults (429 after azure-core's retries, 403, timeouts, an answer that is no list of rows, a
  redirect to another host, a ``$skipToken`` that loops) become ``ScanError``s with source ``resource-graph``, one per subscription of the batch, and
  its vaults get no actor: who changed a vault is evidence, never a reason to fail a scan.
- Resource Graph documents no limit on a query's length that kvmon could rely on, but long
  queries are refused; the vault ids travel in the query text, so they go in batches of
  ``VAULTS_PER_QUERY`` (50 ids: at most about 12 KB of KQL). A batch's answer holds at most one
  row per vault; its pages are followed all the same.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient

from monitor.azure_errors import describe_exception, error_code
from monitor.azure_origin import OffEndpointRequest
from monitor.model import ActorSource, ChangeActor, ErrorSource, ScanError
from monitor.sources.arm import ArmConnection, RequestCounter, describe_arm_error
from monitor.sources.keyvault.kql import normalise_vault_ids
from monitor.sources.paging import PagingStopped
from monitor.sources.resource_graph import (
    MAX_PAGE_SIZE,
    QuotaHeaders,
    graph_client,
    query_pages,
    truncated,
)

VAULTS_PER_QUERY = 50
# The vault properties that make its network configuration (``monitor.judge.drift`` compares them).
NETWORK_PROPERTIES = ("networkAcls", "publicNetworkAccess", "privateEndpointConnections")
# A key of ``properties.changes`` naming one of them, in the JSON text of the key list.
NETWORK_KEY_PATTERN = r'(?i)[\[,]"properties\.(' + "|".join(NETWORK_PROPERTIES) + r')[.\["]'
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def kql_datetime(moment: dt.datetime) -> str:
    """``datetime(2026-12-02T16:00:00Z)``: UTC, down to the second (the window starts no later)."""
    if moment.tzinfo is None:
        raise ValueError("a window start must be timezone-aware")
    return f"datetime({moment.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')})"


def build_change_query(*, vault_ids: Sequence[str], since: dt.datetime) -> str:
    """The KQL kvmon sends: per vault, the newest change since ``since`` that created it or touched
    its network configuration, with who made it. One row per vault at most, ordered by id."""
    keys = normalise_vault_ids(vault_ids)
    if not keys:
        raise ValueError("the change history is asked about one vault at least")
    if len(keys) > VAULTS_PER_QUERY:
        raise ValueError(f"at most {VAULTS_PER_QUERY} vaults a query, not {len(keys)}")
    # Validated ids hold no quote or backslash: JSON's quoting is Kusto's.
    listed = ", ".join(json.dumps(key) for key in keys)
    return (
        "resourcechanges\n"
        "| extend targetResourceId = tolower(tostring(properties.targetResourceId)),\n"
        "    changeTime = todatetime(properties.changeAttributes.timestamp),\n"
        "    changeType = tostring(properties.changeType)\n"
        f"| where changeTime >= {kql_datetime(since)}\n"
        f"| where targetResourceId in ({listed})\n"
        "| extend changedKeys = tostring(bag_keys(properties.changes))\n"
        f"| where changeType == 'Create' or changedKeys matches regex @'{NETWORK_KEY_PATTERN}'\n"
        "| summarize arg_max(changeTime, *) by targetResourceId\n"
        "| project targetResourceId, changeTime, changeType,\n"
        "    changedBy = tostring(properties.changeAttributes.changedBy),\n"
        "    changedByType = tostring(properties.changeAttributes.changedByType),\n"
        "    clientType = tostring(properties.changeAttributes.clientType),\n"
        "    operation = tostring(properties.changeAttributes.operation),\n"
        "    correlationId = tostring(properties.changeAttributes.correlationId)\n"
        "| order by targetResourceId asc"
    )


@dataclass
class ChangeHistoryResult:
    actors: dict[str, ChangeActor] = field(default_factory=dict)  # vault key -> who made its newest change
    errors: list[ScanError] = field(default_factory=list)
    requests: int = 0  # every attempt, retries included


class ChangeHistory(Protocol):
    def network_actors(self, changed_since: Mapping[str, dt.datetime]) -> ChangeHistoryResult:
        """Who made the newest network change of each vault (id -> the moment it was last seen
        unchanged) since that moment; vaults without such a change are left out."""
        ...


class ResourceGraphChangeHistory:
    """Reads ``resourcechanges`` through azure-mgmt-resourcegraph, as ``ResourceGraphInventory``
    reads ``Resources`` (same connection options)."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        connection: ArmConnection | None = None,
        max_quota_wait_s: float = 60,
    ) -> None:
        """``connection`` as the inventory's (the same endpoint, trust, timeouts and retries)."""
        if max_quota_wait_s < 0:
            raise ValueError(f"max_quota_wait_s must not be negative, not {max_quota_wait_s}")
        self.credential = credential
        self.connection = connection or ArmConnection()
        self.max_quota_wait_s = max_quota_wait_s

    def network_actors(self, changed_since: Mapping[str, dt.datetime]) -> ChangeHistoryResult:
        result = ChangeHistoryResult()
        since = _vault_keys(changed_since, result.errors)
        if not since:
            return result
        counter = RequestCounter()
        quota = QuotaHeaders()
        ordered = sorted(since)
        with graph_client(self.credential, self.connection, counter=counter, quota=quota) as client:
            for start in range(0, len(ordered), VAULTS_PER_QUERY):
                batch = {key: since[key] for key in ordered[start : start + VAULTS_PER_QUERY]}
                self._read_batch(client, batch, quota, result)
        result.requests = counter.count
        return result

    def _read_batch(
        self,
        client: ResourceGraphClient,
        batch: Mapping[str, dt.datetime],
        quota: QuotaHeaders,
        result: ChangeHistoryResult,
    ) -> None:
        subscriptions = sorted({key.split("/")[2] for key in batch})
        query = build_change_query(vault_ids=list(batch), since=min(batch.values()))
        pages = query_pages(
            client,
            subscriptions=subscriptions,
            query=query,
            page_size=MAX_PAGE_SIZE,
            quota=quota,
            max_quota_wait_s=self.max_quota_wait_s,
        )
        found: dict[str, ChangeActor] = {}
        try:
            for response in pages:
                if not isinstance(response.data, list):
                    raise _Unreadable("the answer's data is not a list of rows (resultFormat objectArray)")
                for row in response.data:
                    _take(row, batch, found)
                if not response.skip_token and truncated(response):
                    raise _Unreadable("the answer was truncated with no $skipToken", "ResultTruncated")
        except HttpResponseError as exc:
            _fail(result, subscriptions, batch, describe_arm_error(exc), error_code(exc))
        except (_Unreadable, PagingStopped) as exc:
            _fail(result, subscriptions, batch, exc.message, exc.code)
        except OffEndpointRequest as exc:
            _fail(result, subscriptions, batch, f"change query stopped: {exc}", exc.code)
        except Exception as exc:  # whatever the network or the answer did to the SDK
            _fail(result, subscriptions, batch, describe_exception(exc), None)
        result.actors.update(found)  # what was read before a fault still names its changer


class _Unreadable(Exception):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _vault_keys(changed_since: Mapping[str, dt.datetime], errors: list[ScanError]) -> dict[str, dt.datetime]:
    """Vault key -> window start; an id that is not a vault's cannot go into a query."""
    keys: dict[str, dt.datetime] = {}
    for vault_id, moment in changed_since.items():
        try:
            [key] = normalise_vault_ids([vault_id])
        except ValueError as exc:
            errors.append(
                ScanError(ErrorSource.RESOURCE_GRAPH, str(vault_id), f"change history not asked: {exc}")
            )
            continue
        if moment.tzinfo is None:
            raise ValueError(f"the window start of {vault_id} must be timezone-aware")
        keys[key] = min(moment, keys.get(key, moment))
    return keys


def _fail(
    result: ChangeHistoryResult,
    subscriptions: Sequence[str],
    batch: Mapping[str, dt.datetime],
    message: str,
    code: str | None,
) -> None:
    for subscription in subscriptions:
        vaults = sum(1 for key in batch if key.split("/")[2] == subscription)
        result.errors.append(
            ScanError(
                ErrorSource.RESOURCE_GRAPH,
                subscription,
                f"change history unreadable, who changed {vaults} vault(s) stays unknown: {message}",
                code,
            )
        )


def _take(row: Any, batch: Mapping[str, dt.datetime], found: dict[str, ChangeActor]) -> None:
    """One answer row: the actor of its vault, if the change is no older than that vault's window
    (the query's window is the batch's earliest)."""
    if not isinstance(row, Mapping):
        return
    key = _text(row.get("targetResourceId"))
    changed_at = _moment(row.get("changeTime"))
    if key is None or key.lower() not in batch or changed_at is None or changed_at < batch[key.lower()]:
        return
    found[key.lower()] = actor_from_change(row, changed_at=changed_at)


def actor_from_change(row: Mapping[str, Any], *, changed_at: dt.datetime) -> ChangeActor:
    """A change's ``changedBy`` is a user's e-mail address (UPN), an application's or managed
    identity's id, or "System" for a change no caller made; it goes where ``ChangeActor`` keeps
    that kind of name."""
    changed_by = _text(row.get("changedBy"))
    changed_by_type = _text(row.get("changedByType"))
    user = (changed_by_type or "").lower() == "user"
    is_user = user and changed_by is not None and "@" in changed_by
    is_app = not user and changed_by is not None and bool(_GUID.match(changed_by))
    return ChangeActor(
        source=ActorSource.RESOURCE_CHANGES,
        name=None if is_user or is_app else changed_by,
        upn=changed_by if is_user else None,
        app_id=changed_by if is_app else None,
        principal_type=changed_by_type,
        client_type=_text(row.get("clientType")),
        operation=_text(row.get("operation")),
        changed_at=changed_at,
        correlation_id=_text(row.get("correlationId")),
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _moment(value: Any) -> dt.datetime | None:
    """Resource Graph's datetimes are ISO 8601 text in UTC (up to 7 fractional digits)."""
    text = _text(value)
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
