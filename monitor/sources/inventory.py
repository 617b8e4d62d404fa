"""What a scan asks of an inventory, and the choice between the two that Azure offers.

``run_scan`` reads vaults through an ``InventorySource``. Three satisfy it: ``ArmInventory``
(``monitor.sources.arm``: one request per subscription, with ``systemData``),
``ResourceGraphInventory`` (``monitor.sources.resource_graph``: one query for all), and
``ThresholdInventory``, which picks one of the two by the size of each scan. Storage accounts are
read through a ``StorageInventorySource`` (``monitor.sources.storage.arm.StorageArmInventory``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from monitor.model import ScanError, VaultPosture
from monitor.sources.arm import ArmInventory, InventoryResult, VaultRead, unique_subscriptions
from monitor.sources.resource_graph import ResourceGraphInventory
from monitor.sources.storage.arm import StorageInventoryResult


class InventoryResultLike(Protocol):
    postures: list[VaultPosture]
    errors: list[ScanError]
    subscriptions_complete: set[str]


class InventorySource(Protocol):
    def list_vaults(self, subscription_ids: Sequence[str]) -> InventoryResultLike: ...

    def find_vault(self, name: str, subscription_ids: Sequence[str]) -> InventoryResultLike: ...


class VaultReader(Protocol):
    """Reads one vault by resource id (``ArmInventory.get_vault``): the event path's one GET."""

    def get_vault(self, vault_id: str) -> VaultRead: ...


class StorageInventorySource(Protocol):
    """Lists the storage accounts of subscriptions (``StorageArmInventory``), on the vault
    inventory's ARM connection."""

    def list_accounts(self, subscription_ids: Sequence[str]) -> StorageInventoryResult: ...


class ThresholdInventory:
    """Resource Graph for a scan of ``threshold`` subscriptions or more, ARM below it.

    The choice is made per call, on the subscriptions that call reads: the Functions app's queue
    worker scans one subscription at a time (ARM, with its ``systemData``), a scan of the whole
    estate from the CLI or the timer reads them all at once (Resource Graph, one query).
    """

    def __init__(self, *, arm: ArmInventory, graph: ResourceGraphInventory, threshold: int) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold}")
        self.arm = arm
        self.graph = graph
        self.threshold = threshold

    def source_for(self, subscription_ids: Sequence[str]) -> ArmInventory | ResourceGraphInventory:
        return self.graph if len(unique_subscriptions(subscription_ids)) >= self.threshold else self.arm

    def list_vaults(self, subscription_ids: Sequence[str]) -> InventoryResult:
        return self.source_for(subscription_ids).list_vaults(subscription_ids)

    def find_vault(self, name: str, subscription_ids: Sequence[str]) -> InventoryResult:
        return self.source_for(subscription_ids).find_vault(name, subscription_ids)
