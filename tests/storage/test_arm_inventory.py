"""StorageArmInventory through the real azure-mgmt-storage and azure-mgmt-network clients against the
lab's ARM over HTTPS: the accounts' listing per subscription, the private endpoints' sub-resources
joined in from one endpoint listing per subscription, and the vault listing's error discipline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.storage import StorageManagementClient

from lab.arm import PRIVATE_ENDPOINTS_ROUTE, STORAGE_LIST_ROUTE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault, LinkFault, RecordingServer, Response
from lab.tls import LabPki
from monitor.model_storage import DefaultAction, PublicNetworkAccess, StorageSubresource
from monitor.sources.arm import ArmConnection
from monitor.sources.storage.arm import StorageArmInventory
from monitor.sources.storage.normalise import normalise_storage_account
from tests.storage.conftest import example

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b2"
SUB_FORBIDDEN = "00000000-0000-0000-0000-0000000000f3"
UNKNOWN_SUB = "00000000-0000-0000-0000-00000000dead"
SUBNET = f"/subscriptions/{SUB_A}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/pe"
FIREWALL = {
    "bypass": "AzureServices",
    "defaultAction": "Deny",
    "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}],
    "virtualNetworkRules": [],
}


def add_accounts(estate: Estate, subscription_id: str, count: int) -> list[str]:
    names = [f"st{subscription_id[-2:]}{index:03d}" for index in range(count)]
    for name in names:
        estate.add_storage_account(
            subscription_id=subscription_id,
            resource_group="rg-data",
            name=name,
            properties={"publicNetworkAccess": "Enabled", "networkAcls": FIREWALL},
        )
    return names


def account_id(subscription_id: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/rg-data"
        f"/providers/Microsoft.Storage/storageAccounts/{name}"
    )


def list_path(subscription_id: str) -> str:
    return f"^/subscriptions/{subscription_id}/providers/Microsoft.Storage/storageAccounts$"


@pytest.fixture
def estate() -> Estate:
    estate = Estate()
    estate.add_subscription(SUB_A)
    estate.add_subscription(SUB_B)
    estate.add_subscription(SUB_FORBIDDEN, forbidden=True)
    return estate


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate(), page_size=4) as emulator:
        yield emulator


@pytest.fixture
def arm(_arm_server: ArmEmulator, estate: Estate) -> Iterator[ArmEmulator]:
    _arm_server.estate = estate
    _arm_server.server.request_counts.clear()
    yield _arm_server
    _arm_server.server.clear_faults()
    _arm_server.clear_link_faults()


@pytest.fixture
def inventory(arm: ArmEmulator, pki: LabPki) -> StorageArmInventory:
    connection = ArmConnection(
        arm_endpoint=arm.url, connection_verify=pki.ca_path, retry_total=2, retry_backoff_factor=0.0
    )
    return StorageArmInventory(LabCredential(), connection)


def test_accounts_are_listed_page_by_page_with_their_properties(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    names = add_accounts(estate, SUB_A, 10)  # page size 4: three pages
    result = inventory.list_accounts([SUB_A])
    assert [p.name for p in result.postures] == names
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    assert arm.server.request_counts[STORAGE_LIST_ROUTE] == 3 == result.requests
    # No account has a private endpoint connection: no endpoint listing is asked for.
    assert arm.server.request_counts[PRIVATE_ENDPOINTS_ROUTE] == 0
    first = result.postures[0]
    assert (first.subscription_id, first.resource_group) == (SUB_A, "rg-data")
    assert first.public_network_access is PublicNetworkAccess.ENABLED
    assert first.default_action is DefaultAction.DENY
    assert first.ip_rules[0].raw == "203.0.113.0/24"
    assert first.minimum_tls_version is not None and first.supports_https_traffic_only is True
    assert set(first.primary_endpoints) >= {StorageSubresource.BLOB, StorageSubresource.DFS}
    assert first.problems == () and first.unread == frozenset()


def test_a_published_example_reads_as_the_normaliser_reads_it(
    estate: Estate, inventory: StorageArmInventory
) -> None:
    """The SDK's models give the response JSON back whole: what comes through ARM is what
    ``kvmon evaluate`` reads from the same document."""
    raw: dict[str, Any] = dict(example("StorageAccountGetProperties"))
    raw["id"] = raw["id"].replace("{subscription-id}", SUB_A)
    estate.storage_accounts[raw["id"].lower()] = raw
    estate.storage_subscriptions.setdefault(SUB_A, []).append(raw["id"].lower())
    result = inventory.list_accounts([SUB_A])
    assert result.errors == []
    [posture] = result.postures
    assert posture == normalise_storage_account(raw)


def test_private_endpoints_name_the_sub_resource_once_per_subscription(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    names = add_accounts(estate, SUB_A, 3)
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[0]),
        subresource="blob",
        address="127.10.1.4",
        subnet_id=SUBNET,
        name="pe-blob",
    )
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[0]), subresource="dfs", address="127.10.1.5", subnet_id=SUBNET, name="pe-dfs"
    )
    estate.add_storage_private_endpoint(
        account_id(SUB_A, names[1]),
        subresource="file",
        address="127.10.1.6",
        subnet_id=SUBNET,
        name="pe-file",
    )
    result = inventory.list_accounts([SUB_A])
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    by_name = {p.name: p for p in result.postures}
    assert [c.subresource for c in by_name[names[0]].private_endpoint_connections] == [
        StorageSubresource.BLOB,
        StorageSubresource.DFS,
    ]
    assert [c.subresource for c in by_name[names[1]].private_endpoint_connections] == [
        StorageSubresource.FILE
    ]
    assert by_name[names[2]].private_endpoint_connections == ()
    assert all(c.working for c in by_name[names[0]].private_endpoint_connections)
    assert arm.server.request_counts[PRIVATE_ENDPOINTS_ROUTE] == 1  # one listing, three accounts


def test_an_endpoint_in_a_subscription_not_scanned_leaves_the_sub_resource_unknown(
    estate: Estate, inventory: StorageArmInventory
) -> None:
    [name] = add_accounts(estate, SUB_A, 1)
    elsewhere = SUBNET.replace(SUB_A, SUB_B)
    estate.add_storage_private_endpoint(
        account_id(SUB_A, name), subresource="blob", address="127.10.1.4", subnet_id=elsewhere
    )
    result = inventory.list_accounts([SUB_A])
    [posture] = result.postures
    [connection] = posture.private_endpoint_connections
    assert connection.subresource is None  # ST018 says it cannot tell
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    both = inventory.list_accounts([SUB_A, SUB_B])
    assert [c.subresource for c in both.postures[0].private_endpoint_connections] == [None]


def test_unreadable_private_endpoints_keep_the_accounts_and_the_subscription_incomplete(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    [name] = add_accounts(estate, SUB_A, 1)
    estate.add_storage_private_endpoint(
        account_id(SUB_A, name), subresource="blob", address="127.10.1.4", subnet_id=SUBNET
    )
    arm.server.inject(
        f"^/subscriptions/{SUB_A}/providers/Microsoft.Network/privateEndpoints$",
        Fault(status=403, times=0, body={"error": {"code": "AuthorizationFailed", "message": "no read"}}),
    )
    result = inventory.list_accounts([SUB_A])
    [posture] = result.postures
    assert [c.subresource for c in posture.private_endpoint_connections] == [None]
    [error] = result.errors
    assert (error.source, error.scope, error.code) == ("arm", SUB_A, "403")
    assert error.message.startswith("private endpoints: AuthorizationFailed")
    assert result.subscriptions_complete == set()


def test_forbidden_and_unknown_subscriptions_are_errors_and_the_rest_goes_on(
    estate: Estate, inventory: StorageArmInventory
) -> None:
    names_a = add_accounts(estate, SUB_A, 2)
    names_b = add_accounts(estate, SUB_B, 2)
    result = inventory.list_accounts([SUB_A, SUB_FORBIDDEN, UNKNOWN_SUB, SUB_B])
    assert [p.name for p in result.postures] == names_a + names_b
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    errors = {e.scope: e for e in result.errors}
    assert set(errors) == {SUB_FORBIDDEN, UNKNOWN_SUB}
    assert errors[SUB_FORBIDDEN].code == "403"
    assert "Microsoft.Storage/storageAccounts/read" in errors[SUB_FORBIDDEN].message
    assert errors[UNKNOWN_SUB].code == "404"
    assert "SubscriptionNotFound" in errors[UNKNOWN_SUB].message


def test_throttled_past_the_retries_is_an_error_for_that_subscription_only(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    add_accounts(estate, SUB_A, 2)
    names_b = add_accounts(estate, SUB_B, 2)
    arm.server.inject(list_path(SUB_A), Fault(status=429, times=0))
    result = inventory.list_accounts([SUB_A, SUB_B])
    assert [p.name for p in result.postures] == names_b
    [error] = result.errors
    assert (error.scope, error.code) == (SUB_A, "429")
    assert result.subscriptions_complete == {SUB_B}
    assert arm.server.request_counts[STORAGE_LIST_ROUTE] == 1 + inventory.connection.retry_total + 1


def test_a_link_to_another_host_is_not_followed(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    names = add_accounts(estate, SUB_A, 6)  # two pages
    with RecordingServer(answer=Response(200, {"value": []})) as elsewhere:
        arm.mislink(SUB_A, LinkFault.FOREIGN, elsewhere=elsewhere.url)
        result = inventory.list_accounts([SUB_A])
        assert elsewhere.requests == []
    assert [p.name for p in result.postures] == names[:4]  # the page ARM served is kept
    [error] = result.errors
    assert error.scope == SUB_A and "stopped" in error.message
    assert result.subscriptions_complete == set()


def test_a_listing_that_loops_stops_and_is_not_complete(
    estate: Estate, arm: ArmEmulator, inventory: StorageArmInventory
) -> None:
    add_accounts(estate, SUB_A, 6)
    arm.mislink(SUB_A, LinkFault.SELF)
    result = inventory.list_accounts([SUB_A])
    [error] = result.errors
    assert error.scope == SUB_A and "storage accounts" in error.message
    assert result.subscriptions_complete == set()


def test_an_account_without_an_id_hides_no_other(estate: Estate, inventory: StorageArmInventory) -> None:
    names = add_accounts(estate, SUB_A, 2)
    estate.storage_accounts["broken"] = {"name": "broken", "properties": {}}
    estate.storage_subscriptions[SUB_A].insert(1, "broken")
    result = inventory.list_accounts([SUB_A])
    assert [p.name for p in result.postures] == names
    [error] = result.errors
    assert error.scope == SUB_A and "storage account #1 of the list is unusable" in error.message
    assert result.subscriptions_complete == set()


def test_the_lab_serves_one_account_as_get_properties_reads_it(
    estate: Estate, arm: ArmEmulator, pki: LabPki
) -> None:
    """``storage_accounts.get_properties`` through the real client: the account, or ARM's 404."""
    [name] = add_accounts(estate, SUB_A, 1)
    options = ArmConnection(arm_endpoint=arm.url, connection_verify=pki.ca_path).client_options()
    with StorageManagementClient(LabCredential(), SUB_A, **options) as client:
        account = client.storage_accounts.get_properties(resource_group_name="rg-data", account_name=name)
        assert account.as_dict() == estate.storage_account(account_id(SUB_A, name))
        assert account.properties is not None and account.properties.network_rule_set is not None
        assert account.properties.network_rule_set.default_action == "Deny"
        with pytest.raises(ResourceNotFoundError) as raised:
            client.storage_accounts.get_properties(resource_group_name="rg-data", account_name="stnone")
    assert raised.value.error is not None and raised.value.error.code == "ResourceNotFound"
