"""A scan of twelve subscriptions above the Resource Graph threshold: the vault someone loosened
between two scans gets KV301 naming who did it, from Resource Graph's change history; a fault of
that history names nobody and hides nothing; a posture with systemData never asks it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault
from lab.resourcegraph import QUERY_ROUTE
from lab.services import LabServices
from lab.tls import lab_pki
from monitor.app.runtime import build_change_history, build_runtime
from monitor.app.scan import ScanOutcome, ScanRequest, ScanRuntime, run_scan
from monitor.config.settings import Settings
from monitor.model import ActorSource, ChangeActor, ChangeKind, ErrorSource, Finding
from monitor.sources.change_history import ResourceGraphChangeHistory
from monitor.store import Store, open_store
from tests.changes.conftest import (
    CHANGER_APP_ID,
    add_firewalled_vaults,
    fast_history,
    open_firewall,
    subscription,
)

SUBSCRIPTIONS = tuple(subscription(index) for index in range(12))


def twelve_subscriptions() -> Estate:
    estate = Estate()
    for subscription_id in SUBSCRIPTIONS:
        add_firewalled_vaults(estate, subscription_id, 2)
    return estate


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    with LabServices(Estate()) as services:
        yield services


@pytest.fixture
def estate(lab: LabServices) -> Estate:
    estate = twelve_subscriptions()
    lab.use(estate)
    lab.arm.server.request_counts.clear()
    return estate


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_path=tmp_path / "kvmon.db")
    yield opened
    opened.close()


def runtime_for(lab: LabServices, store: Store, *, threshold: int) -> ScanRuntime:
    """``build_runtime`` as the CLI builds it (``auto`` inventory), the change history with this
    suite's short timeouts."""
    environ = {
        **lab.environ(subscriptions=SUBSCRIPTIONS, workspaces=(), baseline=None, channels=False),
        "KVMON_RESOURCE_GRAPH_THRESHOLD": str(threshold),
    }
    runtime = build_runtime(
        Settings.from_environ(environ), environ=environ, credential=LabCredential(), store=store
    )
    runtime.change_history = fast_history(lab.arm.url, lab_pki())
    return runtime


def scan(runtime: ScanRuntime, **request: object) -> ScanOutcome:
    return run_scan(
        ScanRequest(subscriptions=SUBSCRIPTIONS, probe=False, logs=False, notify=False, **request),  # type: ignore[arg-type]
        runtime,
    )


def kv301(outcome: ScanOutcome) -> list[Finding]:
    return [f for f in outcome.report.findings if f.rule_id == "KV301"]


def graph_queries(lab: LabServices) -> int:
    return lab.arm.server.request_counts[QUERY_ROUTE]


def test_kv301_names_who_loosened_the_vault_from_the_change_history(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    first = scan(runtime)
    assert kv301(first) == [] and len(first.report.postures) == 24
    assert all(p.last_modified_by is None for p in first.report.postures)  # Resource Graph: no systemData
    loosened = estate.subscriptions[SUBSCRIPTIONS[7]][1]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.arm.server.request_counts.clear()

    second = scan(runtime)
    [finding] = kv301(second)
    assert finding.vault_id.lower() == loosened
    actor = finding.evidence["actor"]
    assert actor["source"] == ActorSource.RESOURCE_CHANGES.value == "resource-changes"
    assert (actor["app_id"], actor["principal_type"]) == (CHANGER_APP_ID, "Application")
    assert (actor["client_type"], actor["operation"]) == ("Unknown", "Microsoft.KeyVault/vaults/write")
    assert actor["changed_at"] is not None
    assert f"changed by {CHANGER_APP_ID} (Application) at " in finding.summary
    assert [change.kind for change in second.report.changes if change.finding.rule_id == "KV301"] == [
        ChangeKind.OPENED
    ]
    assert graph_queries(lab) == 2  # the inventory's one page, then one change query
    assert second.report.errors == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault(
            status=429,
            times=0,
            headers={"Retry-After": "0"},
            body={"error": {"code": "RateLimiting", "message": "throttled"}},
        ),
        Fault(status=403, body={"error": {"code": "AuthorizationFailed", "message": "no read"}}),
    ],
    ids=["throttled", "forbidden"],
)
def test_a_change_history_fault_is_a_scan_error_and_kv301_still_opens_naming_nobody(
    lab: LabServices, estate: Estate, store: Store, fault: Fault
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    scan(runtime)
    loosened = estate.subscriptions[SUBSCRIPTIONS[3]][0]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.resource_graph.fail_change_queries(fault)

    outcome = scan(runtime)
    [finding] = kv301(outcome)
    assert "actor" not in finding.evidence
    assert "(last modified by unknown at an unknown time)" in finding.summary
    assert [(e.source, e.scope, e.code) for e in outcome.report.errors] == [
        (ErrorSource.RESOURCE_GRAPH, SUBSCRIPTIONS[3], str(fault.status))
    ]
    assert [change.kind for change in outcome.report.changes if change.finding.rule_id == "KV301"] == [
        ChangeKind.OPENED
    ]


def test_a_change_inside_the_lag_names_nobody_and_the_next_scan_resolves_it(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    scan(runtime)
    loosened = estate.subscriptions[SUBSCRIPTIONS[0]][0]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.resource_graph.change_lag = dt.timedelta(minutes=5)

    opened = scan(runtime)
    [finding] = kv301(opened)
    assert "actor" not in finding.evidence and "last modified by unknown" in finding.summary
    assert opened.report.errors == []  # the history answered: nothing yet, which is no fault

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    estate.clock = lambda: later
    following = scan(runtime)
    # The stored posture holds the change now: KV301 does not fire, so it resolves; the actor is
    # in the history, but no KV301 asks for it, and nothing is announced twice.
    assert kv301(following) == []
    assert [change.kind for change in following.report.changes] == [ChangeKind.RESOLVED]


def test_an_actor_from_the_request_wins_and_the_history_is_not_asked_about_that_vault(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    scan(runtime)
    loosened = estate.subscriptions[SUBSCRIPTIONS[5]][0]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.arm.server.request_counts.clear()
    event = ChangeActor(source=ActorSource.EVENT, upn="lena@contoso.example", client_ip="203.0.113.7")

    outcome = scan(runtime, actors={loosened: event})
    [finding] = kv301(outcome)
    assert finding.evidence["actor"]["source"] == "event"
    assert "changed by lena@contoso.example (from 203.0.113.7)" in finding.summary
    assert graph_queries(lab) == 1  # the inventory only


def test_a_posture_with_system_data_never_asks_the_history(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    # Below the threshold ``auto`` reads ARM, whose vaults carry systemData; the runtime still has
    # the change history (the threshold is decided per scan), and leaves it alone.
    runtime = runtime_for(lab, store, threshold=20)
    assert runtime.change_history is not None
    scan(runtime)
    loosened = estate.subscriptions[SUBSCRIPTIONS[2]][1]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.arm.server.request_counts.clear()

    outcome = scan(runtime)
    [finding] = kv301(outcome)
    assert "actor" not in finding.evidence
    assert finding.evidence["last_modified_by"] == CHANGER_APP_ID
    assert f"(last modified by {CHANGER_APP_ID} at " in finding.summary
    assert graph_queries(lab) == 0


def test_an_unchanged_estate_asks_nothing_of_the_history(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    scan(runtime)
    lab.arm.server.request_counts.clear()
    assert kv301(scan(runtime)) == []
    assert graph_queries(lab) == 1  # the inventory's page


@pytest.mark.parametrize(("choice", "built"), [("arm", False), ("resource-graph", True), ("auto", True)])
def test_the_runtime_has_a_change_history_where_the_inventory_may_be_resource_graph(
    choice: str, built: bool
) -> None:
    settings = Settings.from_environ(
        {"KVMON_SUBSCRIPTIONS": SUBSCRIPTIONS[0], "KVMON_INVENTORY_SOURCE": choice}
    )
    history = build_change_history(settings, credential=LabCredential())
    assert isinstance(history, ResourceGraphChangeHistory) is built


def test_a_late_actor_on_a_one_vault_check_is_not_announced_again(
    lab: LabServices, estate: Estate, store: Store
) -> None:
    runtime = runtime_for(lab, store, threshold=10)
    scan(runtime)
    loosened = estate.subscriptions[SUBSCRIPTIONS[9]][0]
    name = estate.vaults[loosened]["name"]
    open_firewall(lab.arm.url, lab_pki(), estate.vaults[loosened]["id"])
    lab.resource_graph.change_lag = dt.timedelta(minutes=5)
    first = scan(runtime, vault_name=name)
    [unnamed] = kv301(first)
    assert "actor" not in unnamed.evidence
    assert [c.kind for c in first.report.changes if c.finding.rule_id == "KV301"] == [ChangeKind.OPENED]

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    estate.clock = lambda: later
    again = scan(runtime, vault_name=name)  # judged against the last full scan: the same change
    [named] = kv301(again)
    assert named.evidence["actor"]["app_id"] == CHANGER_APP_ID
    assert again.report.changes == []  # a new summary alone is no news, and nothing else moved
