"""``run_scan`` of one vault by resource id: one GET (never a listing), judged against the stored
posture with the event's actor, stored as the vault's posture; gone on 404 only."""

from __future__ import annotations

import pytest

from lab.arm import GET_ROUTE, LIST_ROUTE
from lab.http import Fault
from lab.services import LabServices
from monitor.app.scan import ScanRequest, run_scan
from monitor.errors import InputError
from monitor.model import ChangeKind, FindingStatus, ScanTrigger
from monitor.store import Store
from tests.events_handler.conftest import MALLORY, OTHER_SUBSCRIPTION, lab_runtime, open_vault, vault_id

SUBSCRIPTIONS = ("00000000-0000-0000-0000-00000000a001",)


def _baseline(lab: LabServices, store: Store) -> None:
    """A timer scan of the subscription: the stored state an event is judged against."""
    runtime = lab_runtime(lab, store)
    report = run_scan(
        ScanRequest(subscriptions=SUBSCRIPTIONS, probe=False, logs=False, notify=False), runtime
    ).report
    assert report.errors == [] and len(report.postures) == 2
    lab.arm.server.request_counts.clear()


def _event_scan(vault: str, **overrides: object) -> ScanRequest:
    fields: dict[str, object] = {
        "subscriptions": SUBSCRIPTIONS,
        "vault_id": vault,
        "probe": False,
        "logs": False,
        "notify": False,
        "trigger": ScanTrigger.EVENT,
        "actors": {vault.lower(): MALLORY},
    }
    fields.update(overrides)
    return ScanRequest(**fields)  # type: ignore[arg-type]


def test_walkthrough_subscription_is_the_lab_default(lab: LabServices) -> None:
    assert lab.environ()["KVMON_SUBSCRIPTIONS"] == SUBSCRIPTIONS[0]


def test_one_get_judges_the_change_names_the_actor_and_stores_the_posture(
    lab: LabServices, sqlite_store: Store
) -> None:
    _baseline(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    open_vault(lab, "kv-se-demo")

    report = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report

    assert lab.arm.server.request_counts[GET_ROUTE] == 1
    assert lab.arm.server.request_counts[LIST_ROUTE] == 0
    assert report.scope == (SUBSCRIPTIONS[0],)
    drift = [f for f in report.findings if f.rule_id == "KV301"]
    assert len(drift) == 1 and "mallory@contoso.example" in drift[0].summary
    assert drift[0].evidence["actor"]["client_ip"] == "203.0.113.77"
    opened = {c.finding.rule_id for c in report.changes if c.kind is ChangeKind.OPENED}
    assert {"KV301", "KV001"} <= opened
    stored = sqlite_store.load_postures(vault_keys=[vault.lower()])[vault.lower()]
    assert stored.posture.default_action == "Allow" and stored.scan_id == report.scan_id
    (run,) = [r for r in sqlite_store.scan_runs() if r.scan_id == report.scan_id]
    assert run.vault == vault and run.trigger is ScanTrigger.EVENT


def test_the_same_state_read_again_opens_nothing_new(lab: LabServices, sqlite_store: Store) -> None:
    _baseline(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    open_vault(lab, "kv-se-demo")
    first = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report
    again = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report

    assert [c.kind for c in first.changes if c.finding.rule_id == "KV001"] == [ChangeKind.OPENED]
    # The stored posture is now the open one: nothing changes, KV001 and KV301 stay open untold.
    assert again.changes == []
    assert {"KV001", "KV301"} <= {f.rule_id for f in again.findings}
    # The next scan of the subscription finds no change since the event's read: KV301 resolves.
    timer = run_scan(
        ScanRequest(subscriptions=SUBSCRIPTIONS, probe=False, logs=False, notify=False),
        lab_runtime(lab, sqlite_store),
    ).report
    assert [(c.kind, c.finding.rule_id) for c in timer.changes] == [(ChangeKind.RESOLVED, "KV301")]


def test_a_vault_gone_on_404_disappears_and_its_findings_resolve(
    lab: LabServices, sqlite_store: Store
) -> None:
    _baseline(lab, sqlite_store)
    vault = vault_id(lab, "kv-pl-demo")
    open_before = {
        r.finding.rule_id
        for r in sqlite_store.load_findings(vault_keys=[vault.lower()], status=FindingStatus.OPEN).values()
    }
    assert open_before
    lab.estate.remove_vault(vault)

    report = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report

    assert lab.arm.server.request_counts[GET_ROUTE] == 1 and lab.arm.server.request_counts[LIST_ROUTE] == 0
    assert report.errors == []
    assert [(f.rule_id, f.subject) for f in report.findings] == [("KV302", "disappeared")]
    resolved = {c.finding.rule_id for c in report.changes if c.kind is ChangeKind.RESOLVED}
    assert resolved == open_before


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (
            Fault(
                status=429,
                body={"error": {"code": "TooManyRequests", "message": "throttled"}},
                headers={"Retry-After": "0"},
                times=0,
            ),
            "429",
        ),
        (Fault(status=403, body={"error": {"code": "AuthorizationFailed", "message": "no"}}, times=0), "403"),
        (Fault(delay_s=2.0, times=0), None),
    ],
    ids=["throttled", "forbidden", "timeout"],
)
def test_a_failed_get_is_an_error_never_gone_and_resolves_nothing(
    lab: LabServices, sqlite_store: Store, fault: Fault, code: str | None
) -> None:
    _baseline(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    open_before = set(sqlite_store.load_findings(status=FindingStatus.OPEN))
    stored_before = sqlite_store.load_postures(vault_keys=[vault.lower()])[vault.lower()]
    lab.arm.server.inject(r"(?i).*/vaults/kv-se-demo$", fault)

    report = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report

    assert report.postures == [] and report.findings == []
    assert [(e.scope, e.code) for e in report.errors] == [(vault, code)]
    assert report.changes == []
    assert set(sqlite_store.load_findings(status=FindingStatus.OPEN)) == open_before
    assert sqlite_store.load_postures(vault_keys=[vault.lower()])[vault.lower()] == stored_before


def test_a_404_for_the_subscription_is_an_error_not_gone(lab: LabServices, sqlite_store: Store) -> None:
    _baseline(lab, sqlite_store)
    vault = vault_id(lab, "kv-se-demo")
    lab.arm.server.inject(
        r"(?i).*/vaults/kv-se-demo$",
        Fault(status=404, body={"error": {"code": "SubscriptionNotFound", "message": "gone?"}}, times=0),
    )

    report = run_scan(_event_scan(vault), lab_runtime(lab, sqlite_store)).report

    assert [e.code for e in report.errors] == ["404"] and report.findings == [] and report.changes == []


def test_a_vault_outside_the_configured_subscriptions_is_never_read(lab: LabServices) -> None:
    before = lab.arm.server.total_requests
    foreign = (
        f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-x"
    )
    with pytest.raises(InputError, match="outside the configured scope"):
        _event_scan(foreign)
    with pytest.raises(InputError, match="not a Key Vault resource id"):
        _event_scan(
            f"/subscriptions/{SUBSCRIPTIONS[0]}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"
        )
    assert lab.arm.server.total_requests == before
