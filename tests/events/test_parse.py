"""parse_payload: every shape kvmon is handed, every verdict, and the faults of a body."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from monitor.errors import InputError
from monitor.model import ActorSource, Service, WriteKind
from monitor.sources.events import (
    MAX_BODY_BYTES,
    EventBatch,
    EventPayloadError,
    EventSchema,
    Verdict,
    parse_payload,
)
from tests.events.payloads import (
    CONNECTION,
    OTHER_SUB,
    OTHER_VAULT,
    RG,
    STORAGE,
    SUB,
    VAULT,
    cloud_event,
    dead_lettered,
    dead_lettered_cloud_event,
    event_grid,
)

SCOPE = {SUB}


def parse(body: Any, *, scope: set[str] = SCOPE) -> EventBatch:
    return parse_payload(json.dumps(body).encode(), source="event.json", subscriptions=scope)


def only(batch: EventBatch) -> Any:
    assert len(batch.outcomes) == 1
    return batch.outcomes[0]


# -- the shapes ----------------------------------------------------------------------------------


def test_event_grid_array_as_delivered() -> None:
    batch = parse([event_grid()])
    outcome = only(batch)
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.schema is EventSchema.EVENT_GRID
    assert outcome.position == "[0]"
    change = outcome.change
    assert change.event_id == "4db48cba-50a2-455a-93b4-de41a3b5b7f6"
    assert change.vault_id == VAULT
    assert change.resource_id == VAULT
    assert change.kind is WriteKind.WRITE
    assert change.operation_name == "Microsoft.KeyVault/vaults/write"
    assert change.event_time == dt.datetime(2026, 12, 2, 10, 0, 4, 611735, tzinfo=dt.UTC)
    assert change.correlation_id == "0c3e5a7b-9d1f-4a2b-8c4d-6e8f0a1b2c3d"
    assert batch.changes == (change,)


def test_one_event_grid_object() -> None:
    outcome = only(parse(event_grid()))
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.position == ""


def test_cloud_event() -> None:
    outcome = only(parse(cloud_event()))
    assert outcome.schema is EventSchema.CLOUD_EVENTS
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.vault_id == VAULT
    assert outcome.change.event_time == dt.datetime(2026, 12, 2, 10, 0, 12, 763881, tzinfo=dt.UTC)


def test_cloud_event_array_and_the_published_examples_spelling_of_specversion() -> None:
    batch = parse([cloud_event(event_id="a"), cloud_event(event_id="b", spec_version_key="specVersion")])
    assert [o.verdict for o in batch.outcomes] == [Verdict.RELEVANT, Verdict.RELEVANT]


def test_cloud_event_of_another_spec_version_is_invalid() -> None:
    event = cloud_event()
    event["specversion"] = "0.3"
    outcome = only(parse(event))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == "event.json: specversion: Input should be '1.0'"


def test_mixed_schemas_in_one_body() -> None:
    batch = parse([event_grid(event_id="a"), cloud_event(event_id="b")])
    assert [o.schema for o in batch.outcomes] == [EventSchema.EVENT_GRID, EventSchema.CLOUD_EVENTS]


def test_already_decoded_json_and_text_are_taken() -> None:
    decoded = parse_payload([event_grid()], source="event", subscriptions=SCOPE)
    text = parse_payload(json.dumps([event_grid()]), source="event", subscriptions=SCOPE)
    assert decoded == text
    assert only(decoded).verdict is Verdict.RELEVANT


def test_a_byte_order_mark_is_taken() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(event_grid()).encode()
    assert only(parse_payload(body, source="blob", subscriptions=SCOPE)).verdict is Verdict.RELEVANT
    text = "\ufeff" + json.dumps(event_grid())
    assert only(parse_payload(text, source="blob", subscriptions=SCOPE)).verdict is Verdict.RELEVANT


def test_text_that_no_bytes_can_carry_is_not_utf8() -> None:
    with pytest.raises(EventPayloadError, match=r"^event: not UTF-8 \(byte 0xed at offset 1\)$"):
        parse_payload('"\ud800"', source="event", subscriptions=SCOPE)


def test_dead_lettered_event_grid_record_keeps_its_delivery_account() -> None:
    outcome = only(parse([dead_lettered(event_grid())]))
    assert outcome.verdict is Verdict.RELEVANT
    letter = outcome.dead_letter
    assert letter.reason == "MaxDeliveryAttemptsExceeded"
    assert letter.delivery_attempts == 30
    assert letter.last_outcome == "TimedOut"
    assert letter.last_http_status == 408
    assert letter.published_at == dt.datetime(2026, 12, 2, 10, 0, 5, tzinfo=dt.UTC)
    assert letter.last_attempt_at == dt.datetime(2026, 12, 3, 10, 0, 5, tzinfo=dt.UTC)
    assert only(parse([event_grid()])).dead_letter is None


def test_dead_lettered_cloud_event() -> None:
    outcome = only(parse([dead_lettered_cloud_event(cloud_event())]))
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.schema is EventSchema.CLOUD_EVENTS
    assert outcome.change.vault_id == VAULT
    assert outcome.dead_letter.reason == "UndeliverableDueToClientError"
    assert outcome.dead_letter.delivery_attempts == 1
    assert outcome.dead_letter.last_outcome == "BadRequest"


def test_dead_lettered_cloud_event_names_the_field_inside_the_wrapper() -> None:
    event = cloud_event()
    del event["data"]["resourceUri"]
    outcome = only(parse([dead_lettered_cloud_event(event)]))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == "event.json: [0].event.data.resourceUri: required"


def test_dead_letter_account_mistyped_is_invalid() -> None:
    record = dead_lettered(event_grid())
    record["deliveryAttempts"] = "30"
    outcome = only(parse([record]))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason.startswith("event.json: [0].deliveryAttempts: ")


# -- relevant --------------------------------------------------------------------------------------


def test_private_endpoint_connection_write_maps_to_its_vault() -> None:
    outcome = only(
        parse(
            event_grid(
                resource=CONNECTION, operation="Microsoft.KeyVault/vaults/privateEndpointConnections/write"
            )
        )
    )
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.vault_id == VAULT
    assert outcome.change.resource_id == CONNECTION
    assert outcome.change.kind is WriteKind.WRITE


def test_private_endpoint_connection_delete_is_a_delete_of_the_connection_not_the_vault() -> None:
    outcome = only(
        parse(
            event_grid(
                event_type="Microsoft.Resources.ResourceDeleteSuccess",
                resource=CONNECTION,
                operation="Microsoft.KeyVault/vaults/privateEndpointConnections/delete",
                method="DELETE",
            )
        )
    )
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.kind is WriteKind.DELETE
    assert outcome.change.vault_id == VAULT
    assert outcome.change.resource_id == CONNECTION


def test_private_endpoint_connection_proxy_write_maps_to_its_vault() -> None:
    proxy = f"{VAULT}/privateEndpointConnectionProxies/pe-payments.7c1f2a"
    outcome = only(
        parse(
            event_grid(
                resource=proxy, operation="Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write"
            )
        )
    )
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.vault_id == VAULT


def test_vault_delete() -> None:
    outcome = only(
        parse(
            cloud_event(
                event_type="Microsoft.Resources.ResourceDeleteSuccess",
                operation="Microsoft.KeyVault/vaults/delete",
                method="DELETE",
            )
        )
    )
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.kind is WriteKind.DELETE


@pytest.mark.parametrize(
    ("resource", "operation", "event_type", "kind"),
    [
        (STORAGE, "Microsoft.Storage/storageAccounts/write", "ResourceWriteSuccess", WriteKind.WRITE),
        (STORAGE, "Microsoft.Storage/storageAccounts/delete", "ResourceDeleteSuccess", WriteKind.DELETE),
        (
            f"{STORAGE}/privateEndpointConnections/pe-blob.5d2e",
            "Microsoft.Storage/storageAccounts/privateEndpointConnections/write",
            "ResourceWriteSuccess",
            WriteKind.WRITE,
        ),
        (
            f"{STORAGE}/privateEndpointConnections/pe-blob.5d2e",
            "Microsoft.Storage/storageAccounts/privateEndpointConnections/delete",
            "ResourceDeleteSuccess",
            WriteKind.DELETE,
        ),
        (
            f"{STORAGE}/privateEndpointConnectionProxies/pe-blob.5d2e",
            "Microsoft.Storage/storageAccounts/privateEndpointConnectionProxies/write",
            "ResourceWriteSuccess",
            WriteKind.WRITE,
        ),
    ],
    ids=["write", "delete", "connection-write", "connection-delete", "proxy-write"],
)
def test_a_storage_accounts_network_operations_map_to_the_account(
    resource: str, operation: str, event_type: str, kind: WriteKind
) -> None:
    batch = parse(
        event_grid(resource=resource, operation=operation, event_type=f"Microsoft.Resources.{event_type}")
    )
    outcome = only(batch)
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.reason == f"{operation} succeeded: read the storage account again"
    assert outcome.change.service is Service.STORAGE
    assert outcome.change.vault_id == STORAGE and outcome.change.resource_id == resource
    assert outcome.change.kind is kind
    assert outcome.change.actor.client_ip == "203.0.113.7"
    # Apart from the vaults' changes, which the event path reads by id.
    assert batch.changes == () and batch.vaults == ()
    assert [group.vault_id for group in batch.accounts] == [STORAGE]


def test_a_storage_account_id_is_read_into_the_canonical_form_and_checked() -> None:
    spelt = STORAGE.replace("/subscriptions/", "/SUBSCRIPTIONS/").replace(
        "Microsoft.Storage", "microsoft.storage"
    )
    spelt = spelt.replace(SUB, SUB.upper())
    outcome = only(parse(event_grid(resource=spelt, operation="microsoft.storage/STORAGEACCOUNTS/write")))
    assert outcome.verdict is Verdict.RELEVANT and outcome.change.vault_id == STORAGE
    bad = STORAGE.replace("stpayments", "st-payments")  # no hyphen in a storage account name
    outcome = only(parse(event_grid(resource=bad, operation="Microsoft.Storage/storageAccounts/write")))
    assert outcome.verdict is Verdict.INVALID
    assert "is not a storage account (/subscriptions/SUB/resourceGroups/RG/providers/" in outcome.reason
    outcome = only(parse(event_grid(resource=VAULT, operation="Microsoft.Storage/storageAccounts/write")))
    assert outcome.verdict is Verdict.INVALID and "is not a storage account" in outcome.reason


def test_a_storage_account_outside_the_scope_is_never_read() -> None:
    outcome = only(
        parse(
            event_grid(resource=STORAGE, operation="Microsoft.Storage/storageAccounts/write"),
            scope={OTHER_SUB},
        )
    )
    assert outcome.verdict is Verdict.OUT_OF_SCOPE
    assert outcome.reason == f"subscription {SUB} is not one kvmon watches: the storage account is not read"


def test_vaults_and_accounts_in_one_body_are_apart() -> None:
    batch = parse(
        [
            event_grid(event_id="e-vault"),
            event_grid(
                event_id="e-account", resource=STORAGE, operation="Microsoft.Storage/storageAccounts/write"
            ),
        ]
    )
    assert [change.event_id for change in batch.changes] == ["e-vault"]
    assert [change.service for change in batch.changes] == [Service.KEYVAULT]
    assert [group.changes[0].event_id for group in batch.accounts] == ["e-account"]
    assert set(batch.actors) == {VAULT.lower()}


def test_resource_uri_wins_over_subject() -> None:
    outcome = only(parse(event_grid(subject=OTHER_VAULT)))
    assert outcome.change.vault_id == VAULT


def test_ids_are_read_case_insensitively_into_the_canonical_form() -> None:
    spelt = (
        f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/{RG}/PROVIDERS/microsoft.keyvault/VAULTS/kv-Payments/"
    )
    outcome = only(parse(event_grid(resource=spelt, operation="microsoft.keyvault/VAULTS/WRITE")))
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.change.vault_id == VAULT  # the name's and group's case kept, the rest ARM's
    assert outcome.change.operation_name == "microsoft.keyvault/VAULTS/WRITE"


def test_status_and_event_type_compare_case_insensitively() -> None:
    outcome = only(
        parse(event_grid(event_type="microsoft.resources.resourcewritesuccess", status="succeeded"))
    )
    assert outcome.verdict is Verdict.RELEVANT


# -- ignored, out of scope -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (event_grid(status="Failed"), "status Failed: the request did not succeed"),
        (event_grid(status="Canceled"), "status Canceled: the request did not succeed"),
        (
            event_grid(event_type="Microsoft.Resources.ResourceWriteFailure", status="Failed"),
            "Microsoft.Resources.ResourceWriteFailure is not a succeeded ARM write or delete",
        ),
        (
            event_grid(
                event_type="Microsoft.Resources.ResourceActionSuccess",
                operation="Microsoft.KeyVault/vaults/deploy/action",
            ),
            "Microsoft.Resources.ResourceActionSuccess is not a succeeded ARM write or delete",
        ),
        (
            event_grid(
                resource=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/app-one",
                operation="Microsoft.Web/sites/write",
            ),
            "Microsoft.Web/sites/write is another resource provider's operation",
        ),
        (
            event_grid(
                resource=f"{STORAGE}/blobServices/default/containers/logs",
                operation="Microsoft.Storage/storageAccounts/blobServices/containers/write",
            ),
            "Microsoft.Storage/storageAccounts/blobServices/containers/write changes no network setting "
            "of a storage account",
        ),
        (
            event_grid(
                resource=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageTasks/t1",
                operation="Microsoft.Storage/storageTasks/write",
            ),
            "Microsoft.Storage/storageTasks/write is not an operation on a storage account "
            "(Microsoft.Storage/storageAccounts)",
        ),
        (
            event_grid(
                resource=f"{VAULT}/accessPolicies/add",
                operation="Microsoft.KeyVault/vaults/accessPolicies/write",
            ),
            "Microsoft.KeyVault/vaults/accessPolicies/write changes no network setting of a vault",
        ),
        (
            event_grid(
                resource=f"{VAULT}/secrets/db-password", operation="Microsoft.KeyVault/vaults/secrets/write"
            ),
            "Microsoft.KeyVault/vaults/secrets/write changes no network setting of a vault",
        ),
        (
            event_grid(
                resource=VAULT.replace("vaults/kv-Payments", "managedHSMs/hsm-one"),
                operation="Microsoft.KeyVault/managedHSMs/write",
            ),
            "Microsoft.KeyVault/managedHSMs/write is not an operation on a vault (Microsoft.KeyVault/vaults)",
        ),
    ],
    ids=[
        "failed",
        "canceled",
        "write-failure",
        "action",
        "another-provider",
        "storage-container",
        "storage-task",
        "access-policies",
        "secret",
        "managed-hsm",
    ],
)
def test_ignored_with_a_reason(event: dict[str, Any], reason: str) -> None:
    outcome = only(parse([event]))
    assert outcome.verdict is Verdict.IGNORED
    assert outcome.reason == reason
    assert outcome.change is None


def test_another_services_event_is_ignored_whatever_its_data() -> None:
    validation = {
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
        "topic": "/subscriptions/x",
        "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-12-02T10:00:00Z",
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    outcome = only(parse([validation]))
    assert outcome.verdict is Verdict.IGNORED
    assert outcome.event_type == "Microsoft.EventGrid.SubscriptionValidationEvent"


def test_out_of_scope_subscription_is_never_read() -> None:
    other = VAULT.replace(SUB, OTHER_SUB)
    outcome = only(parse(event_grid(resource=other)))
    assert outcome.verdict is Verdict.OUT_OF_SCOPE
    assert outcome.change is None
    assert OTHER_SUB in outcome.reason
    assert parse(event_grid(resource=other)).vaults == ()


def test_an_irrelevant_event_outside_the_scope_is_ignored_not_out_of_scope() -> None:
    container = f"{STORAGE.replace(SUB, OTHER_SUB)}/blobServices/default/containers/logs"
    outcome = only(
        parse(
            event_grid(
                resource=container,
                operation="Microsoft.Storage/storageAccounts/blobServices/containers/write",
            )
        )
    )
    assert outcome.verdict is Verdict.IGNORED


def test_scope_compares_case_insensitively_and_an_empty_scope_lets_nothing_through() -> None:
    assert only(parse(event_grid(), scope={f" {SUB.upper()} "})).verdict is Verdict.RELEVANT
    assert only(parse(event_grid(), scope=set())).verdict is Verdict.OUT_OF_SCOPE


# -- invalid ---------------------------------------------------------------------------------------


def without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


def test_missing_resource_uri_names_the_event_and_field() -> None:
    batch = parse(
        [
            event_grid(event_id="a"),
            event_grid(event_id="b"),
            without(event_grid(event_id="c"), "data", "resourceUri"),
        ]
    )
    outcome = batch.outcomes[2]
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == "event.json: [2].data.resourceUri: required"
    assert outcome.event_id == "c"
    assert batch.count(Verdict.RELEVANT) == 2  # the others are still read


def test_missing_field_of_one_event_body_has_no_position() -> None:
    outcome = only(parse(without(event_grid(), "data", "operationName")))
    assert outcome.reason == "event.json: data.operationName: required"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda e: e["data"].update(resourceUri=42),
            "event.json: [0].data.resourceUri: expected a text, got 42",
        ),
        (lambda e: e["data"].update(status=None), "event.json: [0].data.status: expected a text, got None"),
        (lambda e: e["data"].update(resourceUri=" "), "event.json: [0].data.resourceUri: must not be empty"),
        (lambda e: e.update(data="a text"), "event.json: [0].data: expected a mapping, got 'a text'"),
        (
            lambda e: e.update(eventTime=1721414284),
            "event.json: [0].eventTime: expected an ISO 8601 date-time, got a number",
        ),
        (
            lambda e: e.update(eventTime="yesterday"),
            "event.json: [0].eventTime: expected an ISO 8601 date-time, got 'yesterday'",
        ),
        (
            lambda e: e.update(eventTime="2026-12-02T10:00:04"),
            "event.json: [0].eventTime: '2026-12-02T10:00:04' has no UTC offset",
        ),
        (lambda e: e.pop("id"), "event.json: [0].id: required"),
        (lambda e: e.pop("eventTime"), "event.json: [0].eventTime: required"),
        (lambda e: e.pop("data"), "event.json: [0].data: required"),
        (
            lambda e: e["data"]["claims"].update({"name": ["Alice"]}),
            "event.json: [0].data.claims.name: expected a text, got a list",
        ),
        (
            lambda e: e["data"].update(httpRequest={"clientIpAddress": 7}),
            "event.json: [0].data.httpRequest.clientIpAddress: expected a text, got 7",
        ),
    ],
    ids=[
        "uri-number",
        "status-null",
        "uri-blank",
        "data-text",
        "time-number",
        "time-text",
        "time-naive",
        "no-id",
        "no-time",
        "no-data",
        "claim-list",
        "ip-number",
    ],
)
def test_mistyped_or_missing_fields(change: Any, reason: str) -> None:
    event = event_grid()
    change(event)
    outcome = only(parse([event]))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == reason


def test_an_invalid_event_without_an_id_is_reported_without_one() -> None:
    outcome = only(parse([without(event_grid(), "id")]))
    assert outcome.event_id is None


@pytest.mark.parametrize(
    ("resource", "operation", "problem"),
    [
        (STORAGE, "Microsoft.KeyVault/vaults/write", "is not a Key Vault"),
        (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/a",
            "Microsoft.KeyVault/vaults/write",
            "is not a Key Vault",
        ),
        (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv--bad",
            "Microsoft.KeyVault/vaults/write",
            "is not a Key Vault",
        ),
        (CONNECTION, "Microsoft.KeyVault/vaults/write", "is not a Key Vault"),
        (
            VAULT,
            "Microsoft.KeyVault/vaults/privateEndpointConnections/write",
            "is not a child of a Key Vault",
        ),
        (
            f"{VAULT}/privateEndpointConnections",
            "Microsoft.KeyVault/vaults/privateEndpointConnections/write",
            "is not a child of a Key Vault",
        ),
        ("kv-payments", "Microsoft.KeyVault/vaults/write", "is not a Key Vault"),
    ],
    ids=[
        "storage-id",
        "short-name",
        "double-hyphen",
        "connection-as-vault",
        "vault-as-connection",
        "no-connection-name",
        "bare-name",
    ],
)
def test_resource_uri_that_is_not_what_the_operation_names(
    resource: str, operation: str, problem: str
) -> None:
    outcome = only(parse([event_grid(resource=resource, operation=operation)]))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason.startswith("event.json: [0].data.resourceUri: ")
    assert problem in outcome.reason


def test_a_huge_resource_uri_is_clipped_in_the_message() -> None:
    outcome = only(parse([event_grid(resource="/x" * 50_000)]))
    assert outcome.verdict is Verdict.INVALID
    assert len(outcome.reason) < 400


def test_operation_that_contradicts_the_event_type_is_invalid() -> None:
    outcome = only(parse([event_grid(event_type="Microsoft.Resources.ResourceDeleteSuccess")]))
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == (
        "event.json: [0].data.operationName: Microsoft.KeyVault/vaults/write does not match "
        "the event type Microsoft.Resources.ResourceDeleteSuccess"
    )


# -- bodies that are not event payloads ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x00\x9f\x92\x96 garbage", "event.json: not UTF-8 (byte 0x9f at offset 1)"),
        ("caf\u00e9".encode("latin-1"), "event.json: not UTF-8 (byte 0xe9 at offset 3)"),
        (b"<html>502 Bad Gateway</html>", "event.json: not JSON: Expecting value at line 1 column 1"),
        (
            b'[{"id": "a",',
            "event.json: not JSON: Expecting property name enclosed in double quotes at line 1 column 13",
        ),
        (b"", "event.json: not JSON: Expecting value at line 1 column 1"),
        (b'{"eventTime": NaN}', "event.json: not JSON: NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "event.json: not JSON an event can be: nested too deeply"),
        (b"42", "event.json: expected an event or an array of events, got a number"),
        (b'"event"', "event.json: expected an event or an array of events, got a text"),
        (b"null", "event.json: expected an event or an array of events, got null"),
        (b"[]", "event.json: an empty array holds no event"),
        (
            b'[{"id": "a"}]',
            "event.json: [0]: neither an Event Grid event (no eventType) nor a CloudEvent (no specversion)",
        ),
        (
            b'{"hello": "world"}',
            "event.json: neither an Event Grid event (no eventType) nor a CloudEvent (no specversion)",
        ),
        (b'[{"eventType": "x"}, 7]', "event.json: [1]: expected an event (an object), got a number"),
    ],
    ids=[
        "garbage",
        "latin-1",
        "html",
        "truncated",
        "empty",
        "nan",
        "deep",
        "number",
        "text",
        "null",
        "empty-array",
        "unknown-shape",
        "unknown-object",
        "not-an-object",
    ],
)
def test_a_body_that_is_not_an_event_payload_raises_an_input_error(body: bytes, problem: str) -> None:
    with pytest.raises(EventPayloadError) as raised:
        parse_payload(body, source="event.json", subscriptions=SCOPE)
    assert str(raised.value) == problem
    assert isinstance(raised.value, InputError)


def test_a_body_over_the_bound_is_refused_before_it_is_parsed() -> None:
    body = json.dumps([event_grid(event_id=str(n)) for n in range(400)]).encode()
    assert len(body) > MAX_BODY_BYTES
    with pytest.raises(EventPayloadError, match=r"^event\.json: \d+ bytes, more than the 1048576"):
        parse_payload(body, source="event.json", subscriptions=SCOPE)
    with pytest.raises(EventPayloadError, match="more than the 1048576"):
        parse_payload(body.decode(), source="event.json", subscriptions=SCOPE)
    # Multi-byte characters count as the bytes they take.
    with pytest.raises(EventPayloadError, match="more than the 1048576"):
        parse_payload(
            '"' + "\u00e9" * (MAX_BODY_BYTES // 2 + 1) + '"', source="event.json", subscriptions=SCOPE
        )


def test_a_body_at_the_bound_is_read() -> None:
    event = event_grid()
    event["data"]["padding"] = ""
    size = len(json.dumps([event]).encode())
    event["data"]["padding"] = "x" * (MAX_BODY_BYTES - size)
    body = json.dumps([event]).encode()
    assert len(body) == MAX_BODY_BYTES
    assert only(parse_payload(body, source="event.json", subscriptions=SCOPE)).verdict is Verdict.RELEVANT


# -- the actor -------------------------------------------------------------------------------------


def test_a_users_claims() -> None:
    actor = only(parse(event_grid())).change.actor
    assert actor.source is ActorSource.EVENT
    assert actor.name == "Alice Lind"
    assert actor.upn == "alice@contoso.com"
    assert actor.app_id == "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    assert actor.object_id == "2b4c6d8e-1f3a-4b5c-8d7e-9f0a1b2c3d4e"
    assert actor.principal_type == "User"
    assert actor.role == "Key Vault Contributor"
    assert actor.client_ip == "203.0.113.7"  # httpRequest, not the ipaddr claim
    assert actor.operation == "Microsoft.KeyVault/vaults/write"
    assert actor.changed_at == dt.datetime(2026, 12, 2, 10, 0, 4, 611735, tzinfo=dt.UTC)
    assert actor.correlation_id == "0c3e5a7b-9d1f-4a2b-8c4d-6e8f0a1b2c3d"
    assert actor.describe() == "alice@contoso.com (User, from 203.0.113.7)"


def test_a_service_principals_claims() -> None:
    from tests.events.payloads import PIPELINE_APP, PIPELINE_OID, service_principal_claims

    evidence = {
        "role": "Contributor",
        "principalId": PIPELINE_OID.replace("-", ""),
        "principalType": "ServicePrincipal",
    }
    event = event_grid(claims=service_principal_claims(), evidence=evidence, client_ip=None)
    actor = only(parse(event)).change.actor
    assert actor.name is None
    assert actor.upn is None
    assert actor.app_id == PIPELINE_APP
    assert actor.object_id == PIPELINE_OID
    assert actor.principal_type == "ServicePrincipal"
    assert actor.role == "Contributor"
    assert actor.client_ip is None  # a managed identity's token has no ipaddr, and a create no httpRequest
    assert actor.who == PIPELINE_APP


def test_the_ipaddr_claim_is_the_address_only_when_arm_gave_none() -> None:
    actor = only(parse(event_grid(client_ip=None))).change.actor
    assert actor.client_ip == "198.51.100.23"


def test_a_role_held_through_a_group_names_no_principal_type() -> None:
    evidence = {
        "role": "Key Vault Contributor",
        "principalId": "9f8e7d6c5b4a49388271605f4e3d2c1b",
        "principalType": "Group",
    }
    actor = only(parse(event_grid(evidence=evidence))).change.actor
    assert actor.role == "Key Vault Contributor"
    assert actor.principal_type is None
    assert actor.object_id == "2b4c6d8e-1f3a-4b5c-8d7e-9f0a1b2c3d4e"


def test_missing_claims_are_none() -> None:
    event = event_grid()
    del event["data"]["claims"]
    del event["data"]["authorization"]
    del event["data"]["httpRequest"]
    actor = only(parse(event)).change.actor
    assert (
        actor.name,
        actor.upn,
        actor.app_id,
        actor.object_id,
        actor.principal_type,
        actor.role,
        actor.client_ip,
    ) == (None,) * 7
    assert actor.who == "unknown"


def test_empty_claims_are_none() -> None:
    event = event_grid()
    event["data"]["claims"].update({"name": " ", "ipaddr": ""})
    event["data"]["httpRequest"]["clientIpAddress"] = ""
    actor = only(parse(event)).change.actor
    assert actor.name is None
    assert actor.client_ip is None


def test_v2_token_short_claim_names() -> None:
    claims = {
        "name": "Alice Lind",
        "upn": "alice@contoso.com",
        "oid": "2b4c6d8e-1f3a-4b5c-8d7e-9f0a1b2c3d4e",
        "azp": "app-1",
    }
    actor = only(parse(event_grid(claims=claims))).change.actor
    assert (actor.upn, actor.object_id, actor.app_id) == (
        "alice@contoso.com",
        "2b4c6d8e-1f3a-4b5c-8d7e-9f0a1b2c3d4e",
        "app-1",
    )


def test_nothing_else_of_the_token_reaches_the_record() -> None:
    batch = parse(event_grid())
    kept = repr(batch)
    for value in (
        "https://management.core.windows.net/",
        "1721414284",
        "secret-looking",
        "S-1-5-21",
        "10030000A1B2C3D4",
        "Lind,",
        "q9W8e7R6",
    ):
        assert value not in kept
