"""Step 4 of the walkthrough: a second person reopens kv-se-demo through ARM, the lab's Event Grid
delivers the write to kvmon's event path, and Teams and Slack name that person and their address
before any timer scan; the probe follow-up confirms; the pipeline's fix resolves it, by event."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter

from lab.demo import (
    EVENT_TIMEOUT_S,
    PLATFORM_PIPELINE_APP_ID,
    SE_VAULT,
    SECOND_PERSON_NAME,
    SECOND_PERSON_OBJECT_ID,
    SECOND_PERSON_UPN,
    EventView,
    change_lines,
)
from lab.eventgrid import ResourceEventType
from monitor.app.events import EventStatus
from monitor.model import ChangeKind, ScanTrigger, Verdict
from tests.demo.conftest import DemoRun
from tests.demo.test_demo import expected_lines, sink_lines

REOPENED = {"KV001", "KV002", "KV011", "KV301"}  # what the configuration shows, without probes
PROBED = {"KV101"}  # what only the probes show


def event(demo: DemoRun, index: int) -> EventView:
    return demo.result.steps[3].events[index]


def client_address(view: EventView) -> str:
    (published,) = view.published
    return str(published.data["httpRequest"]["clientIpAddress"])


def handler_lines(view: EventView) -> Counter[tuple[str, str]]:
    return Counter(
        (change.kind.value.capitalize(), change.finding.rule_id)
        for handled in view.handled
        for result in handled.results
        for change in result.changes
    )


def event_lines(view: EventView, service: str) -> Counter[tuple[str, str]]:
    assert len(view.messages[service]) == 1, f"{service} got {len(view.messages[service])} messages"
    return Counter(change_lines(service, view.messages[service][0].json()))


# -- the reopening ----------------------------------------------------------------------------


def test_the_write_is_published_once_with_the_request_and_delivered_twice_but_handled_once(
    demo: DemoRun,
) -> None:
    view = event(demo, 0)
    (published,) = view.published
    assert published.event_type is ResourceEventType.WRITE_SUCCESS
    assert published.subject.endswith(f"/vaults/{SE_VAULT}")
    assert published.data["httpRequest"]["method"] == "PATCH"
    assert ipaddress.ip_address(client_address(view)).is_loopback
    assert [attempt.duplicate for attempt in view.deliveries] == [False, True]
    assert all(attempt.succeeded for attempt in view.deliveries)
    assert view.statuses() == [EventStatus.PROCESSED, EventStatus.DUPLICATE]


def test_the_alert_names_the_person_and_their_address(demo: DemoRun) -> None:
    view = event(demo, 0)
    address = client_address(view)
    for service in ("teams", "slack"):
        (message,) = view.messages[service]
        told = json.dumps(message.json(), ensure_ascii=False)
        assert f"changed by {SECOND_PERSON_UPN} (User, from {address})" in told, service
    (kv301,) = [f for f in view.findings(SE_VAULT) if f.rule_id == "KV301"]
    assert kv301.evidence["direction"] == "loosening"
    actor = kv301.evidence["actor"]
    assert actor["source"] == "event"
    assert (actor["name"], actor["upn"], actor["object_id"]) == (
        SECOND_PERSON_NAME,
        SECOND_PERSON_UPN,
        SECOND_PERSON_OBJECT_ID,
    )
    assert actor["client_ip"] == address
    assert actor["principal_type"] == "User"


def test_the_alert_comes_from_the_event_path_within_seconds_before_any_timer_scan(demo: DemoRun) -> None:
    view = event(demo, 0)
    last_timer_scan = demo.scan(3)
    interval = demo.scan(2, 1).at - demo.scan(2, 0).at
    assert last_timer_scan.at < view.written_at < last_timer_scan.at + interval
    # Between the write and the messages the store recorded the handler's one-vault read only.
    assert [(run.trigger, run.vault) for run in view.runs] == [(ScanTrigger.EVENT, view.published[0].subject)]
    processed = [r for h in view.handled for r in h.results if r.status is EventStatus.PROCESSED]
    assert [run.scan_id for run in view.runs] == [result.scan_id for result in processed]
    assert set(view.arrived_s) == {"teams", "slack"}
    assert all(0 < seconds < EVENT_TIMEOUT_S / 3 for seconds in view.arrived_s.values()), view.arrived_s
    for service in ("teams", "slack"):
        assert event_lines(view, service) == handler_lines(view)
        assert {rule for _, rule in event_lines(view, service)} == REOPENED  # no probe finding yet


def test_the_probe_follow_up_confirms_from_the_internet(demo: DemoRun) -> None:
    view = event(demo, 0)
    (follow_up,) = view.follow_ups
    assert follow_up.outcome.report.errors == []
    internet = follow_up.probe(SE_VAULT, "internet")
    assert internet is not None and internet.verdict is Verdict.ADMITTED
    assert internet.seen_address == "127.30.0.5"
    assert follow_up.opened == {SE_VAULT: PROBED}
    assert "internet" in {f.subject for f in follow_up.findings(SE_VAULT) if f.rule_id == "KV101"}
    assert view.follow_up_s > max(view.arrived_s.values())  # the alert did not wait for it
    confirmed = {
        change.finding.rule_id: change.confirmed_by
        for change in follow_up.outcome.report.changes
        if change.kind is ChangeKind.CONFIRMED
    }
    # The configuration's claims, now proven, by the internet's admission above all.
    assert set(confirmed) == {"KV001", "KV002"}
    assert all(proof and proof.startswith("KV101 [internet]: ") for proof in confirmed.values())
    for service in ("teams", "slack"):
        assert sink_lines(follow_up, service) == expected_lines(follow_up)
        assert {rule for _, rule in sink_lines(follow_up, service)} == PROBED | set(confirmed)
        assert "Confirmed by the probes: KV101 [internet]" in json.dumps(
            follow_up.messages[service][0].json()
        )


# -- the fix ----------------------------------------------------------------------------------


def test_the_pipelines_fix_resolves_by_event_and_its_follow_up_resolves_the_probes(demo: DemoRun) -> None:
    reopened, fixed = event(demo, 0), event(demo, 1)
    assert fixed.written_at > reopened.written_at
    assert fixed.statuses() == [EventStatus.PROCESSED, EventStatus.DUPLICATE]
    assert [run.trigger for run in fixed.runs] == [ScanTrigger.EVENT]
    assert fixed.changed(ChangeKind.RESOLVED) == {SE_VAULT: REOPENED - {"KV301"}}
    assert fixed.changed(ChangeKind.CHANGED) == {SE_VAULT: {"KV301"}}  # high (loosening) to info
    assert fixed.changed(ChangeKind.OPENED, ChangeKind.REOPENED) == {}
    for service in ("teams", "slack"):
        assert event_lines(fixed, service) == handler_lines(fixed)
        assert event_lines(fixed, service)[("Changed", "KV301")] == 1
        assert {event for event, _ in event_lines(fixed, service)} == {"Resolved", "Changed"}
    (kv301,) = [f for f in fixed.findings(SE_VAULT) if f.rule_id == "KV301"]
    assert kv301.evidence["direction"] == "tightening"
    assert kv301.evidence["actor"]["app_id"] == PLATFORM_PIPELINE_APP_ID
    (follow_up,) = fixed.follow_ups
    internet = follow_up.probe(SE_VAULT, "internet")
    assert internet is not None and internet.verdict is Verdict.REFUSED_FIREWALL
    assert follow_up.resolved == {SE_VAULT: PROBED}
    assert {rule for rule in (f.rule_id for f in follow_up.findings(SE_VAULT))} == {"KV301"}
    for service in ("teams", "slack"):
        assert {event for event, _ in sink_lines(follow_up, service)} == {"Resolved"}


def test_each_finding_is_told_once_per_transition(demo: DemoRun) -> None:
    told: Counter[tuple[str, ChangeKind]] = Counter()
    for view in demo.result.steps[3].events:
        for change in (c for h in view.handled for r in h.results for c in r.changes):
            told[(change.finding.id, change.kind)] += 1
        for follow_up in view.follow_ups:
            for change in follow_up.outcome.report.changes:
                told[(change.finding.id, change.kind)] += 1
    assert told and max(told.values()) == 1, told
    lines = Counter(
        line
        for view in demo.result.steps[3].events
        for messages in [view.messages, *(f.messages for f in view.follow_ups)]
        for service, received in messages.items()
        for message in received
        for line in [(service, *pair) for pair in change_lines(service, message.json())]
    )
    # Four sink messages per write (two services, the event and the follow-up); one line per change.
    assert sum(lines.values()) == 2 * sum(told.values())


def test_the_printed_step_tells_who_from_where_and_how_fast(demo: DemoRun) -> None:
    output = demo.output
    address = client_address(event(demo, 0))
    step4 = output[output.index("Step 4 · ") :]
    for text in (
        f"Step 4 · {SE_VAULT} reopened by a second person",
        f"{SECOND_PERSON_NAME} ({SECOND_PERSON_UPN}, object id {SECOND_PERSON_OBJECT_ID})",
        "Reopened at ",
        "Event Grid delivered it 2 times (at least once): duplicate 1, processed 1",
        "scans recorded since the write: 1, trigger event",
        f"teams says: networkAcls.defaultAction Deny → Allow (loosening) (changed by {SECOND_PERSON_UPN} "
        f"(User, from {address})",
        "s after the write: 1 message, Reopened 4: KV001, KV002, KV011, KV301",
        "Probe follow-up (",
        "internet probe: admitted, the vault saw 127.30.0.5",
        "Fixed at ",
        "s after the write: 1 message, Changed 1: KV301; Resolved 3: KV001, KV002, KV011",
        "internet probe: refused-firewall",
        "KV301 stays open",
    ):
        assert text in step4, text
    assert "Traceback" not in output and "WARNING" not in output
