"""The lab's ARM: writes through the real SDK (the demo's "fix the firewall") and ARM's refusals."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (
    IPRule,
    NetworkRuleSet,
    Sku,
    VaultCreateOrUpdateParameters,
    VaultPatchParameters,
    VaultPatchProperties,
    VaultProperties,
)

from lab.arm import ArmEmulator
from lab.credential import MONITOR_APP_ID, LabCredential
from lab.estate import (
    INTERNET_CLIENT,
    LAB_TENANT,
    PUBLIC_INGRESS,
    WALKTHROUGH_SUBSCRIPTION,
    Estate,
    walkthrough_estate,
)
from lab.tls import LabPki
from monitor.model import VaultPosture
from monitor.sources.arm import ArmInventory

RG = "rg-walkthrough"


@pytest.fixture
def world() -> Estate:
    return walkthrough_estate()


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate()) as emulator:
        yield emulator


@pytest.fixture
def arm(_arm_server: ArmEmulator, world: Estate) -> ArmEmulator:
    _arm_server.estate = world
    return _arm_server


@pytest.fixture
def client(arm: ArmEmulator, pki: LabPki) -> Iterator[KeyVaultManagementClient]:
    with KeyVaultManagementClient(
        LabCredential(),
        WALKTHROUGH_SUBSCRIPTION,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=pki.ca_path,
        polling_interval=0,
        retry_total=0,
    ) as sdk:
        yield sdk


def read_back(arm: ArmEmulator, pki: LabPki, name: str) -> VaultPosture:
    """The vault as kvmon's inventory reads it."""
    inventory = ArmInventory(LabCredential(), arm_endpoint=arm.url, connection_verify=pki.ca_path)
    [posture] = inventory.find_vault(name, [WALKTHROUGH_SUBSCRIPTION]).postures
    return posture


def stored(world: Estate, name: str) -> dict[str, Any]:
    vault = world.vault_by_name(name)
    assert vault is not None
    return vault


def test_patch_fixes_the_firewall_and_the_data_plane_follows(
    world: Estate, arm: ArmEmulator, pki: LabPki, client: KeyVaultManagementClient
) -> None:
    vault_key = stored(world, "kv-se-demo")["id"].lower()
    assert world.decide(vault_key, client_address=INTERNET_CLIENT, local_address=PUBLIC_INGRESS).admitted
    current = client.vaults.get(RG, "kv-se-demo")
    rules = current.properties.network_acls.virtual_network_rules
    updated = client.vaults.update(
        RG,
        "kv-se-demo",
        VaultPatchParameters(
            properties=VaultPatchProperties(
                network_acls=NetworkRuleSet(
                    default_action="Deny",
                    bypass="AzureServices",
                    ip_rules=[IPRule(value="203.0.113.0/24")],
                    virtual_network_rules=rules,
                )
            )
        ),
    )
    assert updated.properties.network_acls.default_action == "Deny"
    posture = read_back(arm, pki, "kv-se-demo")
    assert posture.default_action == "Deny"
    assert [r.raw for r in posture.ip_rules] == ["203.0.113.0/24"]
    assert len(posture.virtual_network_rules) == 1
    assert (posture.last_modified_by, posture.last_modified_by_type) == (MONITOR_APP_ID, "Application")
    assert posture.tags == {"env": "lab"}  # a PATCH without tags leaves them
    assert not world.decide(vault_key, client_address=INTERNET_CLIENT, local_address=PUBLIC_INGRESS).admitted


def test_put_creates_then_updates_a_vault(
    arm: ArmEmulator, pki: LabPki, client: KeyVaultManagementClient
) -> None:
    parameters = VaultCreateOrUpdateParameters(
        location="westeurope",
        tags={"owner": "team-a"},
        properties=VaultProperties(
            tenant_id=LAB_TENANT,
            sku=Sku(family="A", name="standard"),
            public_network_access="Disabled",
            network_acls=NetworkRuleSet(default_action="Deny", bypass="None"),
        ),
    )
    created = client.vaults.begin_create_or_update(RG, "kv-new", parameters).result()
    assert created.name == "kv-new"
    posture = read_back(arm, pki, "kv-new")
    assert (posture.public_network_access, posture.default_action, posture.bypass) == (
        "Disabled",
        "Deny",
        "None",
    )
    assert posture.tags == {"owner": "team-a"}
    assert posture.last_modified_by == MONITOR_APP_ID

    parameters.properties.public_network_access = "Enabled"
    client.vaults.begin_create_or_update(RG, "kv-new", parameters).result()
    assert read_back(arm, pki, "kv-new").public_network_access == "Enabled"


def test_get_of_a_missing_vault_is_resource_not_found(client: KeyVaultManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.vaults.get(RG, "kv-absent")
    assert caught.value.error is not None and caught.value.error.code == "ResourceNotFound"


def test_private_endpoint_connections_listed(client: KeyVaultManagementClient) -> None:
    [connection] = list(client.private_endpoint_connections.list_by_resource(RG, "kv-pl-demo"))
    assert connection.name == "pe-kv-pl-demo-conn"
    assert connection.properties.private_link_service_connection_state.status == "Approved"
    assert connection.properties.private_endpoint.id.endswith("/privateEndpoints/pe-kv-pl-demo")


def _list_url(arm: ArmEmulator, query: str = "api-version=2026-05-15") -> str:
    return f"{arm.url}/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults?{query}"


def _bearer(claims: dict[str, str]) -> dict[str, str]:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return {"Authorization": f"Bearer eyJhbGciOiJub25lIn0.{payload}."}


def test_no_token_is_401(arm: ArmEmulator, pki: LabPki) -> None:
    answer = requests.get(_list_url(arm), verify=pki.ca_path, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"


def test_no_api_version_is_400(arm: ArmEmulator, pki: LabPki) -> None:
    answer = requests.get(_list_url(arm, ""), headers=_bearer({"oid": "x"}), verify=pki.ca_path, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"


def test_top_pages_and_a_foreign_skiptoken_is_400(arm: ArmEmulator, pki: LabPki) -> None:
    headers = _bearer({"oid": "x"})
    first = requests.get(
        _list_url(arm, "api-version=1&$top=1"), headers=headers, verify=pki.ca_path, timeout=10
    )
    page = first.json()
    assert len(page["value"]) == 1 and page["nextLink"].startswith(arm.url)
    second = requests.get(page["nextLink"], headers=headers, verify=pki.ca_path, timeout=10).json()
    assert len(second["value"]) == 1 and "nextLink" not in second
    assert second["value"][0]["name"] != page["value"][0]["name"]
    bad = requests.get(
        _list_url(arm, "api-version=1&$skiptoken=abc"), headers=headers, verify=pki.ca_path, timeout=10
    )
    assert bad.status_code == 400


def test_a_user_token_stamps_the_user(world: Estate, arm: ArmEmulator, pki: LabPki) -> None:
    url = f"{arm.url}/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-pl-demo?api-version=1"
    answer = requests.patch(
        url,
        json={"properties": {"publicNetworkAccess": "Disabled"}},
        headers=_bearer({"upn": "carol@contoso.example", "oid": "o"}),
        verify=pki.ca_path,
        timeout=10,
    )
    assert answer.status_code == 200
    system_data = answer.json()["systemData"]
    assert (system_data["lastModifiedBy"], system_data["lastModifiedByType"]) == (
        "carol@contoso.example",
        "User",
    )
    assert answer.json()["properties"]["publicNetworkAccess"] == "Disabled"
    # Read-only properties in a body are ignored, as ARM ignores them.
    requests.patch(
        url,
        json={"properties": {"privateEndpointConnections": []}},
        headers=_bearer({"oid": "o"}),
        verify=pki.ca_path,
        timeout=10,
    )
    assert len(stored(world, "kv-pl-demo")["properties"]["privateEndpointConnections"]) == 1
