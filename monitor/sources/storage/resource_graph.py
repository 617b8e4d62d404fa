"""Every storage account's network configuration from Azure Resource Graph: one paginated query.

The vaults' Resource Graph reader (``monitor.sources.resource_graph``) for storage accounts, for
estates of many subscriptions: the same ``run_query`` (batches of subscriptions, pages followed by
``$skipToken`` under a ``PageGuard``, the quota waited for, every requested subscription proved
visible by its ``ResourceContainers`` row, a truncated answer completing nothing), the same
``ScanError``s (source ``resource-graph``), and the same result as ``StorageArmInventory``
(``StorageInventoryResult``), so a caller cannot tell the two apart.

The private endpoints' sub-resources: an account's connection does not say which sub-resource
(blob, dfs, file...) its endpoint serves; the endpoint does, in its ``groupIds``. The ARM reader
lists the endpoints of each subscription with azure-mgmt-network; here the same query also returns
the ``microsoft.network/privateendpoints`` rows that name a storage account (``union``), with their
``properties`` as ARM gives them, and ``endpoint_groups``/``with_group_ids`` join them in once every
page is read (the rows are ordered by id, so an account and its endpoint may be pages apart). As
with ARM, an endpoint in a subscription that is not scanned is not seen: that connection's
sub-resource stays unknown (ST018 says so).

What Resource Graph's ``Resources`` rows lack beside ARM's: ``systemData`` (no last-modified-by on
these postures, as for vaults); ``type`` and ``resourceGroup`` come lower-cased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential

from monitor.model_storage import StorageAccountPosture
from monitor.sources.arm import ArmConnection, unique_subscriptions
from monitor.sources.paging import MAX_PAGES
from monitor.sources.resource_graph import (
    MAX_PAGE_SIZE,
    SUBSCRIPTION_TYPE,
    GraphPages,
    GraphRows,
    run_query,
)
from monitor.sources.storage.arm import StorageInventoryResult, endpoint_groups, with_group_ids
from monitor.sources.storage.normalise import InvalidStorageAccount, normalise_storage_account

ACCOUNT_TYPE = "microsoft.storage/storageaccounts"
PRIVATE_ENDPOINT_TYPE = "microsoft.network/privateendpoints"


def build_account_query() -> str:
    """The KQL kvmon sends: every storage account, every private endpoint whose properties name a
    storage account (``contains`` is case-insensitive), every visible subscription.

    ``order by id`` keeps pages stable; ``id`` is a string column, so Resource Graph can page.
    """
    return (
        "Resources\n"
        f"| where type =~ '{ACCOUNT_TYPE}'\n"
        "| project id, name, type, kind, sku, location, resourceGroup, subscriptionId, tags, properties\n"
        "| union (Resources\n"
        f"    | where type =~ '{PRIVATE_ENDPOINT_TYPE}'\n"
        f"    | where tostring(properties) contains '{ACCOUNT_TYPE}'\n"
        "    | project id, name, type, subscriptionId, properties)\n"
        "| union (ResourceContainers\n"
        f"    | where type =~ '{SUBSCRIPTION_TYPE}'\n"
        "    | project id, name, type, subscriptionId)\n"
        "| order by id asc"
    )


@dataclass
class StorageGraphInventoryResult(StorageInventoryResult, GraphPages):
    pass


class StorageResourceGraphInventory:
    """Reads storage accounts with one Resource Graph query (azure-mgmt-resourcegraph).

    :param credential: a token credential (``DefaultAzureCredential`` in production).
    :param connection: how ARM is reached (``ResourceGraphInventory.connection``: the same for both
        services).
    :keyword page_size: rows per page (``$top``), at most 1,000.
    :keyword max_quota_wait_s: longest wait for a spent quota to reset before the next page.
    :keyword max_pages: pages of one query followed at most (``MAX_PAGES``).
    """

    def __init__(
        self,
        credential: TokenCredential,
        connection: ArmConnection,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_quota_wait_s: float = 60,
        max_pages: int = MAX_PAGES,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        if max_quota_wait_s < 0:
            raise ValueError(f"max_quota_wait_s must not be negative, not {max_quota_wait_s}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, not {max_pages}")
        self.credential = credential
        self.connection = connection
        self.page_size = page_size
        self.max_quota_wait_s = max_quota_wait_s
        self.max_pages = max_pages

    def list_accounts(self, subscription_ids: Sequence[str]) -> StorageGraphInventoryResult:
        """Every storage account of every subscription, subscriptions in the order given."""
        subscriptions = unique_subscriptions(subscription_ids)
        result = StorageGraphInventoryResult()
        read = _AccountRows(requested=set(subscriptions))
        run_query(
            self.credential,
            self.connection,
            subscriptions=subscriptions,
            query=build_account_query(),
            read=read,
            result=result,
            page_size=self.page_size,
            max_quota_wait_s=self.max_quota_wait_s,
            max_pages=self.max_pages,
        )
        order = {subscription: index for index, subscription in enumerate(subscriptions)}
        # Rows come ordered by id; the subscriptions' order as given, like StorageArmInventory.
        result.postures = sorted(read.postures, key=lambda p: order.get(p.subscription_id, len(order)))
        return result


class _AccountRows(GraphRows):
    what = "storage accounts"

    def __init__(self, *, requested: set[str]) -> None:
        super().__init__(requested=requested)
        self.accounts: list[tuple[int, Any, str | None]] = []  # (row number, row, subscription)
        self.endpoints: list[Any] = []
        self.postures: list[StorageAccountPosture] = []

    def resource(self, index: int, row: Any, subscription: str | None) -> None:
        row_type = str(row.get("type", "")).lower() if isinstance(row, Mapping) else ""
        if row_type == PRIVATE_ENDPOINT_TYPE:
            self.endpoints.append(row)
        elif row_type == ACCOUNT_TYPE:
            self.accounts.append((index, row, subscription))
        else:
            self.unusable_row(subscription, f"row #{index} of a page is neither an account nor an endpoint")

    def finish(self) -> None:
        groups = endpoint_groups(self.endpoints)
        for index, row, subscription in self.accounts:
            try:
                posture = normalise_storage_account(with_group_ids(row, groups))
            except InvalidStorageAccount as exc:
                self.unusable_row(subscription, f"row #{index} of a page is unusable: {exc}")
                continue
            if posture.subscription_id not in self.requested:
                self.unusable_row(
                    subscription,
                    f"row #{index} of a page is a storage account outside the requested subscriptions: ignored",
                )
                continue
            self.postures.append(posture)
