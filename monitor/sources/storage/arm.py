"""Every storage account's network configuration, read from Azure Resource Manager.

Per subscription, two listings, both through the vault listing's ``ArmConnection`` (the
``EndpointPolicy`` host check, the token scope, the timeouts and retry budget) and each page under a
``PageGuard``:

- azure-mgmt-storage ``storage_accounts.list()``: whole accounts with their properties and private
  endpoint connections;
- azure-mgmt-network ``private_endpoints.list_by_subscription()``: the private endpoints, because an
  account's connection does not say which sub-resource (blob, dfs, file...) its endpoint serves; the
  endpoint does, in ``privateLinkServiceConnections[].properties.groupIds`` (or the manual
  connections'). One listing per subscription, not one read per account or connection. A connection
  whose endpoint is in a subscription that is not scanned keeps its sub-resource unknown (ST018 says
  so).

The error discipline is the vault listing's: a subscription whose accounts cannot be read (403, 404,
network, throttled past the retries, a link elsewhere, a listing that loops) is a ``ScanError`` naming
it and is not complete; an account that cannot be normalised is a ``ScanError`` and does not hide the
others. When the private endpoints cannot be read, the accounts are kept with their sub-resources
unknown, the fault is a ``ScanError`` naming the subscription, and the subscription is not complete:
a finding about a sub-resource must not resolve because its evidence went unread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.storage import StorageManagementClient

from monitor.azure_errors import describe_exception, error_code
from monitor.azure_origin import OffEndpointRequest
from monitor.model import ErrorSource, ScanError
from monitor.model_storage import StorageAccountPosture
from monitor.sources.arm import (
    ArmConnection,
    RequestCounter,
    describe_arm_error,
    guarded_items,
    unique_subscriptions,
)
from monitor.sources.paging import MAX_PAGES, PageGuard, PagingStopped
from monitor.sources.storage.normalise import InvalidStorageAccount, normalise_storage_account

# Lower-cased private endpoint id -> lower-cased private link resource id -> its groupIds.
EndpointGroups = dict[str, dict[str, list[str]]]


@dataclass
class StorageInventoryResult:
    postures: list[StorageAccountPosture] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # Subscriptions (lower-cased ids) whose accounts and private endpoints were read in full.
    subscriptions_complete: set[str] = field(default_factory=set)
    requests: int = 0  # HTTP requests sent to ARM, retries included


@dataclass
class _Listing:
    items: list[Any] = field(default_factory=list)
    error: ScanError | None = None


class StorageArmInventory:
    """Reads storage accounts from ARM with azure-mgmt-storage, and their private endpoints'
    sub-resources with azure-mgmt-network.

    :param credential: a token credential (``DefaultAzureCredential`` in production).
    :param connection: how ARM is reached (``ArmInventory.connection``: the same for both services).
    :keyword max_concurrency: subscriptions read at the same time.
    :keyword max_pages: pages of one listing followed at most (``MAX_PAGES``).
    """

    def __init__(
        self,
        credential: TokenCredential,
        connection: ArmConnection,
        *,
        max_concurrency: int = 8,
        max_pages: int = MAX_PAGES,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, not {max_pages}")
        self.credential = credential
        self.connection = connection
        self.max_concurrency = max_concurrency
        self.max_pages = max_pages

    def list_accounts(self, subscription_ids: Sequence[str]) -> StorageInventoryResult:
        """Every storage account of every subscription, subscriptions in the order given."""
        subscriptions = unique_subscriptions(subscription_ids)
        result = StorageInventoryResult()
        if not subscriptions:
            return result
        counter = RequestCounter()
        workers = min(self.max_concurrency, len(subscriptions))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmon-storage") as pool:
            reads = list(pool.map(lambda s: self._read_subscription(s, counter), subscriptions))
        for subscription_id, (postures, errors, complete) in zip(subscriptions, reads, strict=True):
            result.postures.extend(postures)
            result.errors.extend(errors)
            if complete:
                result.subscriptions_complete.add(subscription_id)
        result.requests = counter.count
        return result

    # -- internals -----------------------------------------------------------------------------

    def _read_subscription(
        self, subscription_id: str, counter: RequestCounter
    ) -> tuple[list[StorageAccountPosture], list[ScanError], bool]:
        options = {**self.connection.client_options(), "raw_request_hook": counter}
        with StorageManagementClient(self.credential, subscription_id, **options) as client:
            accounts = self._list(subscription_id, "storage accounts", lambda: client.storage_accounts.list())
        errors = [accounts.error] if accounts.error else []
        complete = accounts.error is None
        groups: EndpointGroups = {}
        if any(_connections(raw) for raw in accounts.items):
            with NetworkManagementClient(self.credential, subscription_id, **options) as network:
                endpoints = self._list(
                    subscription_id,
                    "private endpoints",
                    lambda: network.private_endpoints.list_by_subscription(),
                )
            if endpoints.error is not None:
                errors.append(endpoints.error)
                complete = False
            groups = endpoint_groups(endpoints.items)
        postures: list[StorageAccountPosture] = []
        for index, raw in enumerate(accounts.items):
            try:
                postures.append(normalise_storage_account(with_group_ids(raw, groups)))
            except InvalidStorageAccount as exc:
                complete = False
                errors.append(
                    ScanError(
                        ErrorSource.ARM,
                        subscription_id,
                        f"storage account #{index} of the list is unusable: {exc}",
                    )
                )
        return postures, errors, complete

    def _list(self, subscription_id: str, what: str, pager: Any) -> _Listing:
        """The items of one listing as JSON; what ARM served before a fault is kept, and the fault
        is the listing's ``error``."""
        listing = _Listing()
        guard = PageGuard(
            f"listing of the {what} of subscription {subscription_id}",
            link="nextLink",
            max_pages=self.max_pages,
        )
        try:
            for item in guarded_items(pager(), guard):
                # The SDK's models are mappings over the response JSON; as_dict() gives it back
                # whole, so the normaliser sees what a file or `az` would show.
                listing.items.append(item.as_dict() if hasattr(item, "as_dict") else item)
        except HttpResponseError as exc:
            message = f"{what}: {describe_arm_error(exc)}"
            listing.error = ScanError(ErrorSource.ARM, subscription_id, message, error_code(exc))
        except PagingStopped as exc:
            listing.error = ScanError(ErrorSource.ARM, subscription_id, exc.message, exc.code)
        except OffEndpointRequest as exc:
            message = f"listing of the {what} of subscription {subscription_id} stopped: {exc}"
            listing.error = ScanError(ErrorSource.ARM, subscription_id, message, exc.code)
        except Exception as exc:  # whatever ARM's answer or the network did to the SDK
            message = f"{what}: {describe_exception(exc)}"
            listing.error = ScanError(ErrorSource.ARM, subscription_id, message)
        return listing


def endpoint_groups(endpoints: Sequence[Any]) -> EndpointGroups:
    """Each private endpoint's target resources and the groupIds it asks of each, from
    ``privateLinkServiceConnections`` and ``manualPrivateLinkServiceConnections``."""
    groups: EndpointGroups = {}
    for endpoint in endpoints:
        endpoint_id = endpoint.get("id") if isinstance(endpoint, Mapping) else None
        properties = endpoint.get("properties") if isinstance(endpoint, Mapping) else None
        if not isinstance(endpoint_id, str) or not isinstance(properties, Mapping):
            continue  # not an endpoint kvmon can join: its connections stay "unknown"
        targets = groups.setdefault(endpoint_id.lower(), {})
        for key in ("privateLinkServiceConnections", "manualPrivateLinkServiceConnections"):
            for link in properties.get(key) or []:
                fields = link.get("properties") if isinstance(link, Mapping) else None
                if not isinstance(fields, Mapping):
                    continue
                target = fields.get("privateLinkServiceId")
                group_ids = fields.get("groupIds")
                if isinstance(target, str) and isinstance(group_ids, list):
                    targets[target.lower()] = list(group_ids)
    return groups


def with_group_ids(raw: Any, groups: EndpointGroups) -> Any:
    """``raw`` with each private endpoint connection's ``groupIds`` joined in from its endpoint (the
    normaliser reads them there), where the endpoint was listed and targets this account."""
    if not groups or not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        return raw
    account_id = raw["id"].lower()
    joined = False
    connections: list[Any] = []
    for connection in _connections(raw):
        fields = connection.get("properties") if isinstance(connection, Mapping) else None
        endpoint = fields.get("privateEndpoint") if isinstance(fields, Mapping) else None
        endpoint_id = endpoint.get("id") if isinstance(endpoint, Mapping) else None
        group_ids = (
            groups.get(endpoint_id.lower(), {}).get(account_id) if isinstance(endpoint_id, str) else None
        )
        if isinstance(fields, Mapping) and group_ids is not None and "groupIds" not in fields:
            connection = {**connection, "properties": {**fields, "groupIds": group_ids}}
            joined = True
        connections.append(connection)
    if not joined:
        return raw
    return {**raw, "properties": {**raw["properties"], "privateEndpointConnections": connections}}


def _connections(raw: Any) -> list[Any]:
    """The private endpoint connections of an account's REST JSON, [] when it has none or is garbled."""
    properties = raw.get("properties") if isinstance(raw, Mapping) else None
    connections = properties.get("privateEndpointConnections") if isinstance(properties, Mapping) else None
    return connections if isinstance(connections, list) else []
