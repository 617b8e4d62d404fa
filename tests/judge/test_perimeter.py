"""The effective exposure under Network Security Perimeter: every cell of issue 17's table, the
unknowns, and what "open to the public" means."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from monitor.config.policy import VaultPolicy
from monitor.judge.perimeter import EffectiveExposure, InboundSet, effective_exposure
from monitor.model import (
    PerimeterAccessMode,
    PerimeterAccessRule,
    PerimeterAssociation,
    PerimeterLookup,
    PerimeterReading,
    VaultPosture,
)
from monitor.netaddr import parse_network
from tests.rules.test_config_rules import SUB, ip, posture

PERIMETER_ID = f"/subscriptions/{SUB}/resourceGroups/rg-nsp/providers/Microsoft.Network/networkSecurityPerimeters/nsp-lab"
NARROW = PerimeterAccessRule(name="office", address_prefixes=(ip("203.0.113.0/28"),))
EVERYONE = PerimeterAccessRule(name="allow-all", address_prefixes=(ip("0.0.0.0/0"),))


def association(
    mode: str = "Enforced", *rules: PerimeterAccessRule, **overrides: Any
) -> PerimeterAssociation:
    base = PerimeterAssociation(
        perimeter_id=PERIMETER_ID,
        perimeter_name="nsp-lab",
        profile_id=f"{PERIMETER_ID}/profiles/defaultProfile",
        profile_name="defaultProfile",
        access_mode_text=mode,
        access_rules_version=1,
        inbound_rules=rules,
    )
    return replace(base, **overrides)


def perimetered(vault: VaultPosture, found: PerimeterAssociation | None) -> VaultPosture:
    """The vault with its association read: ``found`` None means read and none."""
    if found is None:
        return replace(vault, perimeter=PerimeterReading(lookup=PerimeterLookup.NONE))
    return replace(vault, perimeter=PerimeterReading(lookup=PerimeterLookup.ASSOCIATED, association=found))


def unreadable(vault: VaultPosture, error: str = "AuthorizationFailed on nsp-lab") -> VaultPosture:
    return replace(vault, perimeter=PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error=error))


def exposure_of(vault: VaultPosture, policy: VaultPolicy | None = None) -> EffectiveExposure:
    return effective_exposure(posture=vault, policy=policy or VaultPolicy())


# The vault's firewall admits everyone in every cell, so "firewall" cells are public and cells where
# only the rules apply are not (the rules are narrow): which set decides shows in ``public``.
OPEN_FIREWALL = {"network_acls_present": True, "default_action": "Allow"}

# (publicNetworkAccess, association mode or None) -> inbound, firewall, bypass, service endpoints, public
TABLE: dict[tuple[str, str | None], tuple[InboundSet, bool, bool, bool, bool | None]] = {
    ("Enabled", None): (InboundSet.FIREWALL, True, True, True, True),
    ("Enabled", "Learning"): (InboundSet.RULES_OR_FIREWALL, True, True, False, True),
    ("Enabled", "Enforced"): (InboundSet.RULES, False, False, False, False),
    ("Enabled", "Audit"): (InboundSet.FIREWALL, True, True, True, True),
    ("Disabled", None): (InboundSet.CLOSED, False, True, False, False),
    ("Disabled", "Learning"): (InboundSet.RULES, False, False, False, False),
    ("Disabled", "Enforced"): (InboundSet.RULES, False, False, False, False),
    ("Disabled", "Audit"): (InboundSet.CLOSED, False, True, False, False),
    ("SecuredByPerimeter", None): (InboundSet.CLOSED, False, False, False, False),
    ("SecuredByPerimeter", "Learning"): (InboundSet.RULES, False, False, False, False),
    ("SecuredByPerimeter", "Enforced"): (InboundSet.RULES, False, False, False, False),
    ("SecuredByPerimeter", "Audit"): (InboundSet.UNKNOWN, False, False, False, None),
}


@pytest.mark.parametrize(("access", "mode"), sorted(TABLE, key=str))
def test_each_cell_of_the_table(access: str, mode: str | None) -> None:
    vault = posture(public_network_access=access, **OPEN_FIREWALL)
    found = association(mode, NARROW) if mode else None
    exposure = exposure_of(perimetered(vault, found))
    inbound, firewall, bypass, service_endpoints, public = TABLE[(access, mode)]
    assert (
        exposure.inbound,
        exposure.firewall_applies,
        exposure.trusted_bypass_applies,
        exposure.service_endpoints_supported,
        exposure.public,
    ) == (inbound, firewall, bypass, service_endpoints, public)
    assert exposure.inferred == (mode == "Audit")
    assert exposure.perimeter_in_force == (mode in ("Learning", "Enforced"))
    assert (exposure.error is not None) == (inbound == InboundSet.UNKNOWN)


def test_the_audit_column_says_in_its_evidence_that_it_is_inferred() -> None:
    vault = posture(public_network_access="Enabled", **OPEN_FIREWALL)
    evidence = exposure_of(perimetered(vault, association("Audit", NARROW))).as_evidence()
    assert "infers" in evidence["inferred"]
    assert "Audit mode logs but does not enforce (inferred)" in evidence["reason"]


def test_a_perimeter_in_learning_mode_reopens_a_disabled_vault() -> None:
    vault = posture(public_network_access="Disabled")
    exposure = exposure_of(perimetered(vault, association("Learning", EVERYONE)))
    assert exposure.public is True
    assert [entry.describe() for entry in exposure.open_entries] == [
        "addressPrefix 0.0.0.0/0 in perimeter rule allow-all (every address)"
    ]
    assert "re-open" in exposure.reason


def test_an_enforced_perimeter_closes_a_firewall_that_admits_everyone() -> None:
    vault = posture(public_network_access="Enabled", **OPEN_FIREWALL)
    exposure = exposure_of(perimetered(vault, association("Enforced", NARROW)))
    assert exposure.public is False and exposure.firewall_open and exposure.firewall_dead


def test_transition_is_learning_and_modes_compare_case_insensitively() -> None:
    assert PerimeterAccessMode.parse("Transition") == PerimeterAccessMode.LEARNING
    assert PerimeterAccessMode.parse(" enforced ") == PerimeterAccessMode.ENFORCED
    assert PerimeterAccessMode.parse("Lockdown") == PerimeterAccessMode.UNKNOWN


def test_an_unknown_access_mode_is_unknown_never_guessed() -> None:
    vault = posture(public_network_access="Disabled")
    exposure = exposure_of(perimetered(vault, association("Lockdown", EVERYONE)))
    assert exposure.inbound == InboundSet.UNKNOWN and exposure.public is None
    assert exposure.error is not None and "'Lockdown' is not one kvmon knows" in exposure.error


@pytest.mark.parametrize("access", ["Enabled", "Disabled", "SecuredByPerimeter"])
def test_an_unreadable_association_is_unknown_with_an_error_naming_it(access: str) -> None:
    exposure = exposure_of(unreadable(posture(public_network_access=access)))
    assert exposure.inbound == InboundSet.UNKNOWN and exposure.public is None
    assert exposure.error == "the perimeter association could not be read: AuthorizationFailed on nsp-lab"


def test_secured_by_perimeter_not_looked_up_is_unknown_not_closed() -> None:
    exposure = exposure_of(posture(public_network_access="SecuredByPerimeter"))
    assert exposure.inbound == InboundSet.UNKNOWN
    assert exposure.error is not None and "not looked up" in exposure.error


@pytest.mark.parametrize(
    ("access", "inbound"), [("Enabled", InboundSet.FIREWALL), ("Disabled", InboundSet.CLOSED)]
)
def test_not_looked_up_is_judged_as_without_a_perimeter(access: str, inbound: InboundSet) -> None:
    assert exposure_of(posture(public_network_access=access)).inbound == inbound


OPENING: dict[str, tuple[PerimeterAccessRule, str]] = {
    "every IPv6 address": (
        PerimeterAccessRule(name="v6", address_prefixes=(ip("::/0"),)),
        "addressPrefix ::/0 in perimeter rule v6 (every address)",
    ),
    "broader than the baseline": (
        PerimeterAccessRule(name="wide", address_prefixes=(ip("198.51.0.0/16"),)),
        "addressPrefix 198.51.0.0/16 in perimeter rule wide (broader than /24)",
    ),
    "a service tag": (
        PerimeterAccessRule(name="tag", service_tags=("AzureCloud",)),
        "serviceTag AzureCloud in perimeter rule tag (every address of the service tag)",
    ),
    "a subscription": (
        PerimeterAccessRule(name="sub", subscriptions=(f"/subscriptions/{SUB}",)),
        f"subscription /subscriptions/{SUB} in perimeter rule sub (any caller from that subscription, any address)",
    ),
}


@pytest.mark.parametrize("case", sorted(OPENING))
def test_what_opens_the_vault_to_the_public(case: str) -> None:
    access_rule, described = OPENING[case]
    vault = perimetered(
        posture(public_network_access="SecuredByPerimeter"), association("Enforced", access_rule)
    )
    exposure = exposure_of(vault)
    assert exposure.public is True
    assert [entry.describe() for entry in exposure.open_entries] == [described]


def test_narrow_prefixes_and_linked_perimeters_do_not_open_the_vault() -> None:
    linked = PerimeterAccessRule(name="linked", perimeters=(f"{PERIMETER_ID}-other",))
    inside = PerimeterAccessRule(name="allowed", address_prefixes=(ip("203.0.113.0/28"), ip("not-a-prefix")))
    policy = VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),))
    vault = perimetered(posture(), association("Enforced", linked, inside))
    assert exposure_of(vault, policy).public is False


def test_a_prefix_outside_the_baselines_allowed_ranges_opens_the_vault() -> None:
    policy = VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),))
    outside = PerimeterAccessRule(name="elsewhere", address_prefixes=(ip("198.51.100.0/28"),))
    vault = perimetered(posture(), association("Enforced", outside))
    assert exposure_of(vault, policy).public is True


def test_a_reading_carries_an_association_exactly_when_associated() -> None:
    with pytest.raises(ValueError, match="association exactly when associated"):
        PerimeterReading(lookup=PerimeterLookup.NONE, association=association())
    with pytest.raises(ValueError, match="error exactly when unreadable"):
        PerimeterReading(lookup=PerimeterLookup.UNREADABLE)
