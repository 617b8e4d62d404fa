"""The lab's Event Grid: an ARM write through the SDK arrives at a webhook or an Event Grid
triggered function in the published shape, and the delivery faults (duplicates, reordering,
retries, dead letters) happen as configured and the same way for the same seed."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import VaultPatchParameters, VaultPatchProperties

from lab.arm import VAULT_WRITE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import WALKTHROUGH_SUBSCRIPTION, Estate, walkthrough_estate
from lab.eventgrid import (
    Answer,
    EndpointType,
    EventGridEmulator,
    EventSchema,
    FunctionTarget,
    PublishedEvent,
    ResourceEventType,
    WebhookTarget,
)
from lab.services import LabServices
from lab.sinks import WebhookSink
from lab.tls import LabPki

RG = "rg-walkthrough"
FAST = 0.001  # Event Grid's schedule in milliseconds: 10 ms, 30 ms, 60 ms, 300 ms...
IDLE_S = 10.0


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate()) as emulator:
        yield emulator


@pytest.fixture
def arm(_arm_server: ArmEmulator) -> Iterator[ArmEmulator]:
    _arm_server.estate = walkthrough_estate()
    yield _arm_server
    _arm_server.publish = None


@pytest.fixture(scope="module")
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as receiver:
        yield receiver


@pytest.fixture
def webhook(sink: WebhookSink) -> WebhookSink:
    sink.clear()
    sink.clear_faults()
    return sink


def _tighten(arm: ArmEmulator, pki: LabPki) -> None:
    """A person sets kv-pl-demo's public access to Disabled through the SDK (one PATCH)."""
    person = LabCredential(claims={"upn": "dana@contoso.example", "name": "Dana"})
    with KeyVaultManagementClient(
        person,
        WALKTHROUGH_SUBSCRIPTION,
        base_url=arm.url,
        credential_scopes=[f"{arm.url}/.default"],
        connection_verify=pki.ca_path,
        retry_total=0,
    ) as client:
        client.vaults.update(
            RG,
            "kv-pl-demo",
            VaultPatchParameters(properties=VaultPatchProperties(public_network_access="Disabled")),
        )


def _event(number: int) -> PublishedEvent:
    vault_id = (
        f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}/resourceGroups/rg/providers/"
        f"Microsoft.KeyVault/vaults/kv-{number:03d}"
    )
    return PublishedEvent(
        id=f"00000000-0000-4000-8000-{number:012d}",
        topic=f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}",
        subject=vault_id,
        event_type=ResourceEventType.WRITE_SUCCESS,
        event_time=dt.datetime(2026, 12, 2, 10, 0, number % 60, 123456, tzinfo=dt.UTC),
        data={"resourceUri": vault_id, "operationName": VAULT_WRITE, "status": "Succeeded"},
    )


class Scripted:
    """A target that answers each delivery of an event with the next status of its script
    (then 200), and records what it got."""

    endpoint_type = EndpointType.WEBHOOK

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self._per_event: dict[str, int] = {}
        self._lock = threading.Lock()

    def deliver(self, events: Sequence[dict[str, Any]], *, headers: Mapping[str, str]) -> Answer:
        with self._lock:
            ids = [event["id"] for event in events]
            self.calls.append((ids, dict(headers)))
            seen = self._per_event.get(ids[0], 0)
            self._per_event[ids[0]] = seen + 1
            return Answer(self.statuses[seen] if seen < len(self.statuses) else 200)


def _run(grid: EventGridEmulator, events: Sequence[PublishedEvent]) -> EventGridEmulator:
    """Publish ``events`` before delivery starts (one window), deliver them all, stop."""
    for event in events:
        grid.publish(event)
    with grid:
        grid.wait_idle(IDLE_S)
    return grid


# -- from an ARM write to a target ------------------------------------------------------------


@pytest.mark.parametrize("schema", list(EventSchema))
def test_an_sdk_write_reaches_a_webhook_in_the_published_shape(
    arm: ArmEmulator, pki: LabPki, webhook: WebhookSink, schema: EventSchema
) -> None:
    with EventGridEmulator(target=WebhookTarget(webhook.webhook_url()), schema=schema) as grid:
        arm.publish = grid.publish
        _tighten(arm, pki)
        grid.wait_idle(IDLE_S)
    [received] = webhook.messages("webhook")
    [event] = grid.published
    if schema is EventSchema.EVENT_GRID:
        assert received.header("Content-Type") == "application/json"
        [body] = received.json()  # always an array, of one event by default
        assert (body["eventType"], body["topic"], body["dataVersion"]) == (
            "Microsoft.Resources.ResourceWriteSuccess",
            f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}",
            "2",
        )
    else:
        assert received.header("Content-Type") == "application/cloudevents+json; charset=utf-8"
        body = received.json()  # one structured CloudEvent
        assert (body["type"], body["specversion"]) == ("Microsoft.Resources.ResourceWriteSuccess", "1.0")
    assert body == event.rendered(schema)
    assert body["subject"].endswith("/vaults/kv-pl-demo")
    assert body["data"]["claims"]["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] == (
        "dana@contoso.example"
    )
    assert body["data"]["httpRequest"]["method"] == "PATCH"
    assert received.header("aeg-event-type") == "Notification"
    assert received.header("aeg-delivery-count") == "0"
    [delivery] = grid.deliveries
    assert (delivery.status, delivery.attempt, delivery.duplicate) == (202, 1, False)


def _recording_app(seen: list[Any], *, failures: list[int] | None = None) -> func.FunctionApp:
    """A tiny Event Grid triggered app (kvmon's own vault_changed lives in function_app.py)."""
    app = func.FunctionApp()

    @app.event_grid_trigger(arg_name="event")
    def on_change(event: func.EventGridEvent) -> None:
        seen.append(event)
        if failures:
            failures.pop()
            raise RuntimeError("the store is down")

    return app


def test_a_function_gets_the_event_decoded_by_the_workers_converter(arm: ArmEmulator, pki: LabPki) -> None:
    seen: list[Any] = []
    target = FunctionTarget.of(_recording_app(seen), "on_change")
    with EventGridEmulator(target=target) as grid:
        arm.publish = grid.publish
        _tighten(arm, pki)
        grid.wait_idle(IDLE_S)
    [published] = grid.published
    [event] = seen
    assert isinstance(event, func.EventGridEvent)
    assert event.id == published.id
    assert event.topic == f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}"
    assert event.subject == published.subject and event.subject.endswith("/vaults/kv-pl-demo")
    assert event.event_type == "Microsoft.Resources.ResourceWriteSuccess"
    assert event.event_time == published.event_time  # seven fractional digits, cut to six
    assert event.event_time is not None and event.event_time.tzinfo is dt.UTC
    assert event.data_version == "2"
    data = event.get_json()
    assert data == json.loads(json.dumps(dict(published.data)))
    assert (data["operationName"], data["status"]) == (VAULT_WRITE, "Succeeded")
    assert target.invocations == 1 and target.failures == []


def test_a_cloud_event_reaches_the_function_as_the_converter_makes_it(arm: ArmEmulator, pki: LabPki) -> None:
    seen: list[Any] = []
    with EventGridEmulator(
        target=FunctionTarget.of(_recording_app(seen), "on_change"), schema=EventSchema.CLOUD_EVENTS
    ) as grid:
        arm.publish = grid.publish
        _tighten(arm, pki)
        grid.wait_idle(IDLE_S)
    [event] = seen
    assert isinstance(event, func.CloudEvent)  # the converter's choice for a specversion body
    assert (event.type, event.specversion) == ("Microsoft.Resources.ResourceWriteSuccess", "1.0")
    assert event.source == f"/subscriptions/{WALKTHROUGH_SUBSCRIPTION}"
    assert event.get_json()["resourceUri"] == event.subject


def test_a_function_that_raises_fails_the_delivery_and_the_retry_succeeds() -> None:
    seen: list[Any] = []
    target = FunctionTarget.of(_recording_app(seen, failures=[1]), "on_change")
    grid = _run(EventGridEmulator(target=target, time_scale=FAST), [_event(1)])
    assert [(a.attempt, a.status, a.outcome) for a in grid.attempts] == [
        (1, 500, "InternalServerError"),
        (2, 200, "Succeeded"),
    ]
    assert "RuntimeError: the store is down" in grid.attempts[0].detail
    assert [event.id for event in seen] == [_event(1).id] * 2
    assert target.failures == ["RuntimeError: the store is down"]


def test_a_function_target_needs_an_event_grid_function() -> None:
    app = func.FunctionApp()

    @app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer")
    def tick(timer: func.TimerRequest) -> None:
        return None

    [function] = app.get_functions()
    with pytest.raises(ValueError, match="not triggered by Event Grid"):
        FunctionTarget(function)
    with pytest.raises(ValueError, match="no function 'absent'"):
        FunctionTarget.of(_recording_app([]), "absent")


def test_deliveries_stay_on_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        WebhookTarget("https://example.com/api/events")
    WebhookTarget("https://127.0.0.1:8443/api/events")
    WebhookTarget("http://localhost:7071/runtime/webhooks/eventgrid")


# -- delivery faults, as configured and reproducible ------------------------------------------


def _sequence(seed: int, **settings: Any) -> list[tuple[str, bool]]:
    target = Scripted()
    grid = _run(
        EventGridEmulator(target=target, seed=seed, workers=1, **settings), [_event(n) for n in range(30)]
    )
    return [(attempt.event_ids[0], attempt.duplicate) for attempt in grid.attempts]


def test_duplicates_follow_a_success_and_are_the_same_for_the_same_seed() -> None:
    first = _sequence(7, duplicate_fraction=0.3)
    assert first == _sequence(7, duplicate_fraction=0.3)
    assert first != _sequence(8, duplicate_fraction=0.3)
    originals = [event_id for event_id, duplicate in first if not duplicate]
    duplicates = [event_id for event_id, duplicate in first if duplicate]
    assert originals == [_event(n).id for n in range(30)]  # no window: publication order
    assert 3 <= len(duplicates) <= 18 and len(set(duplicates)) == len(duplicates)
    for event_id in duplicates:  # the second delivery comes after the first succeeded
        assert first.index((event_id, True)) > first.index((event_id, False))
    assert _sequence(7) == [(_event(n).id, False) for n in range(30)]


def test_a_window_shuffles_the_batches_the_same_way_for_the_same_seed() -> None:
    shuffled = _sequence(3, reorder_window_s=0.02)
    assert shuffled == _sequence(3, reorder_window_s=0.02)
    assert shuffled != _sequence(4, reorder_window_s=0.02)
    ids = [event_id for event_id, _ in shuffled]
    assert ids != [_event(n).id for n in range(30)] and sorted(ids) == [_event(n).id for n in range(30)]


def test_batches_hold_at_most_the_configured_number_of_events() -> None:
    target = Scripted()
    _run(EventGridEmulator(target=target, max_events_per_batch=4, workers=1), [_event(n) for n in range(10)])
    assert [len(ids) for ids, _ in target.calls] == [4, 4, 2]


def test_failures_are_retried_on_the_compressed_schedule() -> None:
    target = Scripted([500, 503, 429])
    grid = _run(EventGridEmulator(target=target, time_scale=FAST, workers=1), [_event(1)])
    assert [(a.attempt, a.status, a.outcome) for a in grid.attempts] == [
        (1, 500, "InternalServerError"),
        (2, 503, "ServiceUnavailable"),
        (3, 429, "TooManyRequests"),
        (4, 200, "Succeeded"),
    ]
    assert [headers["aeg-delivery-count"] for _, headers in target.calls] == ["0", "1", "2", "3"]
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(grid.attempts, grid.attempts[1:], strict=False)]
    assert [round(gap, 2) >= wait for gap, wait in zip(gaps, (0.01, 0.03, 0.06), strict=True)] == [True] * 3
    assert grid.dead_letters == []


def test_an_event_that_is_never_taken_is_dead_lettered_after_the_last_attempt(tmp_path: Path) -> None:
    target = Scripted([500] * 10)
    grid = _run(
        EventGridEmulator(target=target, time_scale=FAST, max_delivery_attempts=3, dead_letter_dir=tmp_path),
        [_event(5)],
    )
    assert [a.attempt for a in grid.attempts] == [1, 2, 3]
    [record] = grid.dead_letters
    assert {key: record[key] for key in ("deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome")} == {
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 3,
        "lastDeliveryOutcome": "InternalServerError",
    }
    assert record["lastHttpStatusCode"] == 500
    assert record["publishTime"] <= record["lastDeliveryAttemptTime"]
    assert {
        key: value for key, value in record.items() if key in _event(5).rendered(EventSchema.EVENT_GRID)
    } == (_event(5).rendered(EventSchema.EVENT_GRID))
    [written] = tmp_path.glob("*.json")
    assert json.loads(written.read_text()) == [record]


def test_a_bad_request_is_dead_lettered_at_once() -> None:
    grid = _run(EventGridEmulator(target=Scripted([400]), time_scale=FAST), [_event(2)])
    assert len(grid.attempts) == 1
    [record] = grid.dead_letters
    assert (record["deadLetterReason"], record["deliveryAttempts"], record["lastHttpStatusCode"]) == (
        "UndeliverableDueToHttpBadRequest",
        1,
        400,
    )


def test_retries_end_with_the_events_time_to_live() -> None:
    """24 hours of Event Grid's schedule in under a second: ten retries fit in the day, the
    eleventh would not (the exact attempt depends on how long the attempts themselves take)."""
    grid = _run(EventGridEmulator(target=Scripted([503] * 30), time_scale=1e-5), [_event(6)])
    [record] = grid.dead_letters
    assert record["deadLetterReason"] == "TimeToLiveExceeded"
    assert record["deliveryAttempts"] == len(grid.attempts)
    assert 9 <= len(grid.attempts) <= 11


def test_a_webhook_that_answers_too_late_has_timed_out(webhook: WebhookSink) -> None:
    webhook.stall("webhook", seconds=0.5)
    target = WebhookTarget(webhook.webhook_url(), timeout_s=0.1)
    grid = _run(EventGridEmulator(target=target, time_scale=FAST), [_event(3)])
    assert [(a.outcome, a.status) for a in grid.attempts] == [("TimedOut", 0), ("Succeeded", 202)]
    assert len(webhook.messages("webhook")) == 1


def test_wait_idle_says_what_is_still_to_do() -> None:
    grid = EventGridEmulator(target=Scripted(), delay_s=5.0)
    grid.publish(_event(4))
    with grid, pytest.raises(TimeoutError, match="1 deliveries scheduled"):
        grid.wait_idle(0.2)


# -- in the whole lab ---------------------------------------------------------------------------


def test_the_lab_delivers_its_arm_writes_while_subscribed(pki: LabPki) -> None:
    with LabServices(walkthrough_estate()) as lab:
        grid = lab.subscribe(EventGridEmulator(target=WebhookTarget(lab.sinks.webhook_url())))
        _tighten(lab.arm, pki)
        grid.wait_idle(IDLE_S)
        [received] = lab.sinks.messages("webhook")
        [event] = received.json()
        assert event["subject"].endswith("/vaults/kv-pl-demo")
        assert event["data"]["httpRequest"]["url"].startswith("https://127.0.0.1:")

        lab.use(walkthrough_estate())  # a fresh world: the subscription has ended
        assert lab.events is None and lab.arm.publish is None
        _tighten(lab.arm, pki)
        assert grid.published == [grid.published[0]] and lab.sinks.messages("webhook") == []
