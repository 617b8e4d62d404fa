"""KV301 and KV302 through evaluation, with the previous posture read back from a real store."""

from __future__ import annotations

import dataclasses
import datetime as dt

from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.keyvault.drift import (
    EVENT_GRACE,
    change_without_event,
    disappeared_vault_findings,
    network_changed,
    vault_appeared_or_disappeared,
)
from monitor.model import ActorSource, ChangeActor, Severity, VirtualNetworkRule
from monitor.store.base import PostureSnapshot
from tests.store.helpers import SUB_A, SUB_B, T0, ip_rule, posture, subnet_id

CHANGED_AT = dt.datetime(2026, 3, 2, 8, 5, tzinfo=dt.UTC)


def drift_findings(current, previous, *, first_scan_of_scope=False):
    facts = VaultFacts(
        posture=current, policy=VaultPolicy(), previous=previous, first_scan_of_scope=first_scan_of_scope
    )
    return evaluate([facts], today=T0.date(), rules=(network_changed, vault_appeared_or_disappeared)).findings


def test_two_scans_with_a_change_between_them_give_kv301_with_the_exact_diff(store) -> None:
    first = posture("kv-Payments")
    store.save_postures([PostureSnapshot(first, scan_id="scan-1", seen_at=T0)])

    second = dataclasses.replace(
        first,
        default_action="Allow",
        ip_rules=(ip_rule("203.0.113.10/32"), ip_rule("0.0.0.0/0")),
        virtual_network_rules=(),
        last_modified_by="mallory@contoso.com",
        last_modified_by_type="User",
        last_modified_at=CHANGED_AT,
    )
    previous = store.load_postures(vault_keys=[second.key])[second.key].posture
    (found,) = drift_findings(second, previous)

    assert (found.rule_id, found.severity, found.vault_id, found.subject) == (
        "KV301",
        Severity.HIGH,
        first.id,
        "",
    )
    assert found.evidence == {
        "direction": "mixed",
        "changes": [
            {
                "field": "networkAcls.defaultAction",
                "change": "changed",
                "before": "Deny",
                "after": "Allow",
                "direction": "loosening",
            },
            {
                "field": "networkAcls.ipRules",
                "change": "added",
                "before": None,
                "after": "0.0.0.0/0",
                "direction": "loosening",
            },
            {
                "field": "networkAcls.virtualNetworkRules",
                "change": "removed",
                "before": subnet_id("serviceEndpoint"),
                "after": None,
                "direction": "tightening",
            },
        ],
        "last_modified_by": "mallory@contoso.com",
        "last_modified_by_type": "User",
        "last_modified_at": "2026-03-02T08:05:00Z",
    }
    assert found.summary.startswith(
        "networkAcls.defaultAction Deny → Allow (loosening); networkAcls.ipRules added 0.0.0.0/0"
    )
    assert found.summary.endswith("(last modified by mallory@contoso.com at 2026-03-02T08:05:00Z)")


def test_only_tightening_is_info() -> None:
    before = posture(
        virtual_network_rules=(VirtualNetworkRule(subnet_id("a")), VirtualNetworkRule(subnet_id("b")))
    )
    after = posture(
        public_network_access="Disabled", virtual_network_rules=(VirtualNetworkRule(subnet_id("a")),)
    )
    (found,) = drift_findings(after, before)
    assert found.severity == Severity.INFO and found.evidence["direction"] == "tightening"


def test_no_previous_or_no_change_gives_no_kv301() -> None:
    assert drift_findings(posture(), posture()) == []
    assert drift_findings(posture(), None, first_scan_of_scope=True) == []


def test_kv302_a_vault_appeared_in_a_known_scope() -> None:
    (found,) = drift_findings(posture("kv-new"), None)
    assert (found.rule_id, found.severity, found.subject) == ("KV302", Severity.INFO, "appeared")
    assert found.evidence["event"] == "appeared"


def test_kv302_a_vault_disappeared_only_when_its_subscription_listed_completely() -> None:
    gone, failed, kept = posture("kv-gone"), posture("kv-elsewhere", subscription=SUB_B), posture("kv-kept")
    previous = {p.key: p for p in (gone, failed, kept)}

    found = disappeared_vault_findings(
        previous=previous, current_keys=[kept.id.upper()], complete_subscriptions=[SUB_A.upper()]
    )

    assert [(f.rule_id, f.vault_id, f.subject, f.severity) for f in found] == [
        ("KV302", gone.id, "disappeared", Severity.INFO)
    ]
    assert "kv-gone" in found[0].remediation and SUB_A in found[0].summary


def test_kv301_names_the_actor_azure_told_of_beside_the_vaults_system_data() -> None:
    before = posture("kv-Payments")
    after = dataclasses.replace(
        before, default_action="Allow", last_modified_by="pipeline-app", last_modified_at=CHANGED_AT
    )
    actor = ChangeActor(
        source=ActorSource.EVENT,
        name="Mallory Example",
        upn="mallory@contoso.com",
        object_id="00000000-0000-0000-0000-00000000000a",
        principal_type="User",
        role="Contributor",
        client_ip="203.0.113.7",
        operation="Microsoft.KeyVault/vaults/write",
        changed_at=CHANGED_AT + dt.timedelta(seconds=1),
        correlation_id="corr-1",
    )
    facts = VaultFacts(posture=after, policy=VaultPolicy(), previous=before, actor=actor)
    (found,) = evaluate([facts], today=T0.date(), rules=(network_changed,)).findings

    assert found.summary.endswith(
        "(changed by mallory@contoso.com (User, from 203.0.113.7) at 2026-03-02T08:05:01Z)"
    )
    assert found.evidence["last_modified_by"] == "pipeline-app"  # systemData, kept as it was
    assert found.evidence["actor"] == {
        "source": "event",
        "name": "Mallory Example",
        "upn": "mallory@contoso.com",
        "app_id": None,
        "object_id": "00000000-0000-0000-0000-00000000000a",
        "principal_type": "User",
        "role": "Contributor",
        "client_ip": "203.0.113.7",
        "client_type": None,
        "operation": "Microsoft.KeyVault/vaults/write",
        "changed_at": "2026-03-02T08:05:01+00:00",
        "correlation_id": "corr-1",
    }


def test_an_actor_known_only_by_application_id_is_named_by_it() -> None:
    actor = ChangeActor(source=ActorSource.RESOURCE_CHANGES, app_id="11111111-2222-3333-4444-555555555555")
    assert actor.describe() == "11111111-2222-3333-4444-555555555555"
    assert ChangeActor(source=ActorSource.EVENT).describe() == "unknown"


def _unannounced(current, previous, *, event_feed=True, started=T0):
    facts = VaultFacts(
        posture=current,
        policy=VaultPolicy(),
        previous=previous,
        event_feed=event_feed,
        scan_started_at=started,
    )
    return evaluate([facts], today=T0.date(), rules=(change_without_event,)).findings


def test_kv303_a_change_a_scheduled_scan_finds_first_was_never_announced() -> None:
    before = posture("kv-Payments")
    after = dataclasses.replace(before, default_action="Allow", last_modified_at=CHANGED_AT)
    (found,) = _unannounced(after, before, started=CHANGED_AT + dt.timedelta(minutes=20))
    assert (found.rule_id, found.severity) == ("KV303", Severity.MEDIUM)
    assert found.evidence == {
        "changed_at": CHANGED_AT.isoformat(),
        "fields": ["networkAcls.defaultAction"],
        "subscription_id": before.subscription_id,
    }
    assert "no event announced them" in found.summary


def test_kv303_waits_while_the_event_may_still_be_on_its_way() -> None:
    before = posture("kv-Payments")
    after = dataclasses.replace(before, default_action="Allow", last_modified_at=CHANGED_AT)
    assert _unannounced(after, before, started=CHANGED_AT + EVENT_GRACE - dt.timedelta(seconds=1)) == []
    assert len(_unannounced(after, before, started=CHANGED_AT + EVENT_GRACE)) == 1


def test_kv303_without_an_event_feed_or_a_change_says_nothing() -> None:
    before = posture("kv-Payments")
    after = dataclasses.replace(before, default_action="Allow")
    assert _unannounced(after, before, event_feed=False) == []
    assert _unannounced(before, before) == []
    assert _unannounced(after, None) == []
    # A change of unknown time is reported: nothing says its event may still come.
    assert len(_unannounced(after, before)) == 1
