"""lab.bicep builds the walkthrough, and kvmon, given examples/baseline-azure-lab.yaml, judges it.

The vaults' network properties are read from the template (Checkov's parser) for each state the
lab can be deployed in, turned into ARM JSON as Azure would return it, and run through kvmon's own
normaliser, baseline and configuration rules: the unsafe state must be caught, the fixed one pass.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitor.config.baseline import load_baseline
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import CATALOG, RULES_BY_ID
from monitor.sources.keyvault.normalise import normalise_vault
from tests.infra.bicep import REPO, dotted, resources, template
from tests.infra.bicep import evaluate as evaluate_bicep

BASELINE = REPO / "examples" / "baseline-azure-lab.yaml"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-kvlab"
VNET_ID = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/vnet-kvlab"
TOKEN = "abcdefghijklm"
CONFIG_RULES = [rule for rule in CATALOG if rule.id.startswith("KV0")]


def _lab() -> dict[str, Any]:
    return template("lab.bicep")


def _subnets() -> dict[str, dict[str, Any]]:
    (vnet,) = resources(_lab(), "Microsoft.Network/virtualNetworks").values()
    return {subnet["name"]: subnet["properties"] for subnet in vnet["properties"]["subnets"]}


def _symbols(**parameters: Any) -> dict[str, Any]:
    defaults = {name: p["default"] for name, p in _lab()["parameters"].items()}
    return {**defaults, **parameters, "token": TOKEN, "vnet.id": VNET_ID}


def _arm_vault(symbol: str, symbols: dict[str, Any]) -> dict[str, Any]:
    """The vault as ARM returns it once deployed with ``symbols`` as parameters."""
    declared = resources(_lab(), "Microsoft.KeyVault/vaults")[symbol]
    name = evaluate_bicep(declared["name"], symbols)
    properties = {
        key: evaluate_bicep(declared["properties"][key], symbols)
        for key in ("publicNetworkAccess", "networkAcls", "enableRbacAuthorization")
    }
    if symbol == "privateLinkVault":
        # The template's Private Endpoint, auto-approved (same tenant, deployer's permissions).
        properties["privateEndpointConnections"] = [
            {
                "id": f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/{name}/privateEndpointConnections/pe",
                "properties": {
                    "privateEndpoint": {
                        "id": f"{GROUP_ID}/providers/Microsoft.Network/privateEndpoints/pe-{name}"
                    },
                    "privateLinkServiceConnectionState": {"status": "Approved"},
                    "provisioningState": "Succeeded",
                },
            }
        ]
    return {
        "id": f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/{name}",
        "name": name,
        "type": "Microsoft.KeyVault/vaults",
        "location": "westeurope",
        "tags": evaluate_bicep(declared["tags"], {**symbols, "tags": {"workload": "kvmon-lab"}}),
        "properties": properties,
    }


def _findings(symbol: str, **parameters: Any) -> set[str]:
    posture = normalise_vault(_arm_vault(symbol, _symbols(**parameters)))
    assert posture.problems == ()
    baseline = load_baseline(BASELINE, known_rules=RULES_BY_ID.keys())
    policy = baseline.policy_for(posture)
    assert policy.entry is not None, f"no baseline entry matches {posture.name} (tags {dict(posture.tags)})"
    result = evaluate(
        [VaultFacts(posture=posture, policy=policy)], today=dt.date(2026, 1, 1), rules=CONFIG_RULES
    )
    return {finding.rule_id for finding in result.findings}


def test_the_vnet_has_the_walkthroughs_three_subnets() -> None:
    subnets = _subnets()
    assert set(subnets) == {"serviceEndpoint", "privateLink", "default"}
    assert subnets["serviceEndpoint"]["serviceEndpoints"] == [{"service": "Microsoft.KeyVault"}]
    assert "serviceEndpoints" not in subnets["privateLink"] and "serviceEndpoints" not in subnets["default"]


def test_the_service_endpoint_vault_admits_its_subnet_and_starts_unsafe() -> None:
    assert _lab()["parameters"]["serviceEndpointVaultState"]["default"] == "unsafe"
    for state, action in (("unsafe", "Allow"), ("fixed", "Deny")):
        acls = _arm_vault("serviceEndpointVault", _symbols(serviceEndpointVaultState=state))["properties"][
            "networkAcls"
        ]
        assert acls["defaultAction"] == action
        assert acls["virtualNetworkRules"] == [
            {"id": f"{VNET_ID}/subnets/serviceEndpoint", "ignoreMissingVnetServiceEndpoint": False}
        ]


def test_the_private_link_vault_has_an_endpoint_and_a_linked_private_zone() -> None:
    lab = _lab()
    (endpoint,) = resources(lab, "Microsoft.Network/privateEndpoints").values()
    assert endpoint["properties"]["subnet"]["id"] == "${vnet.id}/subnets/privateLink"
    (connection,) = endpoint["properties"]["privateLinkServiceConnections"]
    assert connection["properties"]["groupIds"] == ["vault"]
    assert lab["parameters"]["privateDnsZoneName"]["default"] == "privatelink.vaultcore.azure.net"
    (link,) = resources(lab, "Microsoft.Network/privateDnsZones/virtualNetworkLinks").values()
    assert lab["resources"]["privateDnsZoneLink"]["config"]["condition"] == "linkPrivateDnsZone"
    assert link["parent"] == "privateDnsZone"
    assert link["properties"]["registrationEnabled"] is False
    assert evaluate_bicep(link["properties"]["virtualNetwork"]["id"], {"vnet.id": VNET_ID}) == VNET_ID
    assert lab["parameters"]["linkPrivateDnsZone"]["default"] is True
    (group,) = resources(lab, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups").values()
    assert group["parent"] == "privateEndpoint"
    (zone_config,) = group["properties"]["privateDnsZoneConfigs"]
    assert dotted(zone_config["properties"]["privateDnsZoneId"]) == "privateDnsZone.id"


def test_both_vaults_send_audit_logs_to_the_workspace() -> None:
    modules = _lab()["modules"]
    targets = {
        dotted(module["config"]["params"]["vaultName"])
        for module in modules.values()
        if module["detail"]["path"] == "modules/vault-diagnostics.bicep"
    }
    assert targets == {"serviceEndpointVault.name", "privateLinkVault.name"}


def test_kvmon_catches_the_unsafe_service_endpoint_vault() -> None:
    findings = _findings("serviceEndpointVault", serviceEndpointVaultState="unsafe")
    assert {"KV001", "KV011"} <= findings  # open to the internet; drift from the baseline's Deny


def test_the_fixed_service_endpoint_vault_complies() -> None:
    assert _findings("serviceEndpointVault", serviceEndpointVaultState="fixed") == set()


def test_the_private_link_vault_complies_by_default() -> None:
    assert _findings("privateLinkVault") == set()


def test_kvmon_catches_a_private_link_vault_with_the_public_door_open() -> None:
    findings = _findings("privateLinkVault", privateLinkVaultPublicNetworkAccess="Enabled")
    assert "KV008" in findings  # Private Endpoint not enforced
