"""Perimeters through ``run_scan`` as the CLI builds it (``build_runtime``): the lab's ARM read by
azure-mgmt-keyvault (or Resource Graph) and azure-mgmt-network, judged, stored in SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    NspAccessRule,
    NspAccessRuleProperties,
    NspAssociation,
    NspAssociationProperties,
    SubResource,
)

from lab.credential import LabCredential
from lab.estate import Estate
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanOutcome, ScanRequest, ScanRuntime, run_scan
from monitor.config.settings import Settings
from monitor.model import ChangeKind, ErrorSource, PerimeterLookup
from monitor.store import Store, open_store
from tests.perimeters.conftest import PERIMETER_GROUP, SUB_A, perimeter

VAULT = "kv-nsp-demo"
# The perimeter's owner: a pipeline's service principal, which ARM stamps by application id.
NETWORK_PIPELINE_APP_ID = "5d7f9b12-0000-4000-8000-00000000a5e7"


def locked_and_perimetered() -> tuple[Estate, str, str]:
    """A vault with publicNetworkAccess Disabled, associated in Learning mode with a perimeter whose
    profile admits 0.0.0.0/0: the perimeter re-opens it."""
    estate = Estate()
    vault_id = estate.add_vault(
        subscription_id=SUB_A, resource_group="rg-app", name=VAULT, public_network_access="Disabled"
    )["id"]
    nsp = perimeter(estate)
    estate.perimeters.put_access_rule(nsp, "default", "anyone", address_prefixes=["0.0.0.0/0"])
    estate.perimeters.associate(
        nsp, "assoc-kv", resource_id=vault_id, profile="default", access_mode="Learning"
    )
    return estate, vault_id, nsp


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    with LabServices(Estate()) as services:
        yield services


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_path=tmp_path / "kvmon.db")
    yield opened
    opened.close()


def runtime_for(lab: LabServices, store: Store, **settings: str) -> ScanRuntime:
    environ = {
        **lab.environ(subscriptions=(SUB_A,), workspaces=(), baseline=None, channels=False),
        "KVMON_INVENTORY_SOURCE": "arm",
        **settings,
    }
    return build_runtime(
        Settings.from_environ(environ), environ=environ, credential=LabCredential(), store=store
    )


def scan(runtime: ScanRuntime, **request: object) -> ScanOutcome:
    return run_scan(
        ScanRequest(subscriptions=(SUB_A,), probe=False, logs=False, notify=False, **request),  # type: ignore[arg-type]
        runtime,
    )


def rule_ids(outcome: ScanOutcome) -> set[str]:
    return {finding.rule_id for finding in outcome.report.findings}


@pytest.mark.parametrize("source", ["arm", "resource-graph"])
def test_a_perimeter_reopening_a_disabled_vault_is_public_from_either_inventory(
    lab: LabServices, store: Store, source: str
) -> None:
    estate, _, nsp = locked_and_perimetered()
    lab.use(estate)
    outcome = scan(runtime_for(lab, store, KVMON_INVENTORY_SOURCE=source))
    [posture] = outcome.report.postures
    assert posture.perimeter.lookup == PerimeterLookup.ASSOCIATED
    assert posture.perimeter.association is not None and posture.perimeter.association.perimeter_id == nsp
    assert outcome.report.errors == []
    assert {"KV001", "KV014", "KV015"} <= rule_ids(outcome)
    [kv001] = [f for f in outcome.report.findings if f.rule_id == "KV001"]
    assert kv001.evidence["perimeter"]["effective_inbound"] == "rules"


def test_an_unreadable_perimeter_is_unknown_an_error_and_resolves_nothing(
    lab: LabServices, store: Store
) -> None:
    estate, vault_id, nsp = locked_and_perimetered()
    lab.use(estate)
    runtime = runtime_for(lab, store)
    first = scan(runtime)
    opened = {change.finding.rule_id for change in first.report.changes if change.kind is ChangeKind.OPENED}
    assert {"KV001", "KV014", "KV015"} <= opened

    estate.perimeters.forbid(nsp)
    second = scan(runtime)

    [posture] = second.report.postures
    assert posture.perimeter.lookup == PerimeterLookup.UNREADABLE
    [error] = [e for e in second.report.errors if e.scope == nsp]
    assert (error.source, error.code) == (ErrorSource.ARM, "403")
    assert "KV018" in rule_ids(second) and "KV001" not in rule_ids(second)
    assert [c.kind for c in second.report.changes if c.kind is ChangeKind.RESOLVED] == []
    still_open = {
        record.finding.rule_id
        for record in store.load_findings(vault_keys=[vault_id.lower()]).values()
        if record.status.value == "open"
    }
    assert {"KV001", "KV014", "KV015", "KV018"} <= still_open


def test_a_rule_edit_is_drift_of_the_profiles_access_rules_version(lab: LabServices, store: Store) -> None:
    estate, _, _ = locked_and_perimetered()
    lab.use(estate)
    runtime = runtime_for(lab, store)
    assert "KV301" not in rule_ids(scan(runtime))
    settings = Settings.from_environ(lab.environ(subscriptions=(SUB_A,)))
    with NetworkManagementClient(
        LabCredential(),
        SUB_A,
        base_url=settings.arm_endpoint,
        credential_scopes=[f"{settings.arm_endpoint}/.default"],
        connection_verify=settings.connection_verify,
    ) as network:
        network.network_security_perimeter_access_rules.create_or_update(
            PERIMETER_GROUP,
            "nsp-app",
            "default",
            "office",
            NspAccessRule(
                properties=NspAccessRuleProperties(direction="Inbound", address_prefixes=["203.0.113.0/28"])
            ),
        )
    second = scan(runtime)
    [kv301] = [f for f in second.report.findings if f.rule_id == "KV301"]
    changed = {change["field"]: change for change in kv301.evidence["changes"]}
    version = changed["networkSecurityPerimeter.accessRulesVersion"]
    assert (version["before"], version["after"]) == ("1", "2")


def network_client(lab: LabServices) -> NetworkManagementClient:
    """azure-mgmt-network as the perimeter's owner, not the vault's."""
    settings = Settings.from_environ(lab.environ(subscriptions=(SUB_A,)))
    return NetworkManagementClient(
        LabCredential(app_id=NETWORK_PIPELINE_APP_ID, object_id="5d7f9b12-0000-4000-8000-00000000b5e7"),
        SUB_A,
        base_url=settings.arm_endpoint,
        credential_scopes=[f"{settings.arm_endpoint}/.default"],
        connection_verify=settings.connection_verify,
    )


def test_kv301_names_who_changed_the_association_not_the_vaults_last_modifier(
    lab: LabServices, store: Store
) -> None:
    estate, vault_id, _ = locked_and_perimetered()
    lab.use(estate)
    runtime = runtime_for(lab, store)
    [first] = scan(runtime).report.postures
    assert first.last_modified_by == "alice@contoso.example"  # the vault's creator; it never moves here
    association = first.perimeter.association
    assert association is not None and association.modified is not None and association.created is not None
    assert association.modified.by == "alice@contoso.example"

    with network_client(lab) as network:
        profile = network.network_security_perimeter_profiles.get(PERIMETER_GROUP, "nsp-app", "default")
        network.network_security_perimeter_associations.begin_create_or_update(
            PERIMETER_GROUP,
            "nsp-app",
            "assoc-kv",
            NspAssociation(
                properties=NspAssociationProperties(
                    private_link_resource=SubResource(id=vault_id),
                    profile=SubResource(id=profile.id),
                    access_mode="Enforced",
                )
            ),
        ).result()
    second = scan(runtime)

    [kv301] = [f for f in second.report.findings if f.rule_id == "KV301"]
    assert [c["field"] for c in kv301.evidence["changes"]] == ["networkSecurityPerimeter.accessMode"]
    assert (kv301.evidence["last_modified_by"], kv301.evidence["last_modified_by_type"]) == (
        NETWORK_PIPELINE_APP_ID,
        "Application",
    )
    assert kv301.evidence["last_modified_of"] == "networkSecurityPerimeter"
    assert f"the perimeter last modified by {NETWORK_PIPELINE_APP_ID} at " in kv301.summary
    [posture] = second.report.postures
    assert posture.perimeter.association is not None and posture.perimeter.association.created is not None
    assert (
        posture.perimeter.association.created.by == "alice@contoso.example"
    )  # a replacement keeps its creator
    # Stored and read back by the next scan: the stamps survive the store.
    stored = store.load_postures(vault_keys=[vault_id.lower()])[vault_id.lower()].posture
    assert stored.perimeter == posture.perimeter


def test_kv301_names_who_edited_the_profiles_rules_for_an_access_rules_version_change(
    lab: LabServices, store: Store
) -> None:
    estate, _, _ = locked_and_perimetered()
    lab.use(estate)
    runtime = runtime_for(lab, store)
    scan(runtime)
    with network_client(lab) as network:
        network.network_security_perimeter_access_rules.create_or_update(
            PERIMETER_GROUP,
            "nsp-app",
            "default",
            "office",
            NspAccessRule(
                properties=NspAccessRuleProperties(direction="Inbound", address_prefixes=["203.0.113.0/28"])
            ),
        )
    [kv301] = [f for f in scan(runtime).report.findings if f.rule_id == "KV301"]
    assert "networkSecurityPerimeter.accessRulesVersion" in {c["field"] for c in kv301.evidence["changes"]}
    # The association itself was not written: its modifier (alice) did not make this change.
    assert kv301.evidence["last_modified_by"] == NETWORK_PIPELINE_APP_ID
    assert kv301.evidence["last_modified_of"] == "networkSecurityPerimeter"


def test_the_one_vault_read_of_an_event_reads_its_perimeter(lab: LabServices, store: Store) -> None:
    estate, vault_id, _ = locked_and_perimetered()
    lab.use(estate)
    outcome = scan(runtime_for(lab, store), vault_id=vault_id)
    [posture] = outcome.report.postures
    assert posture.perimeter.lookup == PerimeterLookup.ASSOCIATED and "KV015" in rule_ids(outcome)
