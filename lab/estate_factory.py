"""Big synthetic estates for the benchmarks and scale tests: thousands of vaults, a realistic mix.

``synthetic_estate(vaults=10_000, subscriptions=100)`` spreads vaults evenly over subscriptions and
gives them the configurations real estates have (the kinds and their shares are in ``MIX``):

- ``se-allow`` / ``se-deny``: a Service Endpoint subnet in ``virtualNetworkRules``, with the
  default action left at Allow (the classic mistake) or set to Deny;
- ``pl-locked`` / ``pl-open`` / ``pl-pending``: a Private Endpoint (Approved, or still Pending)
  with public network access Disabled or still Enabled;
- ``ip-good`` / ``ip-broad`` / ``ip-quoted``: an IP firewall (Deny) with a narrow public range, a
  far too broad one, or the quoted value of Azure's own published example;
- ``locked``: public network access Disabled and nothing else;
- ``open``: no ``networkAcls`` at all (Azure's default: reachable from anywhere).

One vault in ten has no diagnostic setting; the others log to one of a few workspaces, so a scan
makes one logs query per workspace. The mix is deterministic for a given ``seed``.

``IndexedEstate`` is the same world as ``lab.estate.Estate`` with indexes by vault name and by
Private Endpoint address: the base class finds a vault by name by walking every vault, which is
fine for the walkthrough's two vaults and costs the lab seconds per thousand DNS queries at
10,000 vaults. Its answers are identical (``tests/inventory/test_resource_graph.py`` checks).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.estate import Estate, walkthrough_network

# Kinds of vault and their share of an estate (shares sum to 1).
MIX: tuple[tuple[str, float], ...] = (
    ("se-allow", 0.08),
    ("se-deny", 0.14),
    ("pl-locked", 0.14),
    ("pl-open", 0.06),
    ("pl-pending", 0.04),
    ("ip-good", 0.14),
    ("ip-broad", 0.06),
    ("ip-quoted", 0.04),
    ("locked", 0.10),
    ("open", 0.20),
)
KINDS = tuple(kind for kind, _ in MIX)
NO_DIAGNOSTICS_SHARE = 0.10
# Private Endpoints of a synthetic estate take addresses from 127.10.128.0/17, beyond the
# walkthrough's subnets, so each has its own address (up to 32,000 of them).
_PE_FIRST = (127 << 24) | (10 << 16) | (128 << 8)
_PE_CAPACITY = 128 * 256 - 2


def subscription_id_for(index: int) -> str:
    """Deterministic, valid-looking GUIDs: ``5ca1ab1e-0000-4000-8000-<index>``."""
    return f"5ca1ab1e-0000-4000-8000-{index:012x}"


def workspace_id_for(index: int) -> str:
    return f"0be5e7a0-0000-4000-8000-{index:012x}"


@dataclass(frozen=True)
class SyntheticVault:
    id: str
    name: str
    subscription_id: str
    kind: str
    workspace_id: str | None


class IndexedEstate(Estate):
    """``Estate`` with O(1) lookups by vault name and Private Endpoint address."""

    def __init__(self) -> None:
        super().__init__()
        self._by_name: dict[str, str] = {}  # lower-cased name -> vault key
        self._endpoint_owner: dict[str, tuple[str, str]] = {}  # address -> (vault key, endpoint id)
        self._index_lock = threading.RLock()

    def add_vault(self, **kwargs: Any) -> dict[str, Any]:
        vault = super().add_vault(**kwargs)
        with self._index_lock:
            self._by_name[vault["name"].lower()] = vault["id"].lower()
        return vault

    def add_private_endpoint(
        self, vault_id: str, *, address: str, subnet_id: str, status: str = "Approved", name: str = "pe"
    ) -> str:
        endpoint_id = super().add_private_endpoint(
            vault_id, address=address, subnet_id=subnet_id, status=status, name=name
        )
        with self._index_lock:
            self._endpoint_owner.setdefault(address, (vault_id.lower(), endpoint_id))
        return endpoint_id

    def remove_vault(self, vault_id: str, **kwargs: Any) -> None:
        super().remove_vault(vault_id, **kwargs)
        with self._index_lock:
            key = vault_id.lower()
            self._by_name = {name: k for name, k in self._by_name.items() if k != key}
            self._endpoint_owner = {a: o for a, o in self._endpoint_owner.items() if o[0] != key}

    def vault_by_name(self, name: str) -> dict[str, Any] | None:
        key = self.vault_key(name)
        return self.vault(key) if key is not None else None

    def vault_key(self, name: str) -> str | None:
        with self._index_lock:
            return self._by_name.get(name.lower())

    def private_endpoint_at(self, address: str) -> tuple[str, str] | None:
        with self._index_lock:
            owner = self._endpoint_owner.get(address)
        if owner is None or self.vault(owner[0]) is None:
            return None
        return owner


def synthetic_estate(
    *,
    vaults: int,
    subscriptions: int,
    seed: int = 0,
    workspaces: int | None = None,
    forbidden_subscriptions: Sequence[int] = (),
) -> IndexedEstate:
    """``vaults`` vaults over ``subscriptions`` subscriptions (round robin), kinds drawn from ``MIX``.

    ``workspaces`` defaults to one per ten subscriptions (at least one); the subscriptions whose
    indexes are in ``forbidden_subscriptions`` deny the reader, as a subscription without a role
    assignment does.
    """
    if vaults < 0 or subscriptions < 1:
        raise ValueError("vaults must be at least 0 and subscriptions at least 1")
    workspace_count = workspaces if workspaces is not None else max(1, subscriptions // 10)
    if workspace_count < 1:
        raise ValueError("workspaces must be at least 1")
    rng = random.Random(seed)
    estate = IndexedEstate()
    estate.vnets = walkthrough_network()
    se_subnet = estate.subnet_named("serviceEndpoint")
    pl_subnet = estate.subnet_named("privateLink")
    forbidden = set(forbidden_subscriptions)
    for index in range(subscriptions):
        estate.add_subscription(subscription_id_for(index), forbidden=index in forbidden)
    kinds, weights = zip(*MIX, strict=True)
    endpoints = 0
    for index in range(vaults):
        subscription = subscription_id_for(index % subscriptions)
        kind = rng.choices(kinds, weights=weights)[0]
        workspace = (
            None if rng.random() < NO_DIAGNOSTICS_SHARE else workspace_id_for(rng.randrange(workspace_count))
        )
        vault = estate.add_vault(
            subscription_id=subscription,
            resource_group=f"rg-app-{index % 7}",
            name=f"kv{index:05d}-{kind}",
            location=("westeurope", "northeurope", "eastus2")[index % 3],
            public_network_access=_public_access(kind),
            network_acls=_network_acls(kind, se_subnet.id),
            tags={"env": ("prod", "dev", "test")[index % 3], "kind": kind},
            workspace_id=workspace,
        )
        if kind.startswith("pl-"):
            if endpoints >= _PE_CAPACITY:
                raise ValueError(f"a synthetic estate holds at most {_PE_CAPACITY} Private Endpoints")
            estate.add_private_endpoint(
                vault["id"],
                address=_endpoint_address(endpoints),
                subnet_id=pl_subnet.id,
                status="Pending" if kind == "pl-pending" else "Approved",
                name=f"pe-{vault['name']}",
            )
            endpoints += 1
    return estate


def synthetic_vaults(estate: Estate) -> list[SyntheticVault]:
    """The estate's vaults with their kind (from the ``kind`` tag) and workspace, in estate order."""
    found = []
    for subscription, keys in estate.subscriptions.items():
        for key in keys:
            vault = estate.vaults[key]
            found.append(
                SyntheticVault(
                    id=vault["id"],
                    name=vault["name"],
                    subscription_id=subscription,
                    kind=str(vault["tags"].get("kind", "")),
                    workspace_id=estate.diagnostics.get(key),
                )
            )
    return found


def _public_access(kind: str) -> str:
    return "Disabled" if kind in ("pl-locked", "pl-pending", "locked") else "Enabled"


def _network_acls(kind: str, se_subnet_id: str) -> dict[str, Any] | None:
    if kind == "open":
        return None
    acls: dict[str, Any] = {
        "bypass": "AzureServices",
        "defaultAction": "Deny",
        "ipRules": [],
        "virtualNetworkRules": [],
    }
    if kind.startswith("se-"):
        acls["defaultAction"] = "Allow" if kind == "se-allow" else "Deny"
        acls["virtualNetworkRules"] = [
            {"id": se_subnet_id.lower(), "ignoreMissingVnetServiceEndpoint": False}
        ]
    elif kind == "pl-open":
        acls["defaultAction"] = "Allow"
    elif kind == "ip-good":
        acls["ipRules"] = [{"value": "203.0.113.0/24"}, {"value": "198.51.100.7/32"}]
    elif kind == "ip-broad":
        acls["ipRules"] = [{"value": "0.0.0.0/1"}, {"value": "10.0.0.0/8"}]
    elif kind == "ip-quoted":
        acls["ipRules"] = [{"value": "'10.91.4.0/24'"}, {"value": "203.0.113.0/24"}]
    return acls


def _endpoint_address(index: int) -> str:
    value = _PE_FIRST + 1 + index
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))
