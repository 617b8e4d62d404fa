"""Drift under Network Security Perimeter: the association's access mode, profile and the profile's
accessRulesVersion tracked beside publicNetworkAccess and networkAcls; rule edits judged entry by
entry; KV301 on an association that re-opens a vault."""

from __future__ import annotations

from monitor.config.policy import VaultPolicy
from monitor.judge.drift import network_diff
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.model import PerimeterAccessRule, Severity, VaultPosture
from tests.judge.test_perimeter import EVERYONE, NARROW, association, perimetered, unreadable
from tests.rules.test_config_rules import ip, posture
from tests.store.helpers import T0


def changes(before: VaultPosture, after: VaultPosture) -> list[tuple[str, str, str | None, str | None, str]]:
    return [
        (c.field, c.change, c.before, c.after, c.direction.value) for c in network_diff(before, after).changes
    ]


def test_a_learning_association_on_a_disabled_vault_loosens_and_kv301_is_high() -> None:
    before = perimetered(posture(), None)
    after = perimetered(posture(), association("Learning", EVERYONE))
    assert changes(before, after) == [
        (
            "networkSecurityPerimeter.association",
            "added",
            None,
            "nsp-lab/defaultProfile [Learning]",
            "loosening",
        )
    ]
    facts = VaultFacts(posture=after, policy=VaultPolicy(), previous=before)
    [kv301] = [f for f in evaluate([facts], today=T0.date()).findings if f.rule_id == "KV301"]
    assert kv301.severity == Severity.HIGH


def test_removing_an_enforced_association_from_an_enabled_vault_is_neutral() -> None:
    enabled = posture(public_network_access="Enabled")
    assert changes(perimetered(enabled, association("Enforced")), perimetered(enabled, None)) == [
        (
            "networkSecurityPerimeter.association",
            "removed",
            "nsp-lab/defaultProfile [Enforced]",
            None,
            "neutral",
        )
    ]


def test_the_access_mode_towards_learning_loosens_and_back_tightens() -> None:
    enforced, learning = (
        perimetered(posture(), association("Enforced")),
        perimetered(posture(), association("Learning")),
    )
    assert changes(enforced, learning) == [
        ("networkSecurityPerimeter.accessMode", "changed", "Enforced", "Learning", "loosening")
    ]
    assert changes(learning, enforced)[0][-1] == "tightening"
    assert changes(learning, perimetered(posture(), association("Transition"))) == [
        ("networkSecurityPerimeter.accessMode", "changed", "Learning", "Transition", "neutral")
    ]
    assert changes(enforced, perimetered(posture(), association("Audit")))[0][-1] == "neutral"


def test_another_profile_is_a_change_of_profile() -> None:
    other = association("Enforced", profile_id="/x/profiles/strict", profile_name="strict")
    assert [
        c[0] for c in changes(perimetered(posture(), association("Enforced")), perimetered(posture(), other))
    ] == ["networkSecurityPerimeter.profile"]


def test_a_rule_edit_tracks_the_version_and_judges_each_entry() -> None:
    before = perimetered(posture(), association("Enforced", NARROW, access_rules_version=3))
    wider = PerimeterAccessRule(
        name="office", address_prefixes=(ip("203.0.113.0/24"),), service_tags=("AzureCloud",)
    )
    after = perimetered(posture(), association("Enforced", wider, access_rules_version=4))
    assert changes(before, after) == [
        ("networkSecurityPerimeter.accessRulesVersion", "changed", "3", "4", "neutral"),
        (
            "networkSecurityPerimeter.inboundRules.addressPrefixes",
            "added",
            None,
            "203.0.113.0/24",
            "loosening",
        ),
        (
            "networkSecurityPerimeter.inboundRules.addressPrefixes",
            "removed",
            "203.0.113.0/28",
            None,
            "neutral",
        ),
        ("networkSecurityPerimeter.inboundRules.service_tags", "added", None, "AzureCloud", "loosening"),
    ]


def test_an_association_not_looked_up_or_unreadable_on_either_side_is_no_change() -> None:
    associated = perimetered(posture(), association("Learning", EVERYONE))
    for unknown in (posture(), unreadable(posture())):
        assert changes(unknown, associated) == []
        assert changes(associated, unknown) == []
