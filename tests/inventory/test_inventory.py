"""ArmInventory through the real azure-mgmt-keyvault client against the lab's ARM over HTTPS."""

from __future__ import annotations

import time

import pytest

from lab.arm import LIST_ROUTE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault
from lab.tls import LabPki
from monitor.sources.arm import ArmInventory, arm_credential_scope
from tests.inventory.conftest import SUB_A, SUB_B, SUB_FORBIDDEN, add_vaults

UNKNOWN_SUB = "00000000-0000-0000-0000-00000000dead"


def list_path(subscription_id: str) -> str:
    return f"^/subscriptions/{subscription_id}/providers/Microsoft.KeyVault/vaults$"


def test_pages_are_followed_through_next_link(
    estate: Estate, arm: ArmEmulator, inventory: ArmInventory
) -> None:
    names = add_vaults(estate, SUB_A, 10)  # page size 4: three pages
    result = inventory.list_vaults([SUB_A])
    assert [p.name for p in result.postures] == names
    assert result.errors == []
    assert result.subscriptions_complete == {SUB_A}
    assert arm.server.request_counts[LIST_ROUTE] == 3
    assert result.requests == 3
    first = result.postures[0]
    assert (first.subscription_id, first.resource_group, first.default_action) == (SUB_A, "rg-app", "Deny")
    assert str(first.ip_rules[0].network) == "203.0.113.0/24"


def test_subscriptions_are_read_concurrently_and_reported_in_order(
    estate: Estate, inventory: ArmInventory
) -> None:
    names_b = add_vaults(estate, SUB_B, 5)
    names_a = add_vaults(estate, SUB_A, 6)
    result = inventory.list_vaults([SUB_B, SUB_A, SUB_B.upper()])  # the duplicate is read once
    assert [p.name for p in result.postures] == names_b + names_a
    assert result.subscriptions_complete == {SUB_A, SUB_B}


def test_throttling_waits_as_retry_after_says_then_succeeds(
    estate: Estate, arm: ArmEmulator, inventory: ArmInventory
) -> None:
    names = add_vaults(estate, SUB_A, 3)
    arm.server.inject(
        list_path(SUB_A),
        Fault(
            status=429,
            headers={"Retry-After": "1"},
            body={"error": {"code": "TooManyRequests", "message": "throttled"}},
        ),
    )
    started = time.monotonic()
    result = inventory.list_vaults([SUB_A])
    waited = time.monotonic() - started
    assert [p.name for p in result.postures] == names
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    assert arm.server.request_counts[LIST_ROUTE] == 2
    # A lower bound, not a speed check: the retry policy's own backoff before a first retry is
    # zero, so only the honoured Retry-After can account for a full second.
    assert waited >= 1.0


def test_throttled_past_the_retries_is_an_error_for_that_subscription_only(
    estate: Estate, arm: ArmEmulator, inventory: ArmInventory
) -> None:
    add_vaults(estate, SUB_A, 2)
    names_b = add_vaults(estate, SUB_B, 2)
    arm.server.inject(list_path(SUB_A), Fault(status=429, times=0))
    result = inventory.list_vaults([SUB_A, SUB_B])
    assert [p.name for p in result.postures] == names_b
    [error] = result.errors
    assert (error.source, error.scope, error.code) == ("arm", SUB_A, "429")
    assert result.subscriptions_complete == {SUB_B}
    assert arm.server.request_counts[LIST_ROUTE] == 1 + inventory.connection.retry_total + 1


def test_forbidden_and_unknown_subscriptions_are_recorded_and_the_rest_goes_on(
    estate: Estate, inventory: ArmInventory
) -> None:
    names_a = add_vaults(estate, SUB_A, 2)
    names_b = add_vaults(estate, SUB_B, 2)
    result = inventory.list_vaults([SUB_A, SUB_FORBIDDEN, UNKNOWN_SUB, SUB_B])
    assert [p.name for p in result.postures] == names_a + names_b
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    errors = {e.scope: e for e in result.errors}
    assert set(errors) == {SUB_FORBIDDEN, UNKNOWN_SUB}
    assert errors[SUB_FORBIDDEN].code == "403"
    assert errors[SUB_FORBIDDEN].message.startswith("AuthorizationFailed: ")
    assert errors[UNKNOWN_SUB].code == "404"
    assert errors[UNKNOWN_SUB].message.startswith("SubscriptionNotFound: ")
    assert all(e.source == "arm" for e in result.errors)


def test_server_error_then_success(estate: Estate, arm: ArmEmulator, inventory: ArmInventory) -> None:
    names = add_vaults(estate, SUB_A, 5)
    arm.server.inject(list_path(SUB_A), Fault(status=500, body={"error": {"code": "InternalServerError"}}))
    result = inventory.list_vaults([SUB_A])
    assert [p.name for p in result.postures] == names
    assert result.errors == [] and result.subscriptions_complete == {SUB_A}
    assert result.requests == arm.server.request_counts[LIST_ROUTE] == 3  # failed + two pages


def test_connection_reset_then_success(estate: Estate, arm: ArmEmulator, inventory: ArmInventory) -> None:
    names = add_vaults(estate, SUB_A, 2)
    arm.server.inject(list_path(SUB_A), Fault(reset=True))
    result = inventory.list_vaults([SUB_A])
    assert [p.name for p in result.postures] == names
    assert result.subscriptions_complete == {SUB_A}


def test_unreachable_arm_is_an_error_per_subscription(pki: LabPki, estate: Estate) -> None:
    with ArmEmulator(estate) as arm:
        url = arm.url
    inventory = ArmInventory(LabCredential(), arm_endpoint=url, connection_verify=pki.ca_path, retry_total=0)
    result = inventory.list_vaults([SUB_A, SUB_B])
    assert result.postures == [] and result.subscriptions_complete == set()
    assert [(e.scope, e.code) for e in result.errors] == [(SUB_A, None), (SUB_B, None)]
    assert all(e.message.startswith("ServiceRequestError: ") for e in result.errors)


def test_a_stalled_answer_times_out_and_is_recorded(
    estate: Estate, arm: ArmEmulator, pki: LabPki, inventory: ArmInventory
) -> None:
    add_vaults(estate, SUB_A, 1)
    names_b = add_vaults(estate, SUB_B, 1)
    arm.server.inject(list_path(SUB_A), Fault(delay_s=1.0, status=200, times=0))
    impatient = ArmInventory(
        LabCredential(), arm_endpoint=arm.url, connection_verify=pki.ca_path, timeout_s=0.2, retry_total=1
    )
    result = impatient.list_vaults([SUB_A, SUB_B])
    assert [p.name for p in result.postures] == names_b
    [error] = result.errors
    assert error.scope == SUB_A and error.code is None
    assert error.message.startswith("ServiceResponseTimeoutError: ") and "timed out" in error.message
    assert result.subscriptions_complete == {SUB_B}


def test_vault_with_null_network_acls(estate: Estate, inventory: ArmInventory) -> None:
    vault = estate.add_vault(subscription_id=SUB_A, resource_group="rg", name="kv-null-acls")
    estate.vaults[vault["id"].lower()]["properties"]["networkAcls"] = None
    [posture] = inventory.list_vaults([SUB_A]).postures
    assert posture.network_acls_present is False
    assert (posture.default_action, posture.bypass) == ("Allow", "AzureServices")
    assert posture.publicly_open
    assert posture.problems == ()


def test_lower_cased_ids_and_values(estate: Estate, inventory: ArmInventory) -> None:
    vault = estate.add_vault(
        subscription_id=SUB_A,
        resource_group="RG-Mixed",
        name="kv-lower",
        public_network_access="disabled",
        network_acls={"defaultAction": "deny", "bypass": "none"},
    )
    estate.vaults[vault["id"].lower()]["id"] = vault["id"].lower()
    [posture] = inventory.list_vaults([SUB_A]).postures
    assert posture.id == vault["id"].lower()
    assert (posture.subscription_id, posture.resource_group, posture.name) == (SUB_A, "rg-mixed", "kv-lower")
    assert posture.key == vault["id"].lower()
    assert (posture.public_network_access, posture.default_action, posture.bypass) == (
        "Disabled",
        "Deny",
        "None",
    )
    assert posture.problems == ()


def test_malformed_vaults_in_a_page_hide_no_others(estate: Estate, inventory: ArmInventory) -> None:
    names = add_vaults(estate, SUB_A, 6)
    add_vaults(estate, SUB_B, 1)
    # Straight into the estate: ARM answering with entries no vault could have.
    estate.vaults["no-id"] = {"name": "kv-no-id", "properties": {}}
    estate.vaults["odd-types"] = {
        "id": f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-odd",
        "name": "kv-odd",
        "properties": {"networkAcls": ["Deny"], "publicNetworkAccess": 1},
    }
    estate.subscriptions[SUB_A][2:2] = ["no-id", "odd-types"]
    result = inventory.list_vaults([SUB_A, SUB_B])
    by_sub = [p.name for p in result.postures if p.subscription_id == SUB_A]
    assert by_sub == [*names[:2], "kv-odd", *names[2:]]
    odd = next(p for p in result.postures if p.name == "kv-odd")
    assert odd.publicly_open and len(odd.problems) == 2
    [error] = result.errors
    assert error.scope == SUB_A and error.code is None
    assert "vault #2 of the list is unusable: a vault must have an 'id'" in error.message
    assert result.subscriptions_complete == {SUB_B}


def test_find_vault_by_name_case_insensitively(estate: Estate, inventory: ArmInventory) -> None:
    add_vaults(estate, SUB_A, 3)
    names_b = add_vaults(estate, SUB_B, 3)
    result = inventory.find_vault(names_b[1].upper(), [SUB_A, SUB_B, SUB_FORBIDDEN])
    assert [p.name for p in result.postures] == [names_b[1]]
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    assert [e.scope for e in result.errors] == [SUB_FORBIDDEN]


def test_private_endpoint_connections_come_with_the_vault(estate: Estate, inventory: ArmInventory) -> None:
    vault = estate.add_vault(subscription_id=SUB_A, resource_group="rg", name="kv-pl")
    subnet = f"/subscriptions/{SUB_A}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/v/subnets/pl"
    endpoint_id = estate.add_private_endpoint(
        vault["id"], address="127.10.2.10", subnet_id=subnet, status="Pending"
    )
    [posture] = inventory.list_vaults([SUB_A]).postures
    [connection] = posture.private_endpoint_connections
    assert connection.private_endpoint_id == endpoint_id
    assert (connection.status, connection.provisioning_state) == ("Pending", "Succeeded")


def test_token_is_asked_for_the_arm_endpoint_scope(arm: ArmEmulator, inventory: ArmInventory) -> None:
    assert inventory.connection.credential_scope == f"{arm.url}/.default"


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://management.azure.com", "https://management.azure.com/.default"),
        ("https://management.azure.com/", "https://management.azure.com/.default"),
        ("https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
        ("https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/.default"),
        (
            "https://management.local.azurestack.external",
            "https://management.local.azurestack.external/.default",
        ),
    ],
)
def test_credential_scope_per_cloud(endpoint: str, scope: str) -> None:
    assert arm_credential_scope(endpoint) == scope


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:1", "management.azure.com", ""])
def test_endpoint_must_be_https(endpoint: str) -> None:
    with pytest.raises(ValueError, match="https URL"):
        ArmInventory(LabCredential(), arm_endpoint=endpoint)


def test_blank_subscription_id_is_refused(inventory: ArmInventory) -> None:
    with pytest.raises(ValueError, match="subscription id must not be empty"):
        inventory.list_vaults([SUB_A, " "])


def test_subscription_ids_compare_case_insensitively(estate: Estate, inventory: ArmInventory) -> None:
    add_vaults(estate, SUB_A, 2)
    result = inventory.list_vaults([SUB_A.upper()])
    assert result.subscriptions_complete == {SUB_A}
    assert all(p.subscription_id in result.subscriptions_complete for p in result.postures)
    assert len(result.postures) == 2
