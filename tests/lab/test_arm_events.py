"""Every write the lab ARM serves is announced as the subscription's system topic announces it
(Microsoft.Resources.ResourceWriteSuccess / ResourceDeleteSuccess, Azure's published shape)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (
    PrivateEndpointConnection,
    PrivateEndpointConnectionProperties,
    PrivateLinkServiceConnectionState,
    Sku,
    VaultCreateOrUpdateParameters,
    VaultPatchParameters,
    VaultPatchProperties,
    VaultProperties,
)

from lab.arm import CONNECTION_WRITE, LAB_WRITER_ROLE, VAULT_DELETE, VAULT_WRITE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import LAB_TENANT, WALKTHROUGH_SUBSCRIPTION, Estate, walkthrough_estate
from lab.eventgrid import EventSchema, PublishedEvent, ResourceEventType
from lab.tls import LabPki

RG = "rg-walkthrough"
VAULT_ID = f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-se-demo"
MALLORY_OID = "0f1e2d3c-0000-4000-8000-0000000000aa"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
MALLORY = {"upn": "mallory@contoso.example", "name": "Mallory Example", "ipaddr": "203.0.113.7"}
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate()) as emulator:
        yield emulator


@pytest.fixture
def published(_arm_server: ArmEmulator) -> Iterator[list[PublishedEvent]]:
    events: list[PublishedEvent] = []
    _arm_server.estate = walkthrough_estate()
    _arm_server.publish = events.append
    yield events
    _arm_server.publish = None


@pytest.fixture
def arm(_arm_server: ArmEmulator, published: list[PublishedEvent]) -> ArmEmulator:
    return _arm_server


def _client(arm: ArmEmulator, pki: LabPki, credential: LabCredential) -> KeyVaultManagementClient:
    return KeyVaultManagementClient(
        credential,
        WALKTHROUGH_SUBSCRIPTION,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=pki.ca_path,
        polling_interval=0,
        retry_total=0,
    )


@pytest.fixture
def mallory(arm: ArmEmulator, pki: LabPki) -> Iterator[KeyVaultManagementClient]:
    """A person signed in to the Azure CLI."""
    with _client(arm, pki, LabCredential(object_id=MALLORY_OID, app_id=AZURE_CLI, claims=MALLORY)) as sdk:
        yield sdk


def _open_the_firewall(client: KeyVaultManagementClient, **kwargs: object) -> None:
    acls = client.vaults.get(RG, "kv-se-demo").properties.network_acls
    acls.default_action = "Allow"
    client.vaults.update(
        RG, "kv-se-demo", VaultPatchParameters(properties=VaultPatchProperties(network_acls=acls)), **kwargs
    )


def test_an_update_is_a_write_success_naming_the_person_their_address_and_the_request(
    arm: ArmEmulator, published: list[PublishedEvent], mallory: KeyVaultManagementClient
) -> None:
    before = dt.datetime.now(dt.UTC)
    _open_the_firewall(
        mallory, headers={"x-ms-correlation-request-id": "c0ffee00-0000-4000-8000-000000000001"}
    )
    [event] = published  # the GET announced nothing
    assert event.event_type is ResourceEventType.WRITE_SUCCESS
    assert (event.subject, event.topic) == (VAULT_ID, f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}")
    assert before <= event.event_time <= dt.datetime.now(dt.UTC)
    data = event.data
    assert data["resourceUri"] == VAULT_ID
    assert (data["operationName"], data["status"]) == (VAULT_WRITE, "Succeeded")
    assert (data["resourceProvider"], data["subscriptionId"], data["tenantId"]) == (
        "Microsoft.KeyVault",
        WALKTHROUGH_SUBSCRIPTION,
        LAB_TENANT,
    )
    assert data["correlationId"] == "c0ffee00-0000-4000-8000-000000000001"
    claims = data["claims"]
    assert claims[UPN_CLAIM] == "mallory@contoso.example"
    assert (claims["name"], claims["ipaddr"], claims["appid"]) == (
        "Mallory Example",
        "203.0.113.7",
        AZURE_CLI,
    )
    assert claims[OBJECT_ID_CLAIM] == MALLORY_OID
    assert all(isinstance(value, str) for value in claims.values())  # iat and exp too, as ARM gives them
    assert data["authorization"] == {
        "scope": VAULT_ID,
        "action": VAULT_WRITE,
        "evidence": {"role": LAB_WRITER_ROLE, "principalId": MALLORY_OID, "principalType": "User"},
    }
    request = data["httpRequest"]
    assert (request["method"], request["clientIpAddress"]) == ("PATCH", "127.0.0.1")
    assert request["url"].startswith(f"{arm.url}{VAULT_ID}?api-version=")
    assert request["clientRequestId"]  # the SDK's x-ms-client-request-id


def test_a_create_carries_no_request_and_a_replace_does(
    published: list[PublishedEvent], arm: ArmEmulator, pki: LabPki
) -> None:
    parameters = VaultCreateOrUpdateParameters(
        location="westeurope",
        properties=VaultProperties(tenant_id=LAB_TENANT, sku=Sku(family="A", name="standard")),
    )
    with _client(arm, pki, LabCredential()) as pipeline:
        pipeline.vaults.begin_create_or_update(RG, "kv-new", parameters).result()
        pipeline.vaults.begin_create_or_update(RG, "kv-new", parameters).result()
    created, replaced = published
    assert created.subject == replaced.subject == VAULT_ID.replace("kv-se-demo", "kv-new")
    assert "httpRequest" not in created.data and replaced.data["httpRequest"]["method"] == "PUT"
    evidence = created.data["authorization"]["evidence"]
    assert evidence["principalType"] == "ServicePrincipal"  # an application's token
    assert created.data["correlationId"] != replaced.data["correlationId"]


def test_a_connection_approval_names_the_connection_and_a_delete_is_a_delete_success(
    published: list[PublishedEvent], mallory: KeyVaultManagementClient
) -> None:
    state = PrivateLinkServiceConnectionState(status="Rejected", description="not ours")
    mallory.private_endpoint_connections.put(
        RG,
        "kv-pl-demo",
        "pe-kv-pl-demo-conn",
        PrivateEndpointConnection(
            properties=PrivateEndpointConnectionProperties(private_link_service_connection_state=state)
        ),
    )
    mallory.vaults.delete(RG, "kv-se-demo")
    mallory.vaults.delete(RG, "kv-se-demo")  # already gone: 204, still a succeeded delete
    connection, deleted, deleted_again = published
    connection_id = (
        VAULT_ID.replace("kv-se-demo", "kv-pl-demo") + "/privateEndpointConnections/pe-kv-pl-demo-conn"
    )
    assert (connection.subject, connection.data["resourceUri"]) == (connection_id, connection_id)
    assert connection.data["operationName"] == CONNECTION_WRITE
    assert connection.data["authorization"]["scope"] == connection_id
    assert connection.data["httpRequest"]["method"] == "PUT"
    for event in (deleted, deleted_again):
        assert event.event_type is ResourceEventType.DELETE_SUCCESS
        assert (event.subject, event.data["operationName"]) == (VAULT_ID, VAULT_DELETE)
        assert event.data["httpRequest"]["method"] == "DELETE"


def test_refused_writes_and_reads_announce_nothing(
    arm: ArmEmulator, published: list[PublishedEvent], mallory: KeyVaultManagementClient, pki: LabPki
) -> None:
    with pytest.raises(ResourceNotFoundError):
        mallory.vaults.update(RG, "kv-absent", VaultPatchParameters(properties=VaultPatchProperties()))
    list(mallory.vaults.list_by_subscription())
    list(mallory.private_endpoint_connections.list_by_resource(RG, "kv-pl-demo"))
    unauthenticated = requests.patch(
        f"{arm.url}{VAULT_ID}?api-version=1", json={}, verify=pki.ca_path, timeout=10
    )
    assert unauthenticated.status_code == 401
    assert published == []


def test_without_a_publisher_a_write_answers_as_before_with_a_correlation_id(
    arm: ArmEmulator, mallory: KeyVaultManagementClient
) -> None:
    arm.publish = None
    answers: list[str] = []
    _open_the_firewall(
        mallory,
        cls=lambda response, *_: answers.append(
            response.http_response.headers["x-ms-correlation-request-id"]
        ),
    )
    assert len(answers) == 1 and answers[0]


def test_both_schemas_have_the_published_fields(
    published: list[PublishedEvent], mallory: KeyVaultManagementClient
) -> None:
    _open_the_firewall(mallory)
    [event] = published
    grid = event.rendered(EventSchema.EVENT_GRID)
    assert list(grid) == [
        "subject",
        "eventType",
        "eventTime",
        "id",
        "data",
        "dataVersion",
        "metadataVersion",
        "topic",
    ]
    assert (grid["eventType"], grid["dataVersion"], grid["metadataVersion"]) == (
        "Microsoft.Resources.ResourceWriteSuccess",
        "2",
        "1",
    )
    cloud = event.rendered(EventSchema.CLOUD_EVENTS)
    assert list(cloud) == ["source", "subject", "type", "time", "id", "data", "specversion"]
    assert (cloud["source"], cloud["specversion"]) == (grid["topic"], "1.0")
    assert cloud["time"] == grid["eventTime"]
    # Azure's clock format: seven fractional digits and a Z.
    assert (
        dt.datetime.strptime(grid["eventTime"][:26] + "+0000", "%Y-%m-%dT%H:%M:%S.%f%z") == event.event_time
    )
    assert grid["eventTime"].endswith("0Z") and len(grid["eventTime"].split(".")[1]) == 8
    assert grid["data"] == cloud["data"] == dict(event.data)
