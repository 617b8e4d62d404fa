"""``kvmon scan`` with the perimeters' access logs (``KVMON_NSP_WORKSPACES``) against the lab: one
``NSPAccessLogs`` query per workspace through azure-monitor-query, KV205 from the rows a perimeter's
diagnostic setting wrote, and an empty or missing log that resolves nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from lab.estate import INTERNET_CLIENT, WALKTHROUGH_SUBSCRIPTION, WALKTHROUGH_WORKSPACE
from lab.loganalytics import PerimeterAccessRecord, recognise_perimeter
from lab.services import LabServices
from monitor.cli import main
from monitor.model import PerimeterLogCategory
from monitor.sources.logs import NSP_TABLE_MISSING
from monitor.sources.nsp_kql import HEADER

NSP_WORKSPACE = "99999999-8888-7777-6666-555555555555"
PERIMETER = (
    "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough"
    "/providers/Microsoft.Network/networkSecurityPerimeters/nsp-walkthrough"
)


@pytest.fixture
def nsp_environ(lab: LabServices, lab_environ: dict[str, str], monkeypatch) -> dict[str, str]:
    """The walkthrough, kv-se-demo SecuredByPerimeter and associated with the lab's perimeter in
    Enforced mode, and the perimeter's logs in a workspace of their own."""
    vault = lab.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    lab.estate.update_vault(vault["id"], properties={"publicNetworkAccess": "SecuredByPerimeter"})
    perimeter_id = lab.estate.add_perimeter(
        subscription_id=WALKTHROUGH_SUBSCRIPTION, resource_group="rg-walkthrough", name="nsp-walkthrough"
    )
    assert perimeter_id.lower() == PERIMETER.lower()
    lab.estate.perimeters.add_profile(perimeter_id, "default")
    lab.estate.perimeters.associate(
        perimeter_id, "assoc-kv-se-demo", resource_id=vault["id"], profile="default", access_mode="Enforced"
    )
    monkeypatch.setenv("KVMON_NSP_WORKSPACES", NSP_WORKSPACE)
    return {**lab_environ, "KVMON_NSP_WORKSPACES": NSP_WORKSPACE}


def scan(capsys: pytest.CaptureFixture[str]) -> dict:
    main(["scan", "--format", "json", "--no-probes", "--no-notify"])
    return json.loads(capsys.readouterr().out)


def perimeter_wrote(
    lab: LabServices, category: PerimeterLogCategory, *, rule: str = "allow-all", minutes_ago: float = 0.5
) -> None:
    vault = lab.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    lab.logs.record_perimeter_access(
        NSP_WORKSPACE,
        PerimeterAccessRecord(
            time=lab.estate.now() - dt.timedelta(minutes=minutes_ago),
            vault_id=vault["id"],
            perimeter_id=PERIMETER,
            category=category.value,
            source_address=INTERNET_CLIENT,
            matched_rule=rule,
        ),
    )


def findings_of(document: dict, rule: str) -> list[dict]:
    return [f for f in document["findings"] if f["rule"] == rule]


def changes_of(document: dict, rule: str) -> set[str]:
    return {c["change"] for c in document["changes"] if c["rule"] == rule}


def test_perimeter_admissions_open_kv205_and_an_empty_or_missing_log_resolves_nothing(
    lab: LabServices, nsp_environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Older than the next scan's overlap (5 minutes): only the first scan's window holds it.
    perimeter_wrote(lab, PerimeterLogCategory.PUBLIC_PERIMETER_RULES_ALLOWED, minutes_ago=6)
    first = scan(capsys)

    sent = [q for q in lab.logs.queries if q.query.startswith(HEADER)]
    assert len(sent) == 1 and sent[0].workspace_id == NSP_WORKSPACE  # one query for all vaults
    listed = {vault["id"].lower() for vault in lab.estate.vaults_in(WALKTHROUGH_SUBSCRIPTION)}
    assert len(listed) > 1 and set(recognise_perimeter(sent[0].query)) == listed
    assert first["errors"] == []
    (kv205,) = findings_of(first, "KV205")
    assert (kv205["vault"], kv205["subject"]) == ("kv-se-demo", INTERNET_CLIENT)
    assert kv205["evidence"]["matched_rules"] == [{"rule": "allow-all", "requests": 1}]
    assert "opened" in changes_of(first, "KV205")
    # The vault's own audit log is empty (no probes): for this governed vault that is no evidence.
    kv204 = {f["vault"]: f for f in findings_of(first, "KV204")}
    assert "may sit outside it" in kv204["kv-se-demo"]["summary"]
    assert "perimeter" not in kv204["kv-pl-demo"]["summary"]

    # The next window holds no perimeter row: no evidence, so KV205 stays open and KV207 says why.
    lab.logs.queries.clear()
    second = scan(capsys)
    assert second["errors"] == []
    assert "resolved" not in changes_of(second, "KV205")
    (kv207,) = findings_of(second, "KV207")
    assert kv207["vault"] == "kv-se-demo" and "no evidence, not no access" in kv207["summary"]

    # The table is gone (a workspace no perimeter writes to): a named error, nothing resolves.
    lab.logs.set_tables(NSP_WORKSPACE, "AZKVAuditLogs")
    third = scan(capsys)
    (error,) = [e for e in third["errors"] if e["scope"] == NSP_WORKSPACE]
    assert error["code"] == NSP_TABLE_MISSING and "has no NSPAccessLogs table" in error["message"]
    assert "resolved" not in changes_of(third, "KV205") | changes_of(third, "KV207")

    # Rows again, none a perimeter rule's admission: evidence that nobody got in that way.
    lab.logs.set_tables(NSP_WORKSPACE, "AZKVAuditLogs", "NSPAccessLogs")
    perimeter_wrote(lab, PerimeterLogCategory.PUBLIC_PERIMETER_RULES_DENIED, rule="")
    fourth = scan(capsys)
    assert fourth["errors"] == []
    assert "resolved" in changes_of(fourth, "KV205") and "resolved" in changes_of(fourth, "KV207")


def test_without_perimeter_workspaces_no_perimeter_query_is_sent(
    lab: LabServices, lab_environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    document = scan(capsys)
    assert document["errors"] == []
    assert lab.logs.queries and not [q for q in lab.logs.queries if q.query.startswith(HEADER)]
    assert WALKTHROUGH_WORKSPACE in {q.workspace_id for q in lab.logs.queries}
