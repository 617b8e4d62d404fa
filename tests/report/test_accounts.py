"""Storage accounts in the report: their own section of the document and the page, never among the
vaults, and a gone account's resolution kept under its service."""

from __future__ import annotations

import dataclasses

from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.model import ChangeKind, FindingChange
from monitor.model_storage import DefaultAction, StorageAccountPosture
from monitor.outputs.report import build_report_document, render_html
from monitor.scan_report import ScanReport
from monitor.sources.storage.normalise import normalise_storage_account
from tests.report.dom import ReportDom
from tests.report.scenario import GENERATED, POLICIES, VANTAGES, walkthrough_report
from tests.storage.conftest import example


def open_account() -> StorageAccountPosture:
    """Azure's published GetProperties example, its firewall opened: ST001 fires."""
    posture = normalise_storage_account(example("StorageAccountGetProperties"))
    return dataclasses.replace(
        posture, default_action=DefaultAction.ALLOW, ip_rules=(), virtual_network_rules=()
    )


def with_account(report: ScanReport, account: StorageAccountPosture) -> ScanReport:
    findings = evaluate(
        [StorageFacts(posture=account, policy=VaultPolicy())], today=GENERATED.date()
    ).findings
    report.accounts = [account]
    report.findings = [*report.findings, *findings]
    return report


def test_an_account_has_its_own_entry_and_is_not_among_the_vaults() -> None:
    account = open_account()
    report = with_account(walkthrough_report(), account)
    document = build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)

    assert account.id not in {vault["id"] for vault in document["vaults"]}
    [entry] = document["accounts"]
    assert entry["id"] == account.id and entry["present"] is True and entry["reachability"] == {}
    assert entry["config"]["default_action"] == "Allow" and entry["config"]["publicly_open"] is True
    assert "ST001" in {finding["rule"] for finding in entry["findings"]}
    assert document["counts"]["accounts"] == 1
    assert document["counts"]["vaults"] == len(report.postures)


def test_a_gone_accounts_resolution_stays_under_storage() -> None:
    account = open_account()
    report = walkthrough_report()
    [finding] = [
        f
        for f in evaluate(
            [StorageFacts(posture=account, policy=VaultPolicy())], today=GENERATED.date()
        ).findings
        if f.rule_id == "ST001"
    ]
    report.changes = [*report.changes, FindingChange(kind=ChangeKind.RESOLVED, finding=finding)]
    document = build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)

    [entry] = document["accounts"]
    assert entry["present"] is False and entry["changes"][0]["kind"] == "resolved"
    assert account.id not in {vault["id"] for vault in document["vaults"]}


def test_the_page_shows_the_accounts_configuration_and_findings() -> None:
    account = open_account()
    report = with_account(walkthrough_report(), account)
    html = render_html(
        build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)
    )
    dom = ReportDom.parse(html)

    assert "Storage accounts: configuration" in dom.text
    assert f"{account.name}storage account · no baseline entry" in dom.text  # the heading
    assert f"{account.name} absent (open) Allow AzureServices" in dom.text  # its matrix row
    shown = [f.rule_id for f in report.findings if f.vault_id == account.id]
    assert shown and set(shown) <= set(dom.finding_rules)


def test_a_report_without_accounts_has_no_storage_section() -> None:
    report = walkthrough_report()
    document = build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)
    assert document["accounts"] == [] and document["counts"]["accounts"] == 0
    assert "Storage accounts" not in ReportDom.parse(render_html(document)).text


def test_a_stored_document_from_before_accounts_still_renders() -> None:
    document = build_report_document(
        walkthrough_report(), vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED
    )
    del document["accounts"]
    assert "Storage accounts" not in render_html(document)
