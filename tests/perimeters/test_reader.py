"""ArmPerimeterReader through the real azure-mgmt-network client against the lab's ARM: the
association of every vault, read per perimeter, and unknown (never "none") wherever a perimeter
that may hold a vault could not be read."""

from __future__ import annotations

import pytest

from lab.arm import (
    ACCESS_RULES_ROUTE,
    ASSOCIATIONS_ROUTE,
    LINKS_ROUTE,
    PERIMETER_ROUTES,
    PERIMETERS_ROUTE,
    PROFILES_ROUTE,
    ArmEmulator,
)
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault
from monitor.model import ErrorSource, PerimeterAccessMode, PerimeterLookup, VaultPosture
from monitor.sources.arm import ArmConnection, ArmInventory
from monitor.sources.perimeters import ArmPerimeterReader, PerimeterRead
from tests.perimeters.conftest import SUB_A, SUB_B, SUB_NETWORK, add_vaults, perimeter


def postures(estate: Estate, connection: ArmConnection, *subscriptions: str) -> list[VaultPosture]:
    """The vaults as the ARM inventory reads them (azure-mgmt-keyvault)."""
    inventory = ArmInventory(
        LabCredential(), arm_endpoint=connection.arm_endpoint, connection_verify=connection.connection_verify
    )
    listed = inventory.list_vaults(list(subscriptions))
    assert listed.errors == []
    return listed.postures


def read(
    reader: ArmPerimeterReader, estate: Estate, connection: ArmConnection, *subscriptions: str
) -> tuple[PerimeterRead, dict[str, VaultPosture]]:
    vaults = postures(estate, connection, *subscriptions)
    result = reader.read_perimeters(vaults, subscriptions=subscriptions)
    return result, {posture.name: posture for posture in result.apply(vaults)}


def perimeter_requests(arm: ArmEmulator) -> dict[str, int]:
    return {
        route: arm.server.request_counts[route]
        for route in PERIMETER_ROUTES
        if arm.server.request_counts[route]
    }


def test_no_perimeter_reads_none_with_one_listing(
    estate: Estate, arm: ArmEmulator, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    add_vaults(estate, SUB_A, 3)
    result, by_name = read(reader, estate, connection, SUB_A)
    assert result.errors == []
    assert {p.perimeter.lookup for p in by_name.values()} == {PerimeterLookup.NONE}
    assert perimeter_requests(arm) == {PERIMETERS_ROUTE: 1}
    assert result.requests == 1


@pytest.mark.parametrize("mode", ["Learning", "Enforced", "Audit"])
def test_an_association_is_read_in_each_mode_with_its_profile_version_and_inbound_rules(
    estate: Estate, connection: ArmConnection, reader: ArmPerimeterReader, mode: str
) -> None:
    [vault_id, other_id] = add_vaults(estate, SUB_A, 2)
    nsp = perimeter(estate)
    rules = estate.perimeters
    rules.put_access_rule(nsp, "default", "everyone", address_prefixes=["0.0.0.0/0", "not-a-cidr"])
    rules.put_access_rule(
        nsp, "default", "partner", subscriptions=[f"/subscriptions/{SUB_B}"], service_tags=["AzureCloud"]
    )
    rules.put_access_rule(
        nsp, "default", "egress", direction="Outbound", fully_qualified_domain_names=["contoso.org"]
    )
    rules.add_link(
        nsp,
        "to-hub",
        remote_perimeter_id="/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkSecurityPerimeters/hub",
    )
    rules.add_link(
        nsp,
        "pending",
        remote_perimeter_id="/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkSecurityPerimeters/p",
        status="Pending",
    )
    # ARM keeps the id as written: matched case-insensitively.
    rules.associate(nsp, "assoc-kv", resource_id=vault_id.upper(), profile="default", access_mode=mode)

    result, by_name = read(reader, estate, connection, SUB_A)

    assert result.errors == []
    reading = by_name[vault_id.rsplit("/", 1)[-1]].perimeter
    assert reading.lookup == PerimeterLookup.ASSOCIATED and reading.association is not None
    association = reading.association
    assert (association.perimeter_id, association.perimeter_name) == (nsp, "nsp-app")
    assert (association.profile_id, association.profile_name) == (f"{nsp}/profiles/default", "default")
    assert association.access_mode_text == mode and association.access_mode == PerimeterAccessMode(mode)
    assert association.access_rules_version == 3  # three rule writes
    assert association.provisioning_issues == ()
    everyone, partner, link = association.inbound_rules  # Outbound rules and the Pending link do not admit
    assert [(p.raw, p.parsed) for p in everyone.address_prefixes] == [
        ("0.0.0.0/0", True),
        ("not-a-cidr", False),
    ]
    assert (partner.name, partner.subscriptions, partner.service_tags) == (
        "partner",
        (SUB_B,),
        ("AzureCloud",),
    )
    assert (link.name, link.perimeters) == (
        "link to-hub",
        ("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkSecurityPerimeters/hub",),
    )
    assert by_name[other_id.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.NONE


def test_many_vaults_in_one_perimeter_cost_the_same_requests_as_one(
    estate: Estate, arm: ArmEmulator, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    nsp = perimeter(estate)
    estate.perimeters.put_access_rule(nsp, "default", "office", address_prefixes=["203.0.113.0/28"])
    [first] = add_vaults(estate, SUB_A, 1, prefix="one")
    estate.perimeters.associate(
        nsp, "assoc-one", resource_id=first, profile="default", access_mode="Enforced"
    )
    result, _ = read(reader, estate, connection, SUB_A)
    one_vault = perimeter_requests(arm)
    assert one_vault == {
        PERIMETERS_ROUTE: 1,
        ASSOCIATIONS_ROUTE: 1,
        PROFILES_ROUTE: 1,
        LINKS_ROUTE: 1,
        ACCESS_RULES_ROUTE: 1,
    }
    assert result.requests == 5

    for index, vault_id in enumerate(add_vaults(estate, SUB_A, 12, prefix="many")):
        estate.perimeters.associate(
            nsp, f"assoc-{index}", resource_id=vault_id, profile="default", access_mode="Enforced"
        )
    arm.server.request_counts.clear()
    result, by_name = read(reader, estate, connection, SUB_A)
    assert perimeter_requests(arm) == one_vault and result.requests == 5
    assert len(by_name) == 13 and {p.perimeter.lookup for p in by_name.values()} == {
        PerimeterLookup.ASSOCIATED
    }


def test_a_perimeter_kvmon_may_not_read_makes_its_subscriptions_vaults_unreadable(
    estate: Estate, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    vault_ids = add_vaults(estate, SUB_A, 2)
    [elsewhere] = add_vaults(estate, SUB_B, 1)
    nsp = perimeter(estate)
    estate.perimeters.associate(
        nsp, "assoc", resource_id=vault_ids[0], profile="default", access_mode="Enforced"
    )
    estate.perimeters.forbid(nsp)

    result, by_name = read(reader, estate, connection, SUB_A, SUB_B)

    [error] = result.errors
    assert (error.source, error.scope, error.code) == (ErrorSource.ARM, nsp, "403")
    assert "associations of perimeter" in error.message and "AuthorizationFailed" in error.message
    for vault_id in vault_ids:
        reading = by_name[vault_id.rsplit("/", 1)[-1]].perimeter
        assert reading.lookup == PerimeterLookup.UNREADABLE and nsp in (reading.error or "")
    assert by_name[elsewhere.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.NONE


def test_a_profile_kvmon_may_not_read_makes_its_vault_unreadable_naming_vault_and_perimeter(
    estate: Estate, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    [locked, free] = add_vaults(estate, SUB_A, 2)
    nsp = perimeter(estate)
    estate.perimeters.add_profile(nsp, "restricted")
    estate.perimeters.associate(
        nsp, "a-locked", resource_id=locked, profile="restricted", access_mode="Enforced"
    )
    estate.perimeters.associate(nsp, "a-free", resource_id=free, profile="default", access_mode="Enforced")
    estate.perimeters.forbid(f"{nsp}/profiles/restricted")

    result, by_name = read(reader, estate, connection, SUB_A)

    [error] = result.errors
    assert (
        error.scope == locked
        and nsp in error.message
        and "access rules of profile restricted" in error.message
    )
    assert by_name[locked.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.UNREADABLE
    assert by_name[free.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.ASSOCIATED


def test_a_subscription_whose_perimeters_cannot_be_listed_leaves_only_its_own_vaults_unknown(
    estate: Estate, arm: ArmEmulator, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    [in_a] = add_vaults(estate, SUB_A, 1)
    [in_b] = add_vaults(estate, SUB_B, 1)
    arm.server.inject(
        f"^/subscriptions/{SUB_A}/providers/Microsoft.Network/networkSecurityPerimeters$",
        Fault(
            status=403, body={"error": {"code": "AuthorizationFailed", "message": "no read on perimeters"}}
        ),
    )
    result, by_name = read(reader, estate, connection, SUB_A, SUB_B)
    [error] = result.errors
    assert (error.scope, error.code) == (SUB_A, "403")
    assert by_name[in_a.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.UNREADABLE
    assert SUB_A in (by_name[in_a.rsplit("/", 1)[-1]].perimeter.error or "")
    assert by_name[in_b.rsplit("/", 1)[-1]].perimeter.lookup == PerimeterLookup.NONE


def test_a_perimeter_subscription_is_read_for_every_vault_and_its_failure_blinds_them_all(
    estate: Estate, arm: ArmEmulator, connection: ArmConnection
) -> None:
    [vault_id] = add_vaults(estate, SUB_A, 1)
    add_vaults(estate, SUB_B, 1)
    hub = perimeter(estate, SUB_NETWORK, name="nsp-central")
    estate.perimeters.associate(hub, "assoc", resource_id=vault_id, profile="default", access_mode="Learning")
    central = ArmPerimeterReader(
        LabCredential(), connection=connection, perimeter_subscriptions=[SUB_NETWORK]
    )

    result, by_name = read(central, estate, connection, SUB_A, SUB_B)
    assert result.errors == []
    association = by_name[vault_id.rsplit("/", 1)[-1]].perimeter.association
    assert association is not None and association.perimeter_id == hub
    # Without the setting, the central perimeter is not seen (the README says so).
    plain, _ = read(ArmPerimeterReader(LabCredential(), connection=connection), estate, connection, SUB_A)
    assert next(iter(plain.readings.values())).lookup == PerimeterLookup.NONE

    arm.server.inject(f"^/subscriptions/{SUB_NETWORK}/providers/", Fault(status=500, times=0))
    result, by_name = read(central, estate, connection, SUB_A, SUB_B)
    assert [error.scope for error in result.errors] == [SUB_NETWORK]
    assert len(by_name) == 2 and {p.perimeter.lookup for p in by_name.values()} == {
        PerimeterLookup.UNREADABLE
    }


def test_provisioning_issues_and_a_second_perimeter_are_reported(
    estate: Estate, connection: ArmConnection, reader: ArmPerimeterReader
) -> None:
    [troubled, doubled] = add_vaults(estate, SUB_A, 2)
    first, second = perimeter(estate, name="nsp-one"), perimeter(estate, name="nsp-two")
    estate.perimeters.associate(first, "a", resource_id=troubled, profile="default", access_mode="Enforced")
    estate.perimeters.set_provisioning_issues(first, "a", issues=True)
    estate.perimeters.associate(first, "b", resource_id=doubled, profile="default", access_mode="Enforced")
    estate.perimeters.associate(second, "b", resource_id=doubled, profile="default", access_mode="Learning")

    result, by_name = read(reader, estate, connection, SUB_A)

    association = by_name[troubled.rsplit("/", 1)[-1]].perimeter.association
    assert association is not None
    assert [issue.name for issue in association.provisioning_issues] == ["hasProvisioningIssues"]
    reading = by_name[doubled.rsplit("/", 1)[-1]].perimeter
    assert reading.lookup == PerimeterLookup.UNREADABLE and "2 perimeters" in (reading.error or "")
    [error] = result.errors
    assert error.scope == doubled and first in error.message and second in error.message


def test_an_access_rule_edit_through_the_sdk_bumps_the_version_kvmon_reads(
    estate: Estate, connection: ArmConnection, reader: ArmPerimeterReader, network
) -> None:
    from azure.mgmt.network.models import NspAccessRule, NspAccessRuleProperties

    [vault_id] = add_vaults(estate, SUB_A, 1)
    nsp = perimeter(estate)
    estate.perimeters.associate(nsp, "assoc", resource_id=vault_id, profile="default", access_mode="Enforced")
    before, _ = read(reader, estate, connection, SUB_A)
    network.network_security_perimeter_access_rules.create_or_update(
        "rg-nsp",
        "nsp-app",
        "default",
        "office",
        NspAccessRule(
            properties=NspAccessRuleProperties(direction="Inbound", address_prefixes=["203.0.113.0/28"])
        ),
    )
    after, _ = read(reader, estate, connection, SUB_A)
    [was], [now] = before.readings.values(), after.readings.values()
    assert was.association is not None and now.association is not None
    assert (was.association.access_rules_version, now.association.access_rules_version) == (0, 1)
    assert [rule.name for rule in now.association.inbound_rules] == ["office"]
