"""Storage accounts' postures beside the vaults' in one store, on SQLite and on Azurite's Table
storage: each service's snapshots load back whole and apart, and an account's change is history."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from monitor.model import Service
from monitor.model_storage import StorageAccountPosture, StorageSubresource
from monitor.sources.storage.arm import endpoint_groups, with_group_ids
from monitor.sources.storage.normalise import normalise_storage_account
from monitor.store.base import PostureSnapshot
from monitor.store.entities import EntityStore
from tests.storage.conftest import example
from tests.store.helpers import posture

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def _rich_account() -> StorageAccountPosture:
    """Azure's documented example with IPv6 rules, resource instance rules, private endpoint
    connections (with their sub-resource joined in) and a perimeter reading not looked up."""
    raw: Any = example("StorageAccountLeverageIPv6Ability")
    raw = dict(raw, id=raw["id"].replace("{subscription-id}", "00000000-0000-0000-0000-0000000000a1"))
    connections = example("StorageAccountListPrivateEndpointConnections")["value"]
    acls = dict(
        raw["properties"].get("networkAcls") or {},
        defaultAction="Deny",
        bypass="Logging, Metrics",
        ipRules=[{"value": "203.0.113.0/24", "action": "Allow"}],
        virtualNetworkRules=[
            {
                "id": "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-net/providers"
                "/Microsoft.Network/virtualNetworks/vnet/subnets/app",
                "action": "Allow",
                "state": "Succeeded",
            }
        ],
        resourceAccessRules=[
            {
                "tenantId": "00000000-0000-0000-0000-0000000000cc",
                "resourceId": "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg"
                "/providers/Microsoft.Synapse/workspaces/ws",
            }
        ],
    )
    raw["properties"] = dict(
        raw["properties"], privateEndpointConnections=connections, networkAcls=acls, allowedCopyScope="AAD"
    )
    endpoints = [
        {
            "id": connection["properties"]["privateEndpoint"]["id"],
            "properties": {
                "privateLinkServiceConnections": [
                    {"properties": {"privateLinkServiceId": raw["id"], "groupIds": ["blob"]}}
                ]
            },
        }
        for connection in connections
    ]
    return normalise_storage_account(with_group_ids(raw, endpoint_groups(endpoints)))


def test_an_account_posture_round_trips_beside_a_vault(store: EntityStore) -> None:
    account = _rich_account()
    assert account.ipv6_rules and account.ip_rules and account.private_endpoint_connections
    assert account.virtual_network_rules and account.resource_access_rules and account.primary_endpoints
    assert not account.problems, account.problems
    assert {c.subresource for c in account.private_endpoint_connections} == {StorageSubresource.BLOB}
    vault = posture(subscription=account.subscription_id)

    store.save_postures(
        [
            PostureSnapshot(posture=account, scan_id="s1", seen_at=T0),
            PostureSnapshot(posture=vault, scan_id="s1", seen_at=T0),
        ]
    )

    accounts = store.load_postures(subscriptions=[account.subscription_id], service=Service.STORAGE)
    vaults = store.load_postures(subscriptions=[account.subscription_id])
    assert {key: s.posture for key, s in accounts.items()} == {account.key: account}
    assert {key: s.posture for key, s in vaults.items()} == {vault.key: vault}
    assert (
        store.load_postures(vault_keys=[account.key], service=Service.STORAGE)[account.key].posture == account
    )
    assert store.load_postures(vault_keys=[account.key]) == {}


def test_an_unchanged_account_writes_no_version_and_a_changed_one_is_history(store: EntityStore) -> None:
    account = _rich_account()
    store.save_postures([PostureSnapshot(posture=account, scan_id="s1", seen_at=T0)])
    later = T0 + dt.timedelta(minutes=15)

    assert (
        store.save_postures([PostureSnapshot(posture=account, scan_id="s2", seen_at=later)]) == 1
    )  # the marker
    loaded = store.load_postures(subscriptions=[account.subscription_id], service=Service.STORAGE)
    assert loaded[account.key].seen_at == later and loaded[account.key].scan_id == "s2"

    changed = dataclasses.replace(account, allow_shared_key_access=True)
    store.save_postures(
        [PostureSnapshot(posture=changed, scan_id="s3", seen_at=later + dt.timedelta(minutes=15))]
    )

    history = store.posture_history(account.key)
    assert [snapshot.posture for snapshot in history] == [account, changed]
