"""run_scan over the lab's estate with storage accounts: the real azure-mgmt-storage client reads them
from the lab's ARM, one evaluation judges them with the vaults, the store keeps their postures (ST301,
ST302 from the stored past), each service's listing answers for its own resources only, and an ST
finding opened then resolved reaches the lab's webhook sink through the real notifier."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import WALKTHROUGH_SUBSCRIPTION, Estate, walkthrough_estate
from lab.http import Fault
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.cli import main
from monitor.config.settings import Settings
from monitor.errors import InputError
from monitor.model import ChangeKind, FindingStatus, Service
from monitor.scan_report import ScanReport
from tests.scan.test_scan_observed import schema_errors

SUB = WALKTHROUGH_SUBSCRIPTION
OPEN_ACLS = {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [], "virtualNetworkRules": []}
CLOSED_ACLS = {"bypass": "None", "defaultAction": "Deny", "ipRules": [], "virtualNetworkRules": []}
STORAGE_LIST = f"(?i)^/subscriptions/{SUB}/providers/Microsoft\\.Storage/storageAccounts$"
VAULT_LIST = f"(?i)^/subscriptions/{SUB}/providers/Microsoft\\.KeyVault/vaults$"
# A scan of configuration alone: the probes and logs are Key Vault's, tested elsewhere.
REQUEST = ScanRequest(subscriptions=(SUB,), probe=False, logs=False, notify=False)


def storage_estate() -> Estate:
    estate = walkthrough_estate()
    estate.add_storage_account(
        subscription_id=SUB,
        resource_group="rg-data",
        name="stopen",
        properties={"publicNetworkAccess": "Enabled", "networkAcls": OPEN_ACLS},
    )
    estate.add_storage_account(
        subscription_id=SUB,
        resource_group="rg-data",
        name="stclosed",
        properties={
            "publicNetworkAccess": "Disabled",
            "networkAcls": CLOSED_ACLS,
            "allowSharedKeyAccess": False,
        },
    )
    return estate


def account(estate: Estate, name: str) -> dict[str, Any]:
    return next(a for a in estate.storage_accounts.values() if a["name"] == name)


def close(estate: Estate, name: str) -> None:
    found = account(estate, name)
    found["properties"] = dict(
        found["properties"],
        publicNetworkAccess="Disabled",
        networkAcls=CLOSED_ACLS,
        allowSharedKeyAccess=False,
    )
    found["systemData"] = dict(found["systemData"], lastModifiedBy="bob@contoso.example")


def remove(estate: Estate, name: str) -> None:
    key = account(estate, name)["id"].lower()
    del estate.storage_accounts[key]
    estate.storage_subscriptions[SUB].remove(key)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    with LabServices(storage_estate()) as services:
        yield services


@pytest.fixture
def environ(lab: LabServices, tmp_path: Path) -> dict[str, str]:
    lab.use(storage_estate())
    lab.arm.server.clear_faults()
    return lab.environ(sqlite_path=tmp_path / "kvmon.db")


@pytest.fixture
def runtime(environ: dict[str, str]) -> Iterator[ScanRuntime]:
    runtime = build_runtime(Settings.from_environ(environ), environ=environ, credential=LabCredential())
    yield runtime
    assert runtime.store is not None
    runtime.store.close()


def rules_of(report: ScanReport, name: str) -> set[str]:
    return {f.rule_id for f in report.findings if f.vault_name == name}


def changes_of(report: ScanReport, name: str) -> set[tuple[ChangeKind, str]]:
    return {(c.kind, c.finding.rule_id) for c in report.changes if c.finding.vault_name == name}


def open_rules(runtime: ScanRuntime, name: str) -> set[str]:
    assert runtime.store is not None
    return {
        record.finding.rule_id
        for record in runtime.store.load_findings(status=FindingStatus.OPEN).values()
        if record.finding.vault_name == name
    }


def test_a_scan_reads_judges_and_stores_the_accounts_beside_the_vaults(runtime: ScanRuntime) -> None:
    report = run_scan(REQUEST, runtime).report

    assert report.errors == []
    assert {a.name for a in report.accounts} == {"stopen", "stclosed"}
    assert {p.name for p in report.postures} >= {"kv-se-demo", "kv-pl-demo"}
    assert "ST001" in rules_of(report, "stopen") and "ST001" not in rules_of(report, "stclosed")
    assert "KV001" in rules_of(report, "kv-se-demo")
    assert (ChangeKind.OPENED, "ST001") in changes_of(report, "stopen")
    assert not any(f.rule_id == "ST302" for f in report.findings)  # the first scan of the scope
    assert report.listed_subscriptions == (SUB,) and report.unread_subscriptions == ()
    assert runtime.store is not None
    assert runtime.store.scan_runs(limit=1)[0].counts["accounts"] == 2

    again = run_scan(REQUEST, runtime).report
    assert again.changes == []


def test_st301_and_st302_fire_from_the_stored_posture(lab: LabServices, runtime: ScanRuntime) -> None:
    run_scan(REQUEST, runtime)
    close(lab.estate, "stopen")
    remove(lab.estate, "stclosed")
    lab.estate.add_storage_account(subscription_id=SUB, resource_group="rg-data", name="stnew")

    report = run_scan(REQUEST, runtime).report

    drift = [f for f in report.findings if f.rule_id == "ST301" and f.vault_name == "stopen"]
    assert len(drift) == 1 and "bob@contoso.example" in json.dumps(drift[0].evidence)
    assert (ChangeKind.RESOLVED, "ST001") in changes_of(report, "stopen")
    gone = [f for f in report.findings if f.rule_id == "ST302" and f.vault_name == "stclosed"]
    assert [f.subject for f in gone] == ["disappeared"]
    appeared = [f for f in report.findings if f.rule_id == "ST302" and f.vault_name == "stnew"]
    assert [f.subject for f in appeared] == ["appeared"]


def test_the_first_storage_scan_of_a_scope_whose_vaults_are_stored_reports_nothing_appeared(
    runtime: ScanRuntime,
) -> None:
    vaults_only = run_scan(
        ScanRequest(
            subscriptions=(SUB,),
            probe=False,
            logs=False,
            notify=False,
            services=frozenset({Service.KEYVAULT}),
        ),
        runtime,
    ).report
    assert vaults_only.accounts == [] and vaults_only.unread_subscriptions == ()

    report = run_scan(REQUEST, runtime).report

    assert {a.name for a in report.accounts} == {"stopen", "stclosed"}
    assert not any(f.rule_id == "ST302" for f in report.findings)


def test_a_failed_account_listing_keeps_st_findings_open_and_the_vaults_read(
    lab: LabServices, runtime: ScanRuntime
) -> None:
    run_scan(REQUEST, runtime)
    before = open_rules(runtime, "stopen")
    assert "ST001" in before
    close(lab.estate, "stopen")
    lab.arm.server.inject(STORAGE_LIST, Fault(status=500, times=0))

    report = run_scan(REQUEST, runtime).report

    assert [e.scope for e in report.errors] == [SUB] and "storage accounts" in report.errors[0].message
    assert report.accounts == [] and report.unread_subscriptions == (SUB,)  # kvmon scan exits 3
    assert {p.name for p in report.postures} >= {"kv-se-demo", "kv-pl-demo"}  # the vaults are read
    assert "KV001" in rules_of(report, "kv-se-demo")
    assert not any(f.rule_id == "ST302" for f in report.findings)  # nothing is gone on a failed listing
    assert open_rules(runtime, "stopen") == before
    assert [c for c in report.changes if c.kind is ChangeKind.RESOLVED] == []


def test_a_failed_vault_listing_keeps_kv_findings_open_and_the_accounts_read(
    lab: LabServices, runtime: ScanRuntime
) -> None:
    run_scan(REQUEST, runtime)
    vault_findings = open_rules(runtime, "kv-se-demo")
    close(lab.estate, "stopen")
    lab.arm.server.inject(VAULT_LIST, Fault(status=500, times=0))

    report = run_scan(REQUEST, runtime).report

    assert [e.scope for e in report.errors] == [SUB]
    assert report.postures == [] and report.unread_subscriptions == (SUB,)
    assert (ChangeKind.RESOLVED, "ST001") in changes_of(report, "stopen")  # the accounts' listing was whole
    assert open_rules(runtime, "kv-se-demo") == vault_findings
    assert not any(f.rule_id == "KV302" for f in report.findings)


def test_an_st001_opened_then_resolved_reaches_the_webhook_sink(
    lab: LabServices, environ: dict[str, str]
) -> None:
    environ = dict(
        environ,
        KVMON_CHANNELS=json.dumps([{"name": "siem", "kind": "webhook", "url_setting": "KVMON_SIEM_URL"}]),
        KVMON_SIEM_URL=lab.sinks.webhook_url(),
    )
    runtime = build_runtime(Settings.from_environ(environ), environ=environ, credential=LabCredential())
    notifying = ScanRequest(subscriptions=(SUB,), probe=False, logs=False)

    run_scan(notifying, runtime)
    close(lab.estate, "stopen")
    run_scan(notifying, runtime)

    told = [
        (change["event"], change["rule_id"])
        for message in lab.sinks.messages("webhook")
        for change in message.json()["changes"]
        if change["vault"]["name"] == "stopen"
    ]
    assert ("opened", "ST001") in told and ("resolved", "ST001") in told


def test_kvmon_scan_of_storage_exits_1_on_findings_and_3_on_an_unread_listing(
    lab: LabServices,
    environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.runtime.default_credential", lambda settings: LabCredential())
    flags = ["scan", "--format", "json", "--service", "storage", "--no-notify", "--no-probes", "--no-logs"]

    assert main(flags) == 1
    document = json.loads(capsys.readouterr().out)
    assert {f["rule"] for f in document["findings"]} >= {"ST001"}
    assert not any(f["rule"].startswith("KV") for f in document["findings"])
    assert schema_errors(document) == []
    assert document["vaults"] == [] and document["accounts"]
    assert all(account["complete"] for account in document["accounts"]) and document["complete"] is True
    listed = {account["id"].lower() for account in document["accounts"]}
    assert {f["vault_id"].lower() for f in document["findings"]} <= listed

    lab.arm.server.inject(STORAGE_LIST, Fault(status=500, times=0))
    assert main(flags) == 3
    document = json.loads(capsys.readouterr().out)
    assert [e["scope"] for e in document["errors"]] == [SUB]
    assert document["accounts"] == [] and document["complete"] is False


def test_a_request_for_storage_needs_a_runtime_that_reads_it_and_one_vault_reads_key_vault(
    runtime: ScanRuntime,
) -> None:
    storage = frozenset({Service.STORAGE})
    with pytest.raises(InputError, match="Key Vault"):
        ScanRequest(subscriptions=(SUB,), vault_name="kv-se-demo", services=storage)
    with pytest.raises(InputError, match="at least one service"):
        ScanRequest(subscriptions=(SUB,), services=frozenset())
    without_storage = dataclasses.replace(runtime, storage_inventory=None)
    with pytest.raises(InputError, match="storage accounts"):
        run_scan(ScanRequest(subscriptions=(SUB,), services=storage), without_storage)
    # Not asked for: a runtime without storage scans the vaults, as before.
    report = run_scan(REQUEST, without_storage).report
    assert report.accounts == [] and report.postures and report.unread_subscriptions == ()


def test_the_scan_deadline_cuts_off_a_hanging_account_listing_and_keeps_the_vaults(
    lab: LabServices, runtime: ScanRuntime
) -> None:
    run_scan(REQUEST, runtime)
    before = open_rules(runtime, "stopen")
    lab.arm.server.inject(STORAGE_LIST, Fault(delay_s=5, times=0))
    hurried = dataclasses.replace(runtime, deadline=dt.timedelta(seconds=1))

    started = time.monotonic()
    report = run_scan(REQUEST, hurried).report

    assert time.monotonic() - started < 4
    assert [e.scope for e in report.errors] == [SUB]
    assert "storage account listing" in report.errors[0].message and "deadline" in report.errors[0].message
    assert report.accounts == [] and report.unread_subscriptions == (SUB,)
    assert {p.name for p in report.postures} >= {"kv-se-demo", "kv-pl-demo"}
    assert open_rules(runtime, "stopen") == before
