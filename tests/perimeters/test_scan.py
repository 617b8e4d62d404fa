"""Perimeters through ``run_scan`` as the CLI builds it (``build_runtime``): the lab's ARM read by
azure-mgmt-keyvault (or Resource Graph) and azure-mgmt-network, judged, stored in SQLite."""

from __future__ import annotations

import threading
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
from lab.http import Fault
from lab.services import LabServices
from monitor.app.deadline import DEADLINE_CODE
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanOutcome, ScanRequest, ScanRuntime, run_scan
from monitor.config.settings import Settings
from monitor.model import ChangeKind, ErrorSource, PerimeterLookup
from monitor.store import Store, open_store
from tests.perimeters.conftest import PERIMETER_GROUP, SUB_A, SUB_B, perimeter

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


def scan(
    runtime: ScanRuntime, *, subscriptions: tuple[str, ...] = (SUB_A,), **request: object
) -> ScanOutcome:
    return run_scan(
        ScanRequest(subscriptions=subscriptions, probe=False, logs=False, notify=False, **request),  # type: ignore[arg-type]
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


def test_a_perimeter_read_that_outlasts_the_scan_deadline_is_unreadable_everywhere_and_resolves_nothing(
    lab: LabServices, store: Store
) -> None:
    estate, vault_id, _ = locked_and_perimetered()
    other_id = estate.add_vault(
        subscription_id=SUB_B, resource_group="rg-app", name="kv-other", public_network_access="Disabled"
    )["id"]
    estate.perimeters.associate(
        perimeter(estate, SUB_B, "nsp-b"),
        "assoc-b",
        resource_id=other_id,
        profile="default",
        access_mode="Enforced",
    )
    lab.use(estate)
    both = {"KVMON_SUBSCRIPTIONS": f"{SUB_A},{SUB_B}"}
    first = scan(runtime_for(lab, store, **both), subscriptions=(SUB_A, SUB_B))
    assert first.report.errors == [] and "KV001" in rule_ids(first)

    # Every perimeter route stalls 3 s, within ARM's own timeout but past the scan's 1 s deadline.
    lab.arm.server.inject(
        r"(?i)/providers/Microsoft\.Network/networkSecurityPerimeters", Fault(delay_s=3, times=0)
    )
    try:
        second = scan(
            runtime_for(lab, store, KVMON_SCAN_DEADLINE="1s", KVMON_ARM_TIMEOUT="10", **both),
            subscriptions=(SUB_A, SUB_B),
        )
    finally:
        lab.arm.server.clear_faults()
        for thread in threading.enumerate():  # the cut-off read finishes in the background
            if thread.name == "kvmon-scan-source":
                thread.join(timeout=30)

    assert {p.key: p.perimeter.lookup for p in second.report.postures} == {
        vault_id.lower(): PerimeterLookup.UNREADABLE,
        other_id.lower(): PerimeterLookup.UNREADABLE,
    }
    errors = {(e.source, e.scope, e.code) for e in second.report.errors}
    assert errors == {(ErrorSource.ARM, SUB_A, DEADLINE_CODE), (ErrorSource.ARM, SUB_B, DEADLINE_CODE)}
    assert all("the network security perimeters not read" in e.message for e in second.report.errors)
    kv018 = {f.vault_id.lower() for f in second.report.findings if f.rule_id == "KV018"}
    assert kv018 == {vault_id.lower(), other_id.lower()}
    assert "KV001" not in rule_ids(second)  # unknown, never closed or open on a read that did not end
    assert [c for c in second.report.changes if c.kind is ChangeKind.RESOLVED] == []
