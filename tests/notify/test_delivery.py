"""Delivery through the store's outbox to the lab's webhook sinks, on SQLite and on Table storage
(Azurite): payloads as each service receives them, faults, exactly-once across runs and across
concurrent senders, redaction, and the webhook signature."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.http import Fault
from lab.sinks import WebhookSink
from monitor.config.channels import ChannelConfig, ChannelKind
from monitor.config.secret import Secret
from monitor.model import ChangeKind, Severity
from monitor.outputs.notify.compose import WEBHOOK_SCHEMA, message_id
from monitor.outputs.notify.deliver import (
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryPolicy,
    Notifier,
    notifier_from_environ,
)
from monitor.scan_report import ScanReport
from monitor.store import open_store
from monitor.store.base import Store
from tests.notify.factories import SCAN_TIME, change, mixed_changes

HOOK_SECRET = "hmac-test-key-5b2e"
# Short timeouts and two tries per run keep the fault tests fast; waits go to the clock.
POLICY = DeliveryPolicy(
    connect_timeout_s=2.0, read_timeout_s=0.4, attempts=2, backoff_s=0.5, max_retry_after_s=30
)


class StepClock:
    """Time that moves only when the code under test waits: waits are instant and recorded."""

    def __init__(self, start: dt.datetime = SCAN_TIME) -> None:
        self._wall = start.timestamp()
        self._mono = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(round(seconds, 3))
            self._mono += seconds
            self._wall += seconds


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "tables"])
def open_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores over one outbox: SQLite in a fresh file, or Table storage in Azurite under
    fresh table names. Each call is a separate client, as separate runs would have."""
    opened: list[Store] = []
    if request.param == "sqlite":
        path = tmp_path / "kvmon.db"

        def factory() -> Store:
            opened.append(open_store(sqlite_path=path))
            return opened[-1]
    else:
        emulator = request.getfixturevalue("azurite")
        prefix = f"n{uuid.uuid4().hex[:12]}"

        def factory() -> Store:
            opened.append(open_store(connection_string=emulator.connection_string, table_prefix=prefix))
            return opened[-1]

    yield factory
    for store in opened:
        store.close()


def channels_for(sink: WebhookSink) -> list[ChannelConfig]:
    return [
        ChannelConfig(name="ops-teams", kind=ChannelKind.TEAMS, url=Secret(sink.teams_url())),
        ChannelConfig(name="dev-slack", kind=ChannelKind.SLACK, url=Secret(sink.slack_url())),
        ChannelConfig(
            name="siem", kind=ChannelKind.WEBHOOK, url=Secret(sink.webhook_url()), secret=Secret(HOOK_SECRET)
        ),
    ]


def notifier(
    store: Store, channels: list[ChannelConfig], session: requests.Session, clock: StepClock
) -> Notifier:
    return Notifier(store, channels, session=session, clock=clock, policy=POLICY)


def test_each_channel_receives_its_payload_once(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    store, clock = open_outbox(), StepClock()
    sender = notifier(store, channels_for(sink), session, clock)
    enqueued = sender.enqueue(
        mixed_changes(), scan_id="scan-1", now=SCAN_TIME, open_by_severity={Severity.HIGH: 4}
    )
    assert [m.channel for m in enqueued] == ["ops-teams", "dev-slack", "siem"]
    report = sender.deliver_pending(SCAN_TIME)
    assert sorted(report.delivered) == sorted(
        message_id("scan-1", name) for name in ("ops-teams", "dev-slack", "siem")
    )
    assert report.errors == () and report.pending == ()

    (teams,) = sink.messages("teams")
    envelope = teams.json()
    assert envelope["type"] == "message"
    assert envelope["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert envelope["attachments"][0]["content"]["type"] == "AdaptiveCard"
    assert teams.query["sig"] == "Xq3vLabSig0nature-9kT2wPzR7mN4"

    (slack,) = sink.messages("slack")
    message = slack.json()
    assert message["text"].startswith("kvmon: 4 opened, 1 changed, 1 resolved")
    assert message["blocks"][0]["type"] == "header"

    (hook,) = sink.messages("webhook")
    document = hook.json()
    assert document["schema"] == WEBHOOK_SCHEMA and document["message_id"] == message_id("scan-1", "siem")
    assert hook.header(MESSAGE_ID_HEADER) == document["message_id"]
    assert document["open_by_severity"]["high"] == 4
    assert hook.header("Content-Type") == "application/json; charset=utf-8"

    # Delivered means never again: not by another run, not by enqueuing the same scan again.
    assert store.pending_messages() == []
    again = notifier(open_outbox(), channels_for(sink), session, StepClock())
    assert again.enqueue(mixed_changes(), scan_id="scan-1", now=SCAN_TIME)  # composed again...
    assert again.deliver_pending(SCAN_TIME).delivered == ()  # ...but stored once, already delivered
    assert len(sink.received) == 3


def test_the_webhook_signature_verifies_over_timestamp_and_raw_body(
    open_outbox: StoreFactory, session: requests.Session
) -> None:
    clock = StepClock()
    # The sink checks the signature as docs/webhook-schema.md tells receivers to, on the same clock.
    with WebhookSink(webhook_secret=HOOK_SECRET, clock=clock.time) as sink:
        channel = ChannelConfig(
            name="siem", kind=ChannelKind.WEBHOOK, url=Secret(sink.webhook_url()), secret=Secret(HOOK_SECRET)
        )
        sender = notifier(open_outbox(), [channel], session, clock)
        sender.enqueue([change(ChangeKind.OPENED)], scan_id="scan-sig", now=SCAN_TIME)
        assert len(sender.deliver_pending(SCAN_TIME).delivered) == 1
        (hook,) = sink.messages("webhook")
        timestamp, signature = hook.header(TIMESTAMP_HEADER), hook.header(SIGNATURE_HEADER)
        assert timestamp == str(int(SCAN_TIME.timestamp()))
        expected = hmac.new(
            HOOK_SECRET.encode(), f"{timestamp}.".encode() + hook.body, hashlib.sha256
        ).hexdigest()
        assert signature == f"sha256={expected}"
        # The body is compact UTF-8 JSON; re-serialising it differently would break the signature.
        assert hook.body == json.dumps(hook.json(), ensure_ascii=False, separators=(",", ":")).encode()

        # A sender with the wrong key is refused by the receiver and its message stays pending.
        wrong = ChannelConfig(
            name="siem", kind=ChannelKind.WEBHOOK, url=Secret(sink.webhook_url()), secret=Secret("wrong-key")
        )
        other = notifier(open_outbox(), [wrong], session, clock)
        other.enqueue([change(ChangeKind.OPENED)], scan_id="scan-wrong", now=SCAN_TIME)
        report = other.deliver_pending(SCAN_TIME)
        assert report.pending == (message_id("scan-wrong", "siem"),)
        assert report.errors[0].code == "401"
        assert [r.rejected for r in sink.rejected] == ["signature does not match"]


FAULTS: dict[str, Callable[[WebhookSink, str, int], None]] = {
    "429-retry-after": lambda sink, service, times: sink.throttle(service, retry_after="7", times=times),
    "500": lambda sink, service, times: sink.fail(service, status=500, times=times),
    "timeout": lambda sink, service, times: sink.stall(service, seconds=1.0, times=times),
    "reset": lambda sink, service, times: sink.reset(service, times=times),
    "teams-200-throttled": lambda sink, service, times: sink.teams_throttled_ok(times=times),
}
EXPECTED_CODE = {
    "429-retry-after": "throttled",
    "500": "500",
    "timeout": "timeout",
    "reset": "connection",
    "teams-200-throttled": "throttled",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failed_message_is_delivered_exactly_once_after_the_sink_recovers(
    fault: str, open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    service, name = ("teams", "ops-teams") if fault.startswith("teams") else ("slack", "dev-slack")
    channel = next(c for c in channels_for(sink) if c.name == name)
    # Every try of the first run fails.
    FAULTS[fault](sink, service, POLICY.attempts)
    first_clock = StepClock()
    first = notifier(open_outbox(), [channel], session, first_clock)
    first.enqueue(mixed_changes(), scan_id="scan-f", now=SCAN_TIME)
    report = first.deliver_pending(SCAN_TIME)
    wanted = message_id("scan-f", name)
    assert (report.delivered, report.pending) == ((), (wanted,))
    (error,) = report.errors
    assert (error.source, error.scope, error.code) == ("notify", name, EXPECTED_CODE[fault])
    assert "stays pending for the next run" in error.message
    assert sink.messages(service) == []
    if fault == "429-retry-after":
        assert first_clock.sleeps == [7.0]  # Retry-After honoured between the tries
    (pending,) = open_outbox().pending_messages()
    assert pending.attempts == 1 and pending.last_error is not None and pending.lease_until is None

    # The next run (a new process: new store client, new notifier) finds it and delivers it.
    second = notifier(open_outbox(), [channel], session, StepClock(SCAN_TIME + dt.timedelta(minutes=15)))
    assert second.deliver_pending(SCAN_TIME + dt.timedelta(minutes=15)).delivered == (wanted,)
    # And a third run sends nothing more.
    third = notifier(open_outbox(), [channel], session, StepClock(SCAN_TIME + dt.timedelta(minutes=30)))
    assert third.deliver_pending(SCAN_TIME + dt.timedelta(minutes=30)).delivered == ()
    assert len(sink.messages(service)) == 1
    assert open_outbox().pending_messages() == []


def test_a_throttled_try_is_retried_in_the_same_run_after_retry_after(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    sink.throttle("slack", retry_after="3", times=1)
    clock = StepClock()
    sender = notifier(open_outbox(), [channels_for(sink)[1]], session, clock)
    sender.enqueue(mixed_changes(), scan_id="scan-r", now=SCAN_TIME)
    report = sender.deliver_pending(SCAN_TIME)
    assert report.delivered == (message_id("scan-r", "dev-slack"),) and report.errors == ()
    assert clock.sleeps == [3.0]
    assert len(sink.messages("slack")) == 1


def test_a_retry_after_longer_than_a_run_waits_is_left_to_the_next_run(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    sink.throttle("slack", retry_after="3600", times=1)
    clock = StepClock()
    sender = notifier(open_outbox(), [channels_for(sink)[1]], session, clock)
    sender.enqueue(mixed_changes(), scan_id="scan-long", now=SCAN_TIME)
    report = sender.deliver_pending(SCAN_TIME)
    assert report.pending and clock.sleeps == []
    assert "Retry-After 3600 s is longer than this run waits" in report.errors[0].message
    assert sink.server.request_counts["slack"] == 1


@pytest.mark.parametrize(("name", "pace"), [("ops-teams", 0.25), ("dev-slack", 1.0)])
def test_messages_to_one_channel_are_paced_within_the_services_rate(
    name: str, pace: float, open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    clock = StepClock()
    channel = next(c for c in channels_for(sink) if c.name == name)
    sender = notifier(open_outbox(), [channel], session, clock)
    for index in range(3):
        sender.enqueue(mixed_changes(), scan_id=f"scan-{index}", now=SCAN_TIME + dt.timedelta(seconds=index))
    assert len(sender.deliver_pending(SCAN_TIME).delivered) == 3
    # Nothing else moves the clock: every wait is pacing (Teams about 4/s, Slack about 1/s).
    assert clock.sleeps == [pace, pace]


def test_two_concurrent_runs_send_each_pending_message_once(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    hook = channels_for(sink)[2]
    setup = notifier(open_outbox(), [hook], session, StepClock())
    scans = [f"scan-c{index}" for index in range(6)]
    for scan in scans:
        setup.enqueue([change(ChangeKind.OPENED)], scan_id=scan, now=SCAN_TIME)
    # Each answer takes a while, so one run is mid-send while the other lists and claims.
    sink.server.latency_s = 0.15
    barrier = threading.Barrier(2)
    reports: list[Any] = []

    def run() -> None:
        with requests.Session() as own_session:
            own_session.verify = session.verify
            runner = notifier(open_outbox(), [hook], own_session, StepClock())
            barrier.wait()
            reports.append(runner.deliver_pending(SCAN_TIME))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(reports) == 2
    delivered = [mid for report in reports for mid in report.delivered]
    assert sorted(delivered) == sorted(message_id(scan, "siem") for scan in scans)
    received = [item.json()["message_id"] for item in sink.messages("webhook")]
    assert sorted(received) == sorted(delivered)  # every message once, none twice
    assert all(report.errors == () for report in reports)


def test_a_message_another_run_is_sending_is_left_alone(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    """The deterministic interleaving: run B lists and claims while run A's POST is in flight."""
    hook = channels_for(sink)[2]
    patient = DeliveryPolicy(read_timeout_s=10.0, attempts=1)
    setup = Notifier(open_outbox(), [hook], session=session, clock=StepClock(), policy=patient)
    (message,) = setup.enqueue([change(ChangeKind.OPENED)], scan_id="scan-held", now=SCAN_TIME)
    sink.server.inject(r"^/hooks/", Fault(delay_s=2.0))  # holds A's request, then answers it
    reports: dict[str, Any] = {}

    def run_a() -> None:
        runner = Notifier(open_outbox(), [hook], session=session, clock=StepClock(), policy=patient)
        reports["a"] = runner.deliver_pending(SCAN_TIME)

    thread_a = threading.Thread(target=run_a)
    thread_a.start()
    deadline = time.monotonic() + 10
    while sink.server.request_counts["webhook"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.server.request_counts["webhook"] == 1  # A has claimed and is sending
    later = SCAN_TIME + dt.timedelta(seconds=1)
    reports["b"] = Notifier(
        open_outbox(), [hook], session=session, clock=StepClock(later), policy=patient
    ).deliver_pending(later)
    thread_a.join(timeout=30)
    assert reports["b"].skipped == (message.id,) and reports["b"].delivered == ()
    assert reports["a"].delivered == (message.id,)
    assert len(sink.messages("webhook")) == 1


def test_a_failing_delivery_leaks_no_part_of_the_url(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    teams_secret_parts = (
        "6f1c9d0e2b7a4c5e8d3f0a1b2c3d4e5f",
        "Xq3vLabSig0nature-9kT2wPzR7mN4",
        "%2Ftriggers%2Fmanual%2Frun",
    )
    slack_secret_parts = ("T0LAB0001", "B0LAB0002", "labSlackT0ken7Hq2xW9vR4mZ")
    teams, slack = channels_for(sink)[:2]
    # A Slack URL on a port nobody listens on: the connection error names host, port and path.
    closed = ChannelConfig(
        name="dev-slack",
        kind=ChannelKind.SLACK,
        url=Secret(slack.url.reveal().replace(str(sink.server.port), "9")),
    )
    sink.fail("teams", status=500, times=1)
    sink.reset("teams", times=1)
    store = open_outbox()
    sender = notifier(store, [teams, closed], session, StepClock())
    with caplog.at_level(logging.DEBUG):
        sender.enqueue(mixed_changes(), scan_id="scan-leak", now=SCAN_TIME)
        report = sender.deliver_pending(SCAN_TIME)
    assert len(report.errors) == 2 and report.delivered == ()
    # The logs did capture the HTTP stack's records (which quote paths), redacted.
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    assert "[redacted]" in caplog.text
    outputs = [
        caplog.text,
        repr(report),
        json.dumps([error.message for error in report.errors]),
        json.dumps([m.last_error for m in store.pending_messages()]),
        repr(sender.channels),
    ]
    for output in outputs:
        for part in teams_secret_parts + slack_secret_parts:
            assert part not in output, (part, output[:2000])


def test_a_message_for_a_channel_no_longer_configured_waits(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    hook = channels_for(sink)[2]
    notifier(open_outbox(), [hook], session, StepClock()).enqueue(
        [change(ChangeKind.OPENED)], scan_id="scan-gone", now=SCAN_TIME
    )
    without = notifier(open_outbox(), channels_for(sink)[:2], session, StepClock()).deliver_pending(SCAN_TIME)
    assert without.skipped == (message_id("scan-gone", "siem"),)
    assert [(e.scope, e.code) for e in without.errors] == [("siem", "unknown-channel")]
    assert sink.received == []
    back = notifier(open_outbox(), [hook], session, StepClock()).deliver_pending(SCAN_TIME)
    assert back.delivered == (message_id("scan-gone", "siem"),)


def test_the_scan_hook_enqueues_and_delivers(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    changes = mixed_changes()
    report = ScanReport(
        scan_id="scan-hook",
        started_at=SCAN_TIME,
        finished_at=SCAN_TIME,
        findings=[c.finding for c in changes if c.kind is not ChangeKind.RESOLVED],
        changes=changes,
    )
    errors = notifier(open_outbox(), channels_for(sink), session, StepClock()).notify(report, now=SCAN_TIME)
    assert errors == []
    assert len(sink.received) == 3
    document = sink.messages("webhook")[0].json()
    assert document["open_by_severity"] == {"critical": 1, "high": 2, "medium": 0, "low": 1, "info": 1}


def test_the_scan_hook_sends_its_messages_without_claiming_them_and_other_runs_leave_them_alone(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    """A scan's messages are stored leased to its run: it sends them without a claim, and a run
    sweeping the outbox meanwhile (another event's) skips them, while a message left pending by
    an earlier failed run is still swept, oldest first."""
    hook = channels_for(sink)[2]
    store = open_outbox()
    earlier = SCAN_TIME - dt.timedelta(minutes=1)
    (leftover,) = notifier(store, [hook], session, StepClock()).enqueue(
        [change(ChangeKind.OPENED)], scan_id="scan-earlier", now=earlier
    )
    claims: list[str] = []
    original = store.claim_message

    def counted(message: Any, **kwargs: Any) -> Any:
        claims.append(message.id)
        return original(message, **kwargs)

    store.claim_message = counted  # type: ignore[method-assign]
    changes = [change(ChangeKind.OPENED)]
    report = ScanReport(
        scan_id="scan-own",
        started_at=SCAN_TIME,
        finished_at=SCAN_TIME,
        findings=[c.finding for c in changes],
        changes=changes,
    )
    run = notifier(store, [hook], session, StepClock())
    held = run.enqueue(
        report.changes, scan_id=report.scan_id, now=SCAN_TIME, lease_until=SCAN_TIME + POLICY.lease
    )
    sweeper = notifier(open_outbox(), [hook], session, StepClock()).deliver_pending(SCAN_TIME)
    assert sweeper.delivered == (leftover.id,)  # the earlier run's message, not this run's
    assert sweeper.skipped == (held[0].id,)

    assert run.deliver_pending(SCAN_TIME, held=held).delivered == (held[0].id,)
    assert claims == []  # its own message needed no claim; the leftover was delivered already
    # The scan told again: its messages are stored already, nothing is sent twice.
    assert notifier(store, [hook], session, StepClock()).notify(report, now=SCAN_TIME) == []
    received = [item.json()["message_id"] for item in sink.messages("webhook")]
    assert received == [leftover.id, held[0].id]


def test_runs_sharing_a_sweep_pace_send_their_own_at_once_and_sweep_leftovers_in_turn(
    open_outbox: StoreFactory, sink: WebhookSink, session: requests.Session
) -> None:
    """The Functions app's runs (SharedRuntime) sweep the outbox for other runs' leftovers at most
    once a pace between them; each run's own messages go at once."""
    hook = channels_for(sink)[2]
    store, clock = open_outbox(), StepClock()

    def report(scan_id: str) -> ScanReport:
        changes = [change(ChangeKind.OPENED)]
        return ScanReport(
            scan_id=scan_id,
            started_at=SCAN_TIME,
            finished_at=SCAN_TIME,
            findings=[c.finding for c in changes],
            changes=changes,
        )

    def leftover(scan_id: str) -> str:
        (message,) = notifier(store, [hook], session, clock).enqueue(
            [change(ChangeKind.OPENED)], scan_id=scan_id, now=SCAN_TIME - dt.timedelta(minutes=5)
        )
        return message.id

    first = notifier(store, [hook], session, clock).sweeping_every(60)
    early = leftover("scan-failed-before")
    assert first.notify(report("scan-a"), now=SCAN_TIME) == []  # the first run sweeps
    late = leftover("scan-failed-meanwhile")
    assert first.for_another_run().notify(report("scan-b"), now=SCAN_TIME) == []  # its own only
    received = [item.json()["message_id"] for item in sink.messages("webhook")]
    assert received == [early, message_id("scan-a", "siem"), message_id("scan-b", "siem")]

    clock.sleep(61)  # the pace has passed: the next run sweeps again
    assert first.for_another_run().notify(report("scan-c"), now=SCAN_TIME) == []
    received = [item.json()["message_id"] for item in sink.messages("webhook")]
    assert received[3:] == [late, message_id("scan-c", "siem")]
    assert store.pending_messages() == []


def test_the_notifier_is_built_from_settings(open_outbox: StoreFactory, sink: WebhookSink, pki: Any) -> None:
    store = open_outbox()
    assert notifier_from_environ(store, {}) is None
    environ = {
        "KVMON_CHANNELS": json.dumps([{"name": "siem", "kind": "webhook", "url_setting": "HOOK_URL"}]),
        "HOOK_URL": sink.webhook_url(),
    }
    built = notifier_from_environ(store, environ, verify=pki.ca_path)
    assert built is not None and [c.name for c in built.channels] == ["siem"]
    built.enqueue([change(ChangeKind.OPENED)], scan_id="scan-env", now=SCAN_TIME)
    assert built.deliver_pending(SCAN_TIME).delivered == (message_id("scan-env", "siem"),)
