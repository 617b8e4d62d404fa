"""network_diff: field by field, each change judged loosening, tightening or neutral."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.judge.drift import Direction, network_diff
from monitor.model import VirtualNetworkRule
from tests.store.helpers import ip_rule, pec, posture, subnet_id


def changes(before, after) -> list[tuple[str, str, str | None, str | None, str]]:
    return [
        (c.field, c.change, c.before, c.after, c.direction.value) for c in network_diff(before, after).changes
    ]


def test_identical_postures_have_no_diff() -> None:
    assert network_diff(posture(), posture()).changes == ()


def test_case_only_differences_are_not_changes() -> None:
    assert (
        changes(
            posture(), posture(default_action="deny", public_network_access="ENABLED", bypass="azureservices")
        )
        == []
    )


@pytest.mark.parametrize(
    ("field", "attribute", "before", "after", "direction"),
    [
        ("networkAcls.defaultAction", "default_action", "Deny", "Allow", "loosening"),
        ("networkAcls.defaultAction", "default_action", "Allow", "Deny", "tightening"),
        ("publicNetworkAccess", "public_network_access", "Disabled", "Enabled", "loosening"),
        ("publicNetworkAccess", "public_network_access", "Enabled", "Disabled", "tightening"),
        ("publicNetworkAccess", "public_network_access", "Disabled", "SecuredByPerimeter", "loosening"),
        ("publicNetworkAccess", "public_network_access", "SecuredByPerimeter", "Disabled", "tightening"),
        ("networkAcls.bypass", "bypass", "None", "AzureServices", "loosening"),
        ("networkAcls.bypass", "bypass", "AzureServices", "None", "tightening"),
    ],
)
def test_scalar_fields(field, attribute, before, after, direction) -> None:
    assert changes(posture(**{attribute: before}), posture(**{attribute: after})) == [
        (field, "changed", before, after, direction)
    ]


def test_ip_rules_added_removed_broadened_and_narrowed() -> None:
    before = posture(ip_rules=(ip_rule("203.0.113.10/32"), ip_rule("198.51.100.0/24")))
    after = posture(ip_rules=(ip_rule("203.0.113.0/24"), ip_rule("198.51.100.7"), ip_rule("192.0.2.1")))
    assert changes(before, after) == [
        ("networkAcls.ipRules", "added", None, "192.0.2.1/32", "loosening"),
        ("networkAcls.ipRules", "added", None, "198.51.100.7/32", "neutral"),  # inside the old /24
        ("networkAcls.ipRules", "added", None, "203.0.113.0/24", "loosening"),  # broadened
        ("networkAcls.ipRules", "removed", "198.51.100.0/24", None, "tightening"),
        ("networkAcls.ipRules", "removed", "203.0.113.10/32", None, "neutral"),  # still covered by the /24
    ]


def test_ip_rule_covered_by_adjacent_rules_is_not_loosening_and_unparsable_is() -> None:
    before = posture(ip_rules=(ip_rule("10.0.0.0/25"), ip_rule("10.0.0.128/25")))
    after = posture(ip_rules=(*before.ip_rules, ip_rule("10.0.0.0/24"), ip_rule("bogus-rule")))
    assert changes(before, after) == [
        ("networkAcls.ipRules", "added", None, "10.0.0.0/24", "neutral"),
        ("networkAcls.ipRules", "added", None, "bogus-rule", "loosening"),
    ]


def test_the_same_address_written_differently_is_no_change() -> None:
    assert (
        changes(posture(ip_rules=(ip_rule("203.0.113.10"),)), posture(ip_rules=(ip_rule("203.0.113.10/32"),)))
        == []
    )


def test_subnets_added_removed_and_flag_changes() -> None:
    se, other = subnet_id("serviceEndpoint"), subnet_id("default")
    before = posture(virtual_network_rules=(VirtualNetworkRule(se),))
    after = posture(
        virtual_network_rules=(
            VirtualNetworkRule(se.lower(), ignore_missing_service_endpoint=True),
            VirtualNetworkRule(other),
        )
    )
    assert changes(before, after) == [
        ("networkAcls.virtualNetworkRules", "added", None, other, "loosening"),
        (
            "networkAcls.virtualNetworkRules.ignoreMissingVnetServiceEndpoint",
            "changed",
            f"{se}: False",
            f"{se.lower()}: True",
            "neutral",
        ),
    ]
    assert changes(after, before)[0] == (
        "networkAcls.virtualNetworkRules",
        "removed",
        other,
        None,
        "tightening",
    )


def test_private_endpoint_connections() -> None:
    pending, approved = pec("pe-new", "Pending"), pec("pe-new", "Approved")
    assert changes(posture(), posture(private_endpoint_connections=(approved,))) == [
        ("privateEndpointConnections", "added", None, "pe-new [Approved]", "loosening")
    ]
    assert changes(posture(), posture(private_endpoint_connections=(pending,))) == [
        ("privateEndpointConnections", "added", None, "pe-new [Pending]", "neutral")
    ]
    assert changes(
        posture(private_endpoint_connections=(pending,)), posture(private_endpoint_connections=(approved,))
    ) == [
        ("privateEndpointConnections.status", "changed", "pe-new [Pending]", "pe-new [Approved]", "loosening")
    ]


def test_losing_a_private_endpoint_depends_on_public_access() -> None:
    with_pe = posture(private_endpoint_connections=(pec("pe-app"),))
    public = changes(with_pe, posture())
    assert public == [("privateEndpointConnections", "removed", "pe-app [Approved]", None, "loosening")]
    private_only = changes(
        dataclasses.replace(with_pe, public_network_access="Disabled"),
        posture(public_network_access="Disabled"),
    )
    assert private_only == [
        ("privateEndpointConnections", "removed", "pe-app [Approved]", None, "tightening")
    ]
    rejected = changes(with_pe, posture(private_endpoint_connections=(pec("pe-app", "Rejected"),)))
    assert rejected == [
        (
            "privateEndpointConnections.status",
            "changed",
            "pe-app [Approved]",
            "pe-app [Rejected]",
            "loosening",
        )
    ]


def test_mixed_change_is_loosening_overall_with_who_and_when() -> None:
    when = dt.datetime(2026, 3, 2, 7, 45, tzinfo=dt.UTC)
    after = posture(
        default_action="Allow",
        public_network_access="Disabled",
        last_modified_by="bob@contoso.com",
        last_modified_at=when,
    )
    diff = network_diff(posture(), after)
    assert diff.loosening and diff.direction == "mixed"
    assert {c.direction for c in diff.changes} == {Direction.LOOSENING, Direction.TIGHTENING}
    assert diff.summary() == (
        "publicNetworkAccess Enabled → Disabled (tightening); networkAcls.defaultAction Deny → Allow "
        "(loosening) (last modified by bob@contoso.com at 2026-03-02T07:45:00Z)"
    )
