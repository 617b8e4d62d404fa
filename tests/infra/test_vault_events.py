"""The event path in the templates: each monitored subscription's system topic for ARM writes
(created, or an existing one reused) and kvmon's event subscription on it, read from the parsed
Bicep (Checkov's parser)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.sources.events import NETWORK_OPERATIONS
from tests.infra.bicep import body, dotted, evaluate, module_params, resources, template

SUBSCRIPTION = "00000000-0000-0000-0000-00000000000a"
OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-00000000000b"
EXISTING_TOPIC_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-platform"
    "/providers/Microsoft.EventGrid/systemTopics/platform-arm-events"
)
SYSTEM_TOPIC = "Microsoft.EventGrid/systemTopics"


def _with_variables(relative: str, names: list[str], symbols: Mapping[str, Any]) -> dict[str, Any]:
    """``symbols`` plus the values of the template's variables ``names``, in that order (a later
    one may use an earlier one)."""
    variables = template(relative)["variables"]
    known = dict(symbols)
    for name in names:
        known[name] = evaluate(variables[name]["value"], known)
    return known


def _condition(relative: str, symbol: str) -> Any:
    return template(relative)["resources"][symbol]["config"]["condition"]


# -- the system topic ----------------------------------------------------------------------------


def test_a_new_system_topic_carries_the_arm_writes_of_its_subscription() -> None:
    topics = resources(template("modules/vault-event-topic.bicep"), SYSTEM_TOPIC)
    created = topics["createdTopic"]
    assert created["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    # source: subscription().id, i.e. /subscriptions/{id} of the subscription deployed into.
    assert created["properties"]["source"] == {
        "function": {"type": "subscription", "parameters": {"subscription_id": None}, "property_name": "id"}
    }
    assert created["location"] == "global"
    # Event Grid dead-letters (and queue-delivers) with this identity, never with a storage key.
    assert created["identity"] == {"type": "SystemAssigned"}


def test_an_existing_topic_is_reused_and_no_new_one_is_declared() -> None:
    relative = "modules/vault-event-topic.bicep"
    parsed = template(relative)
    # The event subscription hangs on `topic`: a reference to whichever topic exists.
    assert parsed["resources"]["topic"]["existing"] is True
    assert resources(parsed, "Microsoft.EventGrid/systemTopics/eventSubscriptions")["vaultChanges"][
        "parent"
    ] == ("topic")
    for existing, created, name in (
        ("platform-arm-events", False, "platform-arm-events"),
        ("", True, "kvmon-arm"),
    ):
        symbols = _with_variables(
            relative,
            ["createTopic", "topicName"],
            {"existingTopicName": existing, "newTopicName": "kvmon-arm"},
        )
        assert evaluate(_condition(relative, "createdTopic"), symbols) is created
        assert evaluate(parsed["resources"]["topic"]["config"]["name"], symbols) == name


def test_the_subscription_module_creates_a_resource_group_only_for_a_new_topic() -> None:
    relative = "modules/vault-events.bicep"
    parsed = template(relative)
    assert parsed["globals"]["scope"]["value"] == "subscription"
    topic = body(parsed["modules"]["topic"]["config"])
    for existing_id, group, topic_name, creates_group in (
        (EXISTING_TOPIC_ID, "rg-platform", "platform-arm-events", False),
        ("", "rg-kvmon-events", "", True),
    ):
        symbols = _with_variables(
            relative,
            ["reuseTopic"],
            {"existingTopicId": existing_id, "topicResourceGroupName": "rg-kvmon-events"},
        )
        assert evaluate(_condition(relative, "topicGroup"), symbols) is creates_group
        scope = topic["scope"]["function"]
        assert scope["type"] == "resource_group"
        assert evaluate(scope["parameters"]["resource_group_name"], symbols) == group
        assert evaluate(topic["params"]["existingTopicName"], symbols) == topic_name


def test_main_deploys_the_event_path_into_each_monitored_subscription() -> None:
    main = template("main.bicep")
    events = main["modules"]["vaultEvents"]
    assert events["detail"]["path"] == "modules/vault-events.bicep"
    assert events["config"]["loop_type"]["detail"] == {
        "item_name": "subscriptionId",
        "array_name": "monitoredSubscriptionIds",
    }
    assert body(events["config"])["scope"]["function"] == {
        "type": "subscription",
        "parameters": {"subscription_id": "subscriptionId"},
    }
    assert main["parameters"]["existingEventTopicIds"]["default"] == {}
    existing = module_params(main, "vaultEvents")["existingTopicId"]
    reused = {SUBSCRIPTION: EXISTING_TOPIC_ID}
    assert evaluate(existing, {"existingEventTopicIds": reused, "subscriptionId": SUBSCRIPTION}) == (
        EXISTING_TOPIC_ID
    )
    assert evaluate(existing, {"existingEventTopicIds": reused, "subscriptionId": OTHER_SUBSCRIPTION}) == ""


# -- the event subscription ----------------------------------------------------------------------

EVENT_SUBSCRIPTION = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
MONITOR_APP_ID = f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-kvmon/providers/Microsoft.Web/sites/func-kvmon-monitor"


def _vault_changes() -> Mapping[str, Any]:
    (subscription,) = resources(template("modules/vault-event-topic.bicep"), EVENT_SUBSCRIPTION).values()
    return subscription


def test_the_event_subscription_takes_succeeded_writes_and_deletes_of_key_vault_only() -> None:
    properties = _vault_changes()["properties"]
    assert properties["filter"]["includedEventTypes"] == [
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceDeleteSuccess",
    ]
    # One prefix for Key Vault: vaults/write, vaults/delete and vaults/privateEndpointConnections/write
    # alike; a storage account's own write and delete and its connections and their proxies.
    [advanced] = properties["filter"]["advancedFilters"]
    assert (advanced["operatorType"], advanced["key"]) == ("StringBeginsWith", "data.operationName")
    prefixes = advanced["values"]
    assert prefixes == [
        "Microsoft.KeyVault/vaults",
        "Microsoft.Storage/storageAccounts/write",
        "Microsoft.Storage/storageAccounts/delete",
        "Microsoft.Storage/storageAccounts/privateEndpointConnection",
    ]
    # Every operation the decoder finds relevant passes the filter, and a storage container's
    # write (which the decoder ignores) does not reach the function at all.
    for operation in NETWORK_OPERATIONS:
        assert any(operation.startswith(prefix.lower()) for prefix in prefixes), operation
    container = "microsoft.storage/storageaccounts/blobservices/containers/write"
    assert not any(container.startswith(prefix.lower()) for prefix in prefixes)
    assert properties["eventDeliverySchema"] == "EventGridSchema"


def test_retries_end_within_two_hours_and_then_dead_letter_with_the_topics_identity() -> None:
    properties = _vault_changes()["properties"]
    # Event Grid's limits: 1-30 attempts, 1-1440 minutes.
    assert properties["retryPolicy"] == {"maxDeliveryAttempts": 8, "eventTimeToLiveInMinutes": 120}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"] == {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "storageAccountId", "blobContainerName": "deadLetterContainerName"},
    }
    # No key-based dead-letter destination beside it.
    assert "deadLetterDestination" not in properties


def test_the_topics_identity_may_write_dead_letters_to_their_container_only() -> None:
    access = template("modules/event-delivery-access.bicep")
    assignments = resources(access, "Microsoft.Authorization/roleAssignments")
    assert set(assignments) == {"deadLetterWriter", "queueSender"}
    writer = assignments["deadLetterWriter"]
    assert writer["scope"] == "deadLetterContainer"
    assert access["resources"]["deadLetterContainer"]["existing"] is True
    assert writer["properties"]["principalId"] == "principalId"
    topic_module = template("modules/vault-event-topic.bicep")
    assert module_params(topic_module, "deliveryAccess")["principalId"] == "topicPrincipalId"
    # Granted before the event subscription exists, so the first failure can be dead-lettered.
    assert "deliveryAccess" in _vault_changes()["dependsOn"]
    main = template("main.bicep")
    assert module_params(main, "vaultEvents")["deadLetterRoleDefinitionId"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": "roles", "operand_2": "storageBlobDataContributor"},
        }
    }
    assert "deadLetterContainerName" in module_params(main, "monitorStorage")["containers"]


def _delivery(event_delivery: str) -> dict[str, Any]:
    """The event subscription's destination properties as deployed with ``eventDelivery``."""
    relative = "modules/vault-event-topic.bicep"
    symbols = _with_variables(relative, ["deliverToQueue"], {"eventDelivery": event_delivery})
    properties = _vault_changes()["properties"]
    return {
        key: evaluate(properties[key], symbols)
        for key in ("destination", "deliveryWithResourceIdentity")
        if evaluate(properties[key], symbols) is not None
    }


def test_events_go_one_at_a_time_to_the_monitors_vault_changed_function() -> None:
    assert _delivery("function") == {
        "destination": {
            "endpointType": "AzureFunction",
            "properties": {"resourceId": "functionResourceId", "maxEventsPerBatch": 1},
        }
    }
    function_id = module_params(template("main.bicep"), "vaultEvents")["functionResourceId"]
    assert evaluate(function_id, {"monitorApp.outputs.id": MONITOR_APP_ID}) == (
        f"{MONITOR_APP_ID}/functions/vault_changed"
    )
    assert template("main.bicep")["parameters"]["eventDelivery"]["default"] == "function"


def test_without_public_inbound_events_go_to_the_monitors_queue_with_the_topics_identity() -> None:
    # Event Grid cannot push to a private endpoint; it can write to a queue, with its identity.
    assert _delivery("queue") == {
        "deliveryWithResourceIdentity": {
            "identity": {"type": "SystemAssigned"},
            "destination": {
                "endpointType": "StorageQueue",
                "properties": {"resourceId": "storageAccountId", "queueName": "eventQueueName"},
            },
        }
    }
    main = template("main.bicep")
    assert main["parameters"]["eventQueueName"]["default"] == "kvmon-vault-events"
    # The queue exists in the monitor's storage and the app knows its name (the queue trigger's
    # %KVMON_EVENT_QUEUE%), in every mode: the trigger listens whatever the delivery.
    assert "eventQueueName" in module_params(main, "monitorStorage")["queues"]
    assert main["variables"]["commonSettings"]["value"]["KVMON_EVENT_QUEUE"] == "eventQueueName"


def test_the_topics_identity_may_send_to_the_event_queue_only_for_queue_delivery() -> None:
    access = template("modules/event-delivery-access.bicep")
    sender = access["resources"]["queueSender"]["config"]
    assert sender["config"]["scope"] == "eventQueue"
    assert (
        sender["config"]["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        == "queueSenderRoleDefinitionId"
    )
    assert sender["condition"] == "deliverToQueue"
    passed = module_params(template("modules/vault-event-topic.bicep"), "deliveryAccess")["deliverToQueue"]
    for event_delivery, granted in (("queue", True), ("function", False)):
        symbols = _with_variables(
            "modules/vault-event-topic.bicep", ["deliverToQueue"], {"eventDelivery": event_delivery}
        )
        assert evaluate(passed, symbols) is granted
    assert dotted(module_params(template("main.bicep"), "vaultEvents")["queueSenderRoleDefinitionId"]) == (
        "roles.storageQueueDataMessageSender"
    )


def test_no_event_delivery_deploys_no_topic_and_no_subscription() -> None:
    condition = template("main.bicep")["modules"]["vaultEvents"]["config"]["condition"]
    assert {mode: evaluate(condition, {"eventDelivery": mode}) for mode in ("function", "queue", "none")} == {
        "function": True,
        "queue": True,
        "none": False,
    }
