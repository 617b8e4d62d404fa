"""The rules under Network Security Perimeter: KV001 and KV008 on the effective exposure, the
firewall's findings as dead configuration, and KV014-KV019 beyond their catalog cases."""

from __future__ import annotations

from monitor.model import PerimeterProvisioningIssue, Severity, VirtualNetworkRule
from tests.judge.test_perimeter import EVERYONE, NARROW, association, perimetered, unreadable
from tests.rules.test_config_rules import SUBNET, connection, firewalled, hits, ip, posture


def test_kv001_an_enforced_perimeter_closes_a_firewall_that_admits_everyone() -> None:
    vault = perimetered(
        posture(public_network_access="Enabled", default_action="Allow"), association("Enforced", NARROW)
    )
    assert hits("KV001", vault) == []


def test_kv001_a_learning_perimeter_with_an_everything_rule_opens_a_disabled_vault() -> None:
    (hit,) = hits("KV001", perimetered(posture(), association("Learning", EVERYONE)))
    assert hit.summary == (
        "perimeter nsp-lab (profile defaultProfile, Learning mode): the perimeter's rules re-open a vault "
        "whose publicNetworkAccess is Disabled: open to the public through addressPrefix 0.0.0.0/0 in "
        "perimeter rule allow-all (every address)"
    )
    assert hit.evidence["public_network_access"] == "Disabled"
    assert hit.evidence["perimeter"]["effective_inbound"] == "rules"


def test_kv001_learning_with_public_access_enabled_names_the_open_firewall_as_well() -> None:
    vault = perimetered(
        posture(public_network_access="Enabled", default_action="Allow"), association("Learning", NARROW)
    )
    (hit,) = hits("KV001", vault)
    assert hit.summary.endswith(
        "open to the public through the vault's firewall (publicNetworkAccess is Enabled and "
        "networkAcls.defaultAction is Allow)"
    )


def test_kv001_the_audit_column_judges_the_firewall_and_says_it_is_inferred() -> None:
    vault = perimetered(
        posture(public_network_access="Enabled", default_action="Allow"), association("Audit", NARROW)
    )
    (hit,) = hits("KV001", vault)
    assert "infers" in hit.evidence["perimeter"]["inferred"]


def test_kv001_an_unknown_exposure_raises_no_exposure_finding_but_kv018() -> None:
    for vault in (
        unreadable(posture(public_network_access="Enabled", default_action="Allow")),
        posture(public_network_access="SecuredByPerimeter", default_action="Allow"),
    ):
        assert hits("KV001", vault) == []
        (unknown,) = hits("KV018", vault)
        assert unknown.evidence["perimeter"]["effective_inbound"] == "unknown"


def test_kv008_a_private_endpoint_beside_a_perimeter_that_reopens_the_vault_is_high() -> None:
    vault = perimetered(
        posture(private_endpoint_connections=(connection(),)), association("Learning", EVERYONE)
    )
    (hit,) = hits("KV008", vault)
    assert hit.severity == Severity.HIGH
    assert hit.summary.endswith(": the public path is open to the public")


def test_kv008_a_narrow_enforced_perimeter_keeps_a_public_path_at_the_rules_default_severity() -> None:
    vault = perimetered(
        posture(private_endpoint_connections=(connection(),)), association("Enforced", NARROW)
    )
    (hit,) = hits("KV008", vault)
    assert hit.severity is None and "only the perimeter's rules admit" in hit.summary


def test_kv008_secured_by_perimeter_not_looked_up_is_not_judged() -> None:
    vault = posture(public_network_access="SecuredByPerimeter", private_endpoint_connections=(connection(),))
    assert hits("KV008", vault) == []


def test_firewall_findings_under_an_enforced_perimeter_are_dead_configuration_notes() -> None:
    vault = perimetered(
        firewalled(
            ip_rules=(ip("0.0.0.0/0"), ip("10.0.0.0/24")),
            virtual_network_rules=(VirtualNetworkRule(SUBNET, ignore_missing_service_endpoint=True),),
        ),
        association("Enforced", NARROW),
    )
    for rule_id in ("KV003", "KV005", "KV006"):
        (hit,) = hits(rule_id, vault)
        assert hit.severity == Severity.INFO, rule_id
        assert hit.summary.startswith("dead configuration: "), rule_id
        assert hit.evidence["dead_configuration"], rule_id


def test_firewall_findings_stay_exposure_where_the_firewall_still_applies() -> None:
    vault = perimetered(firewalled(ip_rules=(ip("0.0.0.0/0"),)), association("Learning", NARROW))
    (hit,) = hits("KV003", vault)
    assert hit.severity == Severity.CRITICAL and "dead_configuration" not in hit.evidence


def test_kv015_in_audit_mode_is_medium_and_says_it_is_not_in_force() -> None:
    (hit,) = hits("KV015", perimetered(posture(), association("Audit", EVERYONE)))
    assert hit.severity == Severity.MEDIUM and hit.evidence["in_force"] is False
    assert hit.subject == "allow-all/addressPrefix/0.0.0.0/0"


def test_kv017_a_warning_is_low() -> None:
    issue = PerimeterProvisioningIssue("i1", "MissingIdentityConfiguration", "Warning", "no identity")
    (hit,) = hits("KV017", perimetered(posture(), association("Enforced", provisioning_issues=(issue,))))
    assert hit.severity == Severity.LOW and hit.summary.endswith(": no identity")


def test_kv018_an_unknown_access_mode_is_unknown_exposure() -> None:
    (hit,) = hits("KV018", perimetered(posture(), association("Lockdown", EVERYONE)))
    assert "'Lockdown' is not one kvmon knows" in hit.summary


def test_kv019_learning_mode_also_drops_service_endpoint_traffic() -> None:
    vault = perimetered(
        firewalled(virtual_network_rules=(VirtualNetworkRule(SUBNET),)), association("Learning")
    )
    (hit,) = hits("KV019", vault)
    assert hit.evidence["virtual_network_rules"] == [SUBNET]


# -- KV206: the trusted-services bypass voided by the perimeter, seen in the access log ------------


def _kv206(vault, *items):
    from monitor.config.policy import VaultPolicy
    from monitor.judge.rules.base import VaultFacts
    from monitor.judge.rules.catalog import RULES_BY_ID
    from tests.logs.test_rules import evidence

    return list(
        RULES_BY_ID["KV206"].check(VaultFacts(posture=vault, policy=VaultPolicy(), evidence=evidence(*items)))
    )


def _trusted(outcome=None, count=3):
    from monitor.model import Outcome
    from tests.logs.test_rules import activity

    return activity("52.1.1.1", auth_type="TrustedService", outcome=outcome or Outcome.ADMITTED, count=count)


def test_kv206_trusted_services_seen_under_an_enforced_perimeter_are_warned() -> None:
    (hit,) = _kv206(perimetered(posture(), association("Enforced", NARROW)), _trusted())
    assert hit.severity is None  # the rule's medium: the services still got in within the window
    assert hit.evidence["admitted"] == 3 and hit.evidence["not_admitted"] == 0
    assert "the trusted-services bypass does not apply" in hit.summary


def test_kv206_refused_trusted_services_mean_the_outage_has_begun() -> None:
    from monitor.model import Outcome

    (hit,) = _kv206(
        perimetered(posture(public_network_access="SecuredByPerimeter"), None),
        _trusted(Outcome.REFUSED_FIREWALL, count=7),
    )
    assert hit.severity is Severity.HIGH and hit.evidence["not_admitted"] == 7


def test_kv206_stays_quiet_where_the_bypass_still_applies_or_nothing_is_known() -> None:
    learning_enabled = posture(public_network_access="Enabled", default_action="Deny")
    assert _kv206(perimetered(learning_enabled, association("Learning", NARROW)), _trusted()) == []
    assert _kv206(perimetered(posture(), None), _trusted()) == []  # Disabled, no perimeter: bypass holds
    assert _kv206(unreadable(posture()), _trusted()) == []  # unknown: no verdict
    assert _kv206(perimetered(posture(), association("Enforced", NARROW))) == []  # no trusted caller
