"""A vault document with fields of the wrong type is judged on what could be read.

The lab's ARM serves the garbled document to azure-mgmt-keyvault; the posture names the problem,
and neither KV301 (drift) nor KV001 is computed from a field that could not be read: a
networkAcls that is a string once opened "defaultAction Deny → Allow (loosening)" naming the last
modifier as its author, and KV001 on a locked-down vault. An Approved connection whose provisioning
Failed, as ARM serves it, is no working private endpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from lab.estate import Estate
from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.judge.rules.keyvault.config import public_network_open
from monitor.judge.rules.keyvault.drift import network_changed
from monitor.model import VaultPosture
from monitor.sources.arm import ArmInventory
from monitor.store.codec import posture_from_json, posture_to_json
from tests.inventory.conftest import SUB_A


def _networkacls_a_string(vault: dict[str, Any]) -> None:
    vault["properties"]["networkAcls"] = "Deny"


def _properties_missing(vault: dict[str, Any]) -> None:
    del vault["properties"]


def _iprules_not_a_list(vault: dict[str, Any]) -> None:
    vault["properties"]["networkAcls"]["ipRules"] = "203.0.113.0/24"


def _public_access_a_number(vault: dict[str, Any]) -> None:
    vault["properties"]["publicNetworkAccess"] = 0


def _read(inventory: ArmInventory) -> VaultPosture:
    result = inventory.list_vaults([SUB_A])
    (posture,) = result.postures
    return posture


@pytest.mark.parametrize(
    ("garble", "unread_field"),
    [
        (_networkacls_a_string, "properties.networkAcls"),
        (_properties_missing, "properties"),
        (_iprules_not_a_list, "properties.networkAcls.ipRules"),
        (_public_access_a_number, "properties.publicNetworkAccess"),
    ],
)
def test_a_garbled_document_invents_no_drift_and_no_kv001(
    estate: Estate, inventory: ArmInventory, garble: Callable[[dict[str, Any]], None], unread_field: str
) -> None:
    added = estate.add_vault(
        subscription_id=SUB_A,
        resource_group="rg-app",
        name="kv-locked",
        network_acls={"bypass": "None", "defaultAction": "Deny", "ipRules": [{"value": "203.0.113.0/24"}]},
    )
    before = _read(inventory)
    assert before.unread == frozenset() and before.default_action == "Deny"

    document = estate.vaults[added["id"].lower()]  # what the lab's ARM serves for the vault
    garble(document)
    document.setdefault("systemData", {})["lastModifiedBy"] = "mallory@contoso.com"
    after = _read(inventory)

    assert unread_field in after.unread
    assert any(problem.startswith(unread_field) for problem in after.problems)
    assert posture_from_json(posture_to_json(after)) == after  # the next scan's "before" keeps it
    facts = VaultFacts(posture=after, policy=VaultPolicy(), previous=before, first_scan_of_scope=False)
    findings = evaluate(
        [facts], today=dt.date(2026, 3, 2), rules=(public_network_open, network_changed)
    ).findings
    assert [f.rule_id for f in findings] == []


def test_an_approved_connection_whose_provisioning_failed_counts_as_no_private_endpoint(
    estate: Estate, inventory: ArmInventory
) -> None:
    added = estate.add_vault(subscription_id=SUB_A, resource_group="rg-app", name="kv-pe-failed")
    estate.add_private_endpoint(added["id"], address="10.2.0.10", subnet_id="/subscriptions/x/subnets/pl")
    connection = estate.vaults[added["id"].lower()]["properties"]["privateEndpointConnections"][0]
    connection["properties"]["provisioningState"] = "Failed"
    posture = _read(inventory)

    (failed,) = posture.private_endpoint_connections
    assert failed.approved and not failed.working
    facts = VaultFacts(posture=posture, policy=VaultPolicy(mode="private-link"), first_scan_of_scope=False)
    rules = tuple(RULES_BY_ID[rule_id] for rule_id in ("KV008", "KV009", "KV010"))
    findings = evaluate([facts], today=dt.date(2026, 3, 2), rules=rules).findings
    assert sorted(f.rule_id for f in findings) == ["KV009", "KV010"]
