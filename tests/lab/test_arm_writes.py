"""The lab ARM's deletes and private endpoint approvals, through the real azure-mgmt-keyvault client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline import PipelineResponse
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (
    PrivateEndpointConnection,
    PrivateEndpointConnectionProperties,
    PrivateLinkServiceConnectionState,
)

from lab.arm import CONNECTION_PUT_ROUTE, DELETE_ROUTE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, PUBLIC_INGRESS, WALKTHROUGH_SUBSCRIPTION, Estate, walkthrough_estate
from lab.tls import LabPki

RG = "rg-walkthrough"
PL_CLIENT = "127.10.2.5"  # a VM in the privateLink subnet
PL_ENDPOINT = "127.10.2.10"


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate()) as emulator:
        yield emulator


@pytest.fixture
def world() -> Estate:
    return walkthrough_estate()


@pytest.fixture
def arm(_arm_server: ArmEmulator, world: Estate) -> ArmEmulator:
    _arm_server.estate = world
    _arm_server.server.request_counts.clear()
    return _arm_server


@pytest.fixture
def client(arm: ArmEmulator, pki: LabPki) -> Iterator[KeyVaultManagementClient]:
    with KeyVaultManagementClient(
        LabCredential(),
        WALKTHROUGH_SUBSCRIPTION,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=pki.ca_path,
        retry_total=0,
    ) as sdk:
        yield sdk


def _private_path_admitted(world: Estate) -> bool:
    key = world.vault_key("kv-pl-demo")
    assert key is not None
    return world.decide(key, client_address=PL_CLIENT, local_address=PL_ENDPOINT).admitted


def test_delete_removes_the_vault_and_a_second_delete_is_204(
    world: Estate, arm: ArmEmulator, client: KeyVaultManagementClient
) -> None:
    statuses: list[int] = []

    def status(response: PipelineResponse[Any, Any], *_: object) -> None:
        statuses.append(response.http_response.status_code)

    client.vaults.delete(RG, "kv-se-demo", cls=status)
    assert world.vault_by_name("kv-se-demo") is None
    assert [v.name for v in client.vaults.list_by_subscription()] == ["kv-pl-demo"]
    with pytest.raises(ResourceNotFoundError):
        client.vaults.get(RG, "kv-se-demo")
    client.vaults.delete(RG, "kv-se-demo", cls=status)
    assert statuses == [200, 204]
    assert arm.server.request_counts[DELETE_ROUTE] == 2
    assert world.resolve("kv-se-demo.vault.lab.test", source_address=INTERNET_CLIENT) is None


def _state(status: str, description: str) -> PrivateEndpointConnection:
    return PrivateEndpointConnection(
        properties=PrivateEndpointConnectionProperties(
            private_link_service_connection_state=PrivateLinkServiceConnectionState(
                status=status, description=description
            )
        )
    )


def test_rejecting_then_approving_a_connection_closes_then_reopens_the_private_path(
    world: Estate, arm: ArmEmulator, client: KeyVaultManagementClient
) -> None:
    assert _private_path_admitted(world)
    rejected = client.private_endpoint_connections.put(
        RG, "kv-pl-demo", "pe-kv-pl-demo-conn", _state("Rejected", "not ours")
    )
    assert rejected.name == "pe-kv-pl-demo-conn"
    assert rejected.properties.private_link_service_connection_state.status == "Rejected"
    assert rejected.properties.private_link_service_connection_state.description == "not ours"
    assert not _private_path_admitted(world)
    # DNS follows: with no approved connection the name no longer goes through privatelink.
    resolution = world.resolve("kv-pl-demo.vault.lab.test", source_address=PL_CLIENT)
    assert resolution is not None and resolution.addresses == (PUBLIC_INGRESS,)

    client.private_endpoint_connections.put(RG, "kv-pl-demo", "pe-kv-pl-demo-conn", _state("Approved", "ok"))
    [listed] = client.private_endpoint_connections.list_by_resource(RG, "kv-pl-demo")
    assert listed.properties.private_link_service_connection_state.status == "Approved"
    assert _private_path_admitted(world)
    assert arm.server.request_counts[CONNECTION_PUT_ROUTE] == 2


def test_a_connection_put_for_no_such_connection_or_with_no_status_is_refused(
    client: KeyVaultManagementClient,
) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        client.private_endpoint_connections.put(RG, "kv-pl-demo", "pe-other-conn", _state("Approved", ""))
    assert missing.value.error is not None
    assert missing.value.error.code == "PrivateEndpointConnectionNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.private_endpoint_connections.put(RG, "kv-absent", "pe-kv-pl-demo-conn", _state("Approved", ""))
    with pytest.raises(HttpResponseError) as pending:
        client.private_endpoint_connections.put(RG, "kv-pl-demo", "pe-kv-pl-demo-conn", _state("Pending", ""))
    assert pending.value.status_code == 400
