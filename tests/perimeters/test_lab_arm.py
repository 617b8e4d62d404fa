"""The lab's ARM serves Network Security Perimeters as azure-mgmt-network reads and writes them."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    NspAccessRule,
    NspAccessRuleProperties,
    NspAssociation,
    NspAssociationProperties,
    SubResource,
    SubscriptionId,
)

from lab.arm import ASSOCIATION_PUT_ROUTE, ArmEmulator
from lab.estate import Estate
from tests.perimeters.conftest import PERIMETER_GROUP, SUB_A, add_vaults, perimeter


def association(resource_id: str, profile_id: str, mode: str) -> NspAssociation:
    return NspAssociation(
        properties=NspAssociationProperties(
            private_link_resource=SubResource(id=resource_id),
            profile=SubResource(id=profile_id),
            access_mode=mode,
        )
    )


def test_associations_are_created_replaced_and_deleted_through_the_sdk(
    estate: Estate, arm: ArmEmulator, network: NetworkManagementClient
) -> None:
    [vault_id] = add_vaults(estate, SUB_A, 1)
    nsp = perimeter(estate)
    operations = network.network_security_perimeter_associations
    created = operations.begin_create_or_update(
        PERIMETER_GROUP, "nsp-app", "assoc", association(vault_id, f"{nsp}/profiles/default", "Learning")
    ).result()
    assert (created.properties.access_mode, created.properties.has_provisioning_issues) == ("Learning", "no")
    replaced = operations.begin_create_or_update(
        PERIMETER_GROUP, "nsp-app", "assoc", association(vault_id, f"{nsp}/profiles/default", "Enforced")
    ).result()
    assert replaced.properties.access_mode == "Enforced"
    assert arm.server.request_counts[ASSOCIATION_PUT_ROUTE] == 2
    [listed] = operations.list(PERIMETER_GROUP, "nsp-app")
    assert listed.properties.private_link_resource.id == vault_id
    governing = estate.perimeters.governing(vault_id)
    assert governing is not None and governing.access_mode == "Enforced"

    operations.begin_delete(PERIMETER_GROUP, "nsp-app", "assoc").result()
    operations.begin_delete(PERIMETER_GROUP, "nsp-app", "assoc").result()  # 204: already gone
    assert list(operations.list(PERIMETER_GROUP, "nsp-app")) == []
    assert estate.perimeters.governing(vault_id) is None

    with pytest.raises(HttpResponseError) as refused:
        operations.begin_create_or_update(
            PERIMETER_GROUP, "nsp-app", "bad", association(vault_id, f"{nsp}/profiles/default", "Sometimes")
        ).result()
    assert refused.value.status_code == 400 and "accessMode" in str(refused.value)


def test_every_rule_write_and_delete_bumps_the_profiles_access_rules_version(
    estate: Estate, network: NetworkManagementClient
) -> None:
    perimeter(estate)
    rules = network.network_security_perimeter_access_rules
    profiles = network.network_security_perimeter_profiles

    def version() -> str:
        return str(profiles.get(PERIMETER_GROUP, "nsp-app", "default").properties.access_rules_version)

    assert version() == "0"
    rules.create_or_update(
        PERIMETER_GROUP,
        "nsp-app",
        "default",
        "partner",
        NspAccessRule(
            properties=NspAccessRuleProperties(
                direction="Inbound", subscriptions=[SubscriptionId(id=f"/subscriptions/{SUB_A}")]
            )
        ),
    )
    assert version() == "1"
    [rule] = rules.list(PERIMETER_GROUP, "nsp-app", "default")
    assert [entry.id for entry in rule.properties.subscriptions] == [f"/subscriptions/{SUB_A}"]
    rules.delete(PERIMETER_GROUP, "nsp-app", "default", "partner")
    assert version() == "2"
    rules.delete(PERIMETER_GROUP, "nsp-app", "default", "partner")  # nothing to delete: no edit
    assert version() == "2"


def test_lists_are_paged_and_faults_answer_as_arm_does(
    estate: Estate, arm: ArmEmulator, network: NetworkManagementClient
) -> None:
    for index in range(5):
        perimeter(estate, name=f"nsp-{index}")
    arm.page_size = 2
    try:
        names = [p.name for p in network.network_security_perimeters.list_by_subscription()]
    finally:
        arm.page_size = 100
    assert names == [f"nsp-{index}" for index in range(5)]

    with pytest.raises(ResourceNotFoundError):
        list(network.network_security_perimeter_profiles.list(PERIMETER_GROUP, "nsp-missing"))
    estate.perimeters.forbid(
        f"/subscriptions/{SUB_A}/resourceGroups/{PERIMETER_GROUP}/providers/Microsoft.Network/networkSecurityPerimeters/nsp-0"
    )
    with pytest.raises(HttpResponseError) as forbidden:
        list(network.network_security_perimeter_links.list(PERIMETER_GROUP, "nsp-0"))
    assert forbidden.value.status_code == 403 and forbidden.value.error is not None
    assert forbidden.value.error.code == "AuthorizationFailed"
    assert "Microsoft.Network/networkSecurityPerimeters/read" in str(forbidden.value)
    # The perimeter itself is still listed in its subscription: only reads under it are refused.
    assert "nsp-0" in {p.name for p in network.network_security_perimeters.list_by_subscription()}
