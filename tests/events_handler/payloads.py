"""Event Grid payloads of ARM writes and deletes, in the published shape of the
Microsoft.Resources events (Event Grid schema and CloudEvents 1.0), written for these tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

WRITE = "Microsoft.Resources.ResourceWriteSuccess"
DELETE = "Microsoft.Resources.ResourceDeleteSuccess"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
MALLORY_OID = "11111111-2222-3333-4444-555555555555"
MALLORY_IP = "203.0.113.77"


def resource_data(
    resource_id: str, *, operation: str = "Microsoft.KeyVault/vaults/write", status: str = "Succeeded"
) -> dict[str, Any]:
    subscription = resource_id.split("/")[2]
    return {
        "authorization": {
            "scope": resource_id,
            "action": operation,
            "evidence": {"role": "Contributor", "principalId": MALLORY_OID, "principalType": "User"},
        },
        "claims": {
            "name": "Mallory Example",
            UPN_CLAIM: "mallory@contoso.example",
            OID_CLAIM: MALLORY_OID,
            "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            "ipaddr": "198.51.100.9",
        },
        "correlationId": str(uuid.uuid4()),
        "httpRequest": {
            "clientRequestId": str(uuid.uuid4()),
            "clientIpAddress": MALLORY_IP,
            "method": "DELETE" if operation.endswith("/delete") else "PATCH",
            "url": f"https://management.azure.com{resource_id}?api-version=2023-07-01",
        },
        "resourceProvider": "Microsoft.KeyVault",
        "resourceUri": resource_id,
        "operationName": operation,
        "status": status,
        "subscriptionId": subscription,
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    }


def event_grid_event(
    resource_id: str,
    *,
    event_id: str | None = None,
    event_type: str = WRITE,
    operation: str = "Microsoft.KeyVault/vaults/write",
    status: str = "Succeeded",
) -> dict[str, Any]:
    subscription = resource_id.split("/")[2]
    return {
        "subject": resource_id,
        "eventType": event_type,
        "eventTime": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "id": event_id or str(uuid.uuid4()),
        "data": resource_data(resource_id, operation=operation, status=status),
        "dataVersion": "2",
        "metadataVersion": "1",
        "topic": f"/subscriptions/{subscription}",
    }


def cloud_event(resource_id: str, *, event_id: str | None = None, event_type: str = WRITE) -> dict[str, Any]:
    subscription = resource_id.split("/")[2]
    return {
        "source": f"/subscriptions/{subscription}",
        "subject": resource_id,
        "type": event_type,
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "id": event_id or str(uuid.uuid4()),
        "data": resource_data(
            resource_id,
            operation="Microsoft.KeyVault/vaults/delete"
            if event_type == DELETE
            else "Microsoft.KeyVault/vaults/write",
        ),
        "specversion": "1.0",
    }
