"""The storage account normaliser on Azure's published examples and on the shapes people hold
(REST, azure-mgmt-storage's flattened model, az), and on garbled documents: nothing crashes, what
could not be read is named and left unjudged."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.model_storage import (
    AllowedCopyScope,
    DefaultAction,
    DnsEndpointType,
    PublicNetworkAccess,
    RuleAction,
    StorageBypass,
    StorageSubresource,
    TlsVersion,
    VirtualNetworkRuleState,
)
from monitor.sources.documents import load_resource_file, service_of
from monitor.sources.keyvault.normalise import VaultFileError
from monitor.sources.storage.normalise import InvalidStorageAccount, normalise_storage_account
from tests.storage.conftest import example

SYNAPSE = (
    "/subscriptions/a7e99807-abbf-4642-bdec-2c809a96a8bc/resourceGroups/res9407/providers/"
    "Microsoft.Synapse/workspaces/testworkspace"
)
SUBNET = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/app"
ACCOUNT_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stapp"


# -- Azure's published examples -------------------------------------------------------------------


def test_get_properties_example() -> None:
    account = normalise_storage_account(example("StorageAccountGetProperties"))
    assert account.name == "sto8596" and account.resource_group == "res9407"
    assert account.subscription_id == "{subscription-id}"  # the example's placeholder, kept
    assert account.problems == () and account.unread == frozenset()
    assert account.public_network_access is PublicNetworkAccess.ABSENT
    assert account.network_acls_present and account.default_action is DefaultAction.ALLOW
    assert account.bypass == {StorageBypass.AZURE_SERVICES}
    assert [(r.tenant_id, r.resource_id) for r in account.resource_access_rules] == [
        ("72f988bf-86f1-41af-91ab-2d7cd011db47", SYNAPSE)
    ]
    # The routing and IPv6 endpoint objects nested in primaryEndpoints are not sub-resources.
    assert set(account.primary_endpoints) == {
        StorageSubresource.BLOB,
        StorageSubresource.DFS,
        StorageSubresource.FILE,
        StorageSubresource.QUEUE,
        StorageSubresource.TABLE,
        StorageSubresource.WEB,
    }
    assert account.primary_endpoints[StorageSubresource.DFS] == "https://sto8596.dfs.core.windows.net/"
    assert account.supports_https_traffic_only is False and not account.https_only
    assert account.tags == {"key1": "value1", "key2": "value2"}
    # Absent: Azure's interpretations, stated by the posture's properties.
    assert account.allow_blob_public_access is None and not account.blob_public_access_allowed
    assert account.allow_shared_key_access is None and account.shared_key_allowed
    assert account.minimum_tls_version is None and account.effective_minimum_tls is TlsVersion.TLS1_0


def test_list_example_every_account() -> None:
    accounts = [normalise_storage_account(item) for item in example("StorageAccountList")["value"]]
    assert [a.name for a in accounts] == ["sto1125", "sto3699", "sto8596", "sto6637", "sto834", "sto9174"]
    assert all(a.problems == () for a in accounts)
    assert [a.network_acls_present for a in accounts] == [False, False, True, False, False, False]
    # Standard (v1) accounts without dfs or web list four endpoints.
    assert set(accounts[1].primary_endpoints) == {
        StorageSubresource.BLOB,
        StorageSubresource.FILE,
        StorageSubresource.QUEUE,
        StorageSubresource.TABLE,
    }


def test_disabled_public_access_example_keeps_default_allow_and_the_instance_rule() -> None:
    account = normalise_storage_account(example("StorageAccountUpdateDisablePublicNetworkAccess"))
    assert account.public_network_access is PublicNetworkAccess.DISABLED and account.public_access_disabled
    assert account.default_action is DefaultAction.ALLOW
    assert account.allow_blob_public_access is False and account.allow_shared_key_access is True
    assert account.minimum_tls_version is TlsVersion.TLS1_2
    assert len(account.resource_access_rules) == 1 and account.trusted_services_bypass


def test_ipv6_rules_example() -> None:
    account = normalise_storage_account(example("StorageAccountLeverageIPv6Ability"))
    [rule] = account.ipv6_rules
    assert rule.raw == "2001:0db8:85a3::/64" and rule.value.network is not None
    assert rule.value.network.version == 6 and rule.action is RuleAction.ALLOW
    assert account.ip_rules == () and account.default_action is DefaultAction.DENY


def test_private_endpoint_connections_example_name_no_sub_resource() -> None:
    document = example("StorageAccountGetProperties")
    document["properties"]["privateEndpointConnections"] = example(
        "StorageAccountListPrivateEndpointConnections"
    )["value"]
    account = normalise_storage_account(document)
    assert [
        c.connection.private_endpoint_id.rsplit("/", 1)[-1] for c in account.private_endpoint_connections
    ] == [
        "petest01",
        "petest02",
    ]
    assert all(c.working and c.subresource is None for c in account.private_endpoint_connections)
    assert account.problems == ()


# -- the shapes people hold -------------------------------------------------------------------------

REST: dict[str, Any] = {
    "id": ACCOUNT_ID,
    "name": "stapp",
    "type": "Microsoft.Storage/storageAccounts",
    "location": "westeurope",
    "properties": {
        "publicNetworkAccess": "Enabled",
        "networkAcls": {
            "bypass": "Logging, Metrics",
            "defaultAction": "Deny",
            "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}],
            "virtualNetworkRules": [{"id": SUBNET, "action": "Allow", "state": "NetworkSourceDeleted"}],
            "resourceAccessRules": [{"tenantId": "t", "resourceId": SYNAPSE}],
        },
        "privateEndpointConnections": [
            {
                "id": f"{ACCOUNT_ID}/privateEndpointConnections/pe-blob",
                "properties": {
                    "privateEndpoint": {"id": "/subscriptions/s/.../privateEndpoints/pe-blob"},
                    "privateLinkServiceConnectionState": {"status": "Approved"},
                    "provisioningState": "Succeeded",
                    "groupIds": ["blob"],
                },
            }
        ],
        "primaryEndpoints": {
            "blob": "https://stapp.blob.core.windows.net/",
            "dfs": "https://stapp.dfs.core.windows.net/",
        },
        "allowBlobPublicAccess": True,
        "allowSharedKeyAccess": False,
        "minimumTlsVersion": "TLS1_1",
        "supportsHttpsTrafficOnly": True,
        "allowedCopyScope": "PrivateLink",
        "dnsEndpointType": "AzureDnsZone",
    },
}

# azure-mgmt-storage's StorageAccount flattens "properties" and names fields by the spec's
# x-ms-client-name (NetworkRuleSet, IPAddressOrRange, VirtualNetworkResourceId,
# EnableHttpsTrafficOnly); as_dict() writes them in snake_case, az in camelCase.
AZ: dict[str, Any] = {
    "id": ACCOUNT_ID,
    "name": "stapp",
    "type": "Microsoft.Storage/storageAccounts",
    "location": "westeurope",
    "publicNetworkAccess": "Enabled",
    "networkRuleSet": {
        "bypass": "Logging, Metrics",
        "defaultAction": "Deny",
        "ipRules": [{"ipAddressOrRange": "203.0.113.0/24", "action": "Allow"}],
        "virtualNetworkRules": [
            {"virtualNetworkResourceId": SUBNET, "action": "Allow", "state": "NetworkSourceDeleted"}
        ],
        "resourceAccessRules": [{"tenantId": "t", "resourceId": SYNAPSE}],
    },
    "privateEndpointConnections": [
        {
            "id": f"{ACCOUNT_ID}/privateEndpointConnections/pe-blob",
            "privateEndpoint": {"id": "/subscriptions/s/.../privateEndpoints/pe-blob"},
            "privateLinkServiceConnectionState": {"status": "Approved"},
            "provisioningState": "Succeeded",
            "groupIds": ["blob"],
        }
    ],
    "primaryEndpoints": {
        "blob": "https://stapp.blob.core.windows.net/",
        "dfs": "https://stapp.dfs.core.windows.net/",
    },
    "allowBlobPublicAccess": True,
    "allowSharedKeyAccess": False,
    "minimumTlsVersion": "TLS1_1",
    "enableHttpsTrafficOnly": True,
    "allowedCopyScope": "PrivateLink",
    "dnsEndpointType": "AzureDnsZone",
}


def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            "".join(f"_{c.lower()}" if c.isupper() else c for c in key): _snake(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_snake(item) for item in value]
    return value


@pytest.mark.parametrize("shape", ["rest", "az", "sdk as_dict"])
def test_every_shape_gives_the_same_posture(shape: str) -> None:
    document = {"rest": REST, "az": AZ, "sdk as_dict": _snake(AZ)}[shape]
    account = normalise_storage_account(document)
    assert account.problems == ()
    assert account == normalise_storage_account(REST)
    assert account.bypass == {StorageBypass.LOGGING, StorageBypass.METRICS}
    assert [r.raw for r in account.ip_rules] == ["203.0.113.0/24"]
    [subnet] = account.virtual_network_rules
    assert subnet.subnet_id == SUBNET and subnet.state is VirtualNetworkRuleState.NETWORK_SOURCE_DELETED
    [connection] = account.private_endpoint_connections
    assert connection.subresource is StorageSubresource.BLOB and connection.working
    assert account.allow_blob_public_access is True and account.allow_shared_key_access is False
    assert account.minimum_tls_version is TlsVersion.TLS1_1 and account.supports_https_traffic_only is True
    assert account.allowed_copy_scope is AllowedCopyScope.PRIVATE_LINK
    assert account.dns_endpoint_type is DnsEndpointType.AZURE_DNS_ZONE


# -- garbled documents ---------------------------------------------------------------------------------


def garbled(**properties: Any) -> dict[str, Any]:
    document = copy.deepcopy(REST)
    document["properties"].update(properties)
    return document


def acls(**fields: Any) -> dict[str, Any]:
    return garbled(networkAcls={**REST["properties"]["networkAcls"], **fields})


@pytest.mark.parametrize(
    ("document", "unread", "problem"),
    [
        (garbled(publicNetworkAccess=5), "properties.publicNetworkAccess", "expected a string"),
        (
            garbled(publicNetworkAccess="Sometimes"),
            "properties.publicNetworkAccess",
            "'Sometimes', not one of",
        ),
        (garbled(publicNetworkAccess="absent"), "properties.publicNetworkAccess", "not a value Azure writes"),
        (garbled(networkAcls="Deny"), "properties.networkAcls", "expected an object"),
        (acls(defaultAction="Block"), "properties.networkAcls.defaultAction", "'Block', not one of"),
        (acls(bypass="Logging, Everything"), "properties.networkAcls.bypass", "'Everything'"),
        (acls(bypass=["AzureServices"]), "properties.networkAcls.bypass", "comma-separated"),
        (acls(bypass=" , "), "properties.networkAcls.bypass", "empty"),
        (acls(ipRules="203.0.113.0/24"), "properties.networkAcls.ipRules", "expected a list"),
        (
            acls(virtualNetworkRules=[{"id": SUBNET, "state": "Gone"}]),
            "properties.networkAcls.virtualNetworkRules[0].state",
            "'Gone'",
        ),
        (garbled(minimumTlsVersion="TLS1_9"), "properties.minimumTlsVersion", "'TLS1_9'"),
        (garbled(allowSharedKeyAccess="maybe"), "properties.allowSharedKeyAccess", "expected true or false"),
        (garbled(primaryEndpoints=["blob"]), "properties.primaryEndpoints", "expected an object"),
        (
            garbled(
                privateEndpointConnections=[
                    {
                        "id": "c",
                        "properties": {
                            "privateLinkServiceConnectionState": {"status": "Approved"},
                            "groupIds": ["blob", "dfs"],
                        },
                    }
                ]
            ),
            "properties.privateEndpointConnections[0].groupIds",
            "serves one sub-resource",
        ),
    ],
)
def test_a_garbled_field_is_named_and_left_unjudged(
    document: dict[str, Any], unread: str, problem: str
) -> None:
    account = normalise_storage_account(document)
    assert account.could_not_read(unread), account.unread
    assert any(p.startswith(unread) and problem in p for p in account.problems), account.problems


def test_unknown_public_network_access_is_unknown_not_enabled() -> None:
    account = normalise_storage_account(garbled(publicNetworkAccess="Sometimes"))
    assert account.public_network_access is PublicNetworkAccess.UNKNOWN


def test_none_with_other_bypass_members_reads_the_others() -> None:
    account = normalise_storage_account(acls(bypass="None, Logging"))
    assert account.bypass == {StorageBypass.LOGGING} and not account.unread
    assert any("None with other members" in p for p in account.problems)


def test_bypass_none_alone() -> None:
    account = normalise_storage_account(acls(bypass="None"))
    assert account.bypass == {StorageBypass.NONE} and not account.trusted_services_bypass


def test_missing_properties_are_unread_and_defaults_assumed() -> None:
    account = normalise_storage_account({"id": ACCOUNT_ID, "type": "Microsoft.Storage/storageAccounts"})
    assert account.could_not_read("properties.networkAcls.defaultAction")
    assert any("properties are missing" in p for p in account.problems)


def test_an_ip_rule_value_of_the_wrong_type_is_kept_unparsed() -> None:
    account = normalise_storage_account(acls(ipRules=[{"value": 7}]))
    [rule] = account.ip_rules
    assert rule.raw == "7" and rule.value.network is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be a JSON object, not a list"),
        ({"name": "stapp"}, "must have an 'id'"),
        ({"id": 5}, "a number, not a resource id"),
    ],
)
def test_not_an_account_at_all(raw: Any, message: str) -> None:
    with pytest.raises(InvalidStorageAccount, match=message):
        normalise_storage_account(raw)


def test_an_id_of_another_shape_is_noted() -> None:
    account = normalise_storage_account({**REST, "id": "/subscriptions/s/storageAccounts/stapp"})
    assert any("is not a storage account resource id" in p for p in account.problems)


# -- files of either service -----------------------------------------------------------------------


def test_service_is_told_by_type_then_by_id() -> None:
    assert service_of(REST) == "storage"
    assert service_of({"id": ACCOUNT_ID}) == "storage"
    assert (
        service_of({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"})
        == "keyvault"
    )
    assert service_of({"id": "x", "type": "Microsoft.KeyVault/vaults"}) == "keyvault"
    assert service_of({"id": "x"}) is None and service_of([]) is None


def test_a_file_of_vaults_and_accounts(tmp_path: Path) -> None:
    vault = json.loads(Path("examples/vaults/kv-se-demo.json").read_text())["value"][0]
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([vault, REST, {"name": "no-id"}]))
    documents = load_resource_file(mixed)
    assert [v.name for v in documents.vaults] == [vault["name"]]
    assert [a.name for a in documents.accounts] == ["stapp"]
    [problem] = documents.problems
    assert problem.startswith(f"{mixed}: [2]: ") and "must have an 'id'" in problem


def test_a_list_page_of_accounts(tmp_path: Path) -> None:
    page = tmp_path / "page.json"
    page.write_text(json.dumps(example("StorageAccountList")))
    documents = load_resource_file(page)
    assert len(documents.accounts) == 6 and documents.vaults == [] and documents.problems == []


def test_a_file_of_the_wrong_shape_names_both_services(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("5")
    with pytest.raises(VaultFileError, match="expected a vault or storage account object"):
        load_resource_file(bad)
