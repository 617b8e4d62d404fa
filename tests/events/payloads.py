"""Event payloads in the shape Azure publishes them (azure-rest-api-specs, eventgrid data-plane,
Microsoft.Resources 2018-01-01 examples): every claim of the published token is present, so a test
can tell that kvmon keeps only the few it names."""

from __future__ import annotations

import copy
from typing import Any

SUB = "5f0c3b8e-2d7a-4c1e-9b6f-0a1d2e3f4a5b"
OTHER_SUB = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RG = "rg-Secrets"
VAULT = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-Payments"
OTHER_VAULT = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-orders"
CONNECTION = f"{VAULT}/privateEndpointConnections/pe-payments.7c1f2a"
STORAGE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/stpayments"

ALICE_OID = "2b4c6d8e-1f3a-4b5c-8d7e-9f0a1b2c3d4e"
PIPELINE_APP = "3c5d7e9f-2a4b-4c6d-9e8f-0a1b2c3d4e5f"
PIPELINE_OID = "4d6e8f0a-3b5c-4d7e-8f9a-1b2c3d4e5f6a"

UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def user_claims(*, ipaddr: str = "198.51.100.23") -> dict[str, str]:
    """A user's token as ARM saw it (the published example's claim set)."""
    return {
        "aud": "https://management.core.windows.net/",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": "1721414284",
        "nbf": "1721414284",
        "exp": "1721418184",
        "_claim_names": '{"groups":"src1"}',
        "_claim_sources": '{"src1":{"endpoint":"https://graph.windows.net/x/users/y/getMemberObjects"}}',
        "http://schemas.microsoft.com/claims/authnclassreference": "1",
        "aio": "AVQAq/8TAAAA-secret-looking-token-content",
        "http://schemas.microsoft.com/claims/authnmethodsreferences": "rsa,mfa",
        "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",  # Azure CLI
        "appidacr": "0",
        "http://schemas.microsoft.com/2012/01/devicecontext/claims/identifier": "d1e2f3a4-0000-4000-8000-000000000001",
        "e_exp": "262800",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": "Lind",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": "Alice",
        "ipaddr": ipaddr,
        "name": "Alice Lind",
        OID_CLAIM: ALICE_OID,
        "onprem_sid": "S-1-5-21-0000000000-0000000000-0000000000-1001",
        "puid": "10030000A1B2C3D4",
        "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": "q9W8e7R6t5Y4u3I2o1P0",
        "http://schemas.microsoft.com/identity/claims/tenantid": TENANT,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "alice@contoso.com",
        UPN_CLAIM: "alice@contoso.com",
        "uti": "rT5yU6iO7pA8sD9fG0hJ",
        "ver": "1.0",
    }


def service_principal_claims() -> dict[str, str]:
    """An application's token (client credentials): no name, no UPN, no ipaddr for a managed identity."""
    return {
        "aud": "https://management.azure.com/",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": "1721414284",
        "nbf": "1721414284",
        "exp": "1721500984",
        "aio": "E2ZgYJj-secret-looking",
        "appid": PIPELINE_APP,
        "appidacr": "2",
        "http://schemas.microsoft.com/identity/claims/identityprovider": f"https://sts.windows.net/{TENANT}/",
        OID_CLAIM: PIPELINE_OID,
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": PIPELINE_OID,
        "http://schemas.microsoft.com/identity/claims/tenantid": TENANT,
        "uti": "aB1cD2eF3gH4iJ5kL6mN",
        "ver": "1.0",
        "xms_mirid": "/subscriptions/x/resourcegroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z",
    }


def resource_data(
    *,
    resource: str = VAULT,
    operation: str = "Microsoft.KeyVault/vaults/write",
    status: str = "Succeeded",
    claims: dict[str, str] | None = None,
    correlation_id: str = "0c3e5a7b-9d1f-4a2b-8c4d-6e8f0a1b2c3d",
    client_ip: str | None = "203.0.113.7",
    method: str = "PUT",
    evidence: dict[str, str] | None = None,
) -> dict[str, Any]:
    provider = operation.split("/")[0]
    data: dict[str, Any] = {
        "authorization": {
            "scope": resource,
            "action": operation,
            "evidence": evidence
            if evidence is not None
            else {
                "role": "Key Vault Contributor",
                "roleAssignmentScope": f"/subscriptions/{SUB}",
                "roleAssignmentId": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "roleDefinitionId": "f25e0fa2a7c84377a0b47b89f4d6b7de",
                "principalId": ALICE_OID.replace("-", ""),
                "principalType": "User",
            },
        },
        "claims": claims if claims is not None else user_claims(),
        "correlationId": correlation_id,
        "resourceProvider": provider,
        "resourceUri": resource,
        "operationName": operation,
        "status": status,
        "subscriptionId": SUB,
        "tenantId": TENANT,
    }
    if client_ip is not None:  # ARM adds httpRequest on updates and deletes
        data["httpRequest"] = {
            "clientRequestId": "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
            "clientIpAddress": client_ip,
            "method": method,
            "url": f"https://management.azure.com{resource}?api-version=2023-07-01",
        }
    return data


def event_grid(
    *,
    event_id: str = "4db48cba-50a2-455a-93b4-de41a3b5b7f6",
    event_type: str = "Microsoft.Resources.ResourceWriteSuccess",
    event_time: str = "2026-12-02T10:00:04.6117357Z",
    subject: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    body = resource_data(**data)
    return {
        "subject": subject or body["resourceUri"],
        "eventType": event_type,
        "eventTime": event_time,
        "id": event_id,
        "data": body,
        "dataVersion": "2",
        "metadataVersion": "1",
        "topic": f"/subscriptions/{SUB}",
    }


def cloud_event(
    *,
    event_id: str = "19a69642-1aad-4a96-a5ab-8d05494513ce",
    event_type: str = "Microsoft.Resources.ResourceWriteSuccess",
    event_time: str = "2026-12-02T10:00:12.7638810Z",
    spec_version_key: str = "specversion",
    **data: Any,
) -> dict[str, Any]:
    body = resource_data(**data)
    return {
        "source": f"/subscriptions/{SUB}",
        "subject": body["resourceUri"],
        "type": event_type,
        "time": event_time,
        "id": event_id,
        "data": body,
        spec_version_key: "1.0",
    }


def dead_lettered(event: dict[str, Any]) -> dict[str, Any]:
    """An Event Grid event as the dead-letter blob holds it."""
    record = copy.deepcopy(event)
    record.update(
        {
            "deadLetterReason": "MaxDeliveryAttemptsExceeded",
            "deliveryAttempts": 30,
            "lastDeliveryOutcome": "TimedOut",
            "lastHttpStatusCode": 408,
            "publishTime": "2026-12-02T10:00:05.0000000Z",
            "lastDeliveryAttemptTime": "2026-12-03T10:00:05.0000000Z",
        }
    )
    return record


def dead_lettered_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvent as the dead-letter blob holds it: wrapped, with Event Grid's delivery account."""
    return {
        "event": copy.deepcopy(event),
        "deadletterproperties": {
            "deadletterreason": "UndeliverableDueToClientError",
            "deliveryattempts": 1,
            "deliveryresult": "BadRequest",
            "publishutc": "2026-12-02T10:00:13.0000000Z",
            "deliveryattemptutc": "2026-12-02T10:00:14.0000000Z",
        },
    }
