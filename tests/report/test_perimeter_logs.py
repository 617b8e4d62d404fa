"""The perimeter's access log in the report: per vault, in the document and on the page."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from monitor.model import PerimeterLogCategory, PerimeterLogEvidence
from monitor.outputs.report import build_report_document, render_html
from monitor.scan_report import ScanReport
from tests.logs.test_perimeter_rules import seen
from tests.report.dom import ReportDom
from tests.report.scenario import GENERATED, POLICIES, VANTAGES, walkthrough_report


def with_perimeter_logs(report: ScanReport, *, complete: bool = True, rows: bool = True) -> ScanReport:
    (vault,) = [p for p in report.postures if p.name == "kv-se-demo"]
    access = (
        (
            dataclasses.replace(seen("203.0.113.7", count=4), vault_id=vault.key),
            dataclasses.replace(
                seen("198.51.100.9", category=PerimeterLogCategory.PUBLIC_PERIMETER_RULES_DENIED, rule=None),
                vault_id=vault.key,
            ),
            dataclasses.replace(
                seen("127.10.2.4", category=PerimeterLogCategory.PRIVATE_INBOUND_ALLOWED, rule=None, count=2),
                vault_id=vault.key,
            ),
        )
        if rows
        else ()
    )
    report.perimeter_evidence = [
        PerimeterLogEvidence(
            vault_id=vault.key,
            workspace_id="nsp-workspace",
            window_start=report.started_at,
            window_end=GENERATED,
            access=access,
            complete=complete,
            notes=()
            if complete
            else ("evidence incomplete: workspace nsp-workspace has no NSPAccessLogs table",),
        )
    ]
    return report


def document(report: ScanReport) -> dict[str, Any]:
    built = build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)
    return json.loads(json.dumps(built))  # stored and read back, as `kvmon report` gets it


def vault(built: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in built["vaults"] if v["name"] == name]
    return found


def test_the_document_says_who_the_perimeter_let_in_and_by_which_rule() -> None:
    built = document(with_perimeter_logs(walkthrough_report(fixed=True)))
    (logs,) = vault(built, "kv-se-demo")["perimeter_logs"]
    assert logs["workspace_id"] == "nsp-workspace" and logs["complete"] is True
    assert (
        logs["requests"],
        logs["public_admitted_by_perimeter_rules"],
        logs["public_admitted_by_vault_rules"],
        logs["public_denied"],
        logs["not_public"],
    ) == (7, 4, 0, 1, 2)
    assert logs["top_sources"][0] == {
        "source": "203.0.113.7",
        "category": "NspPublicInboundPerimeterRulesAllowed",
        "matched_rule": "allow-all",
        "app_id": seen().source_app_id,
        "count": 4,
        "last_seen": logs["top_sources"][0]["last_seen"],
    }
    assert vault(built, "kv-pl-demo")["perimeter_logs"] == []


def test_an_incomplete_perimeter_log_is_a_note_of_its_vault() -> None:
    built = document(with_perimeter_logs(walkthrough_report(fixed=True), complete=False))
    notes = vault(built, "kv-se-demo")["evidence"]["notes"]
    assert any(
        note.startswith("perimeter logs of workspace nsp-workspace incomplete")
        and "no NSPAccessLogs table" in note
        for note in notes
    )


def test_the_page_shows_the_perimeter_log_and_an_empty_one_as_no_evidence() -> None:
    page = ReportDom.parse(render_html(document(with_perimeter_logs(walkthrough_report(fixed=True)))))
    assert "Perimeter access logs" in page.text
    assert "4 public admitted by perimeter rules" in page.text
    assert "allow-all" in page.text

    empty = ReportDom.parse(
        render_html(document(with_perimeter_logs(walkthrough_report(fixed=True), rows=False)))
    )
    assert "no rows: no evidence" in empty.text and "not no access" in empty.text


def test_a_document_stored_before_perimeter_logs_still_renders() -> None:
    built = document(walkthrough_report(fixed=True))
    for entry in built["vaults"]:
        del entry["perimeter_logs"]
    assert "Perimeter access logs" not in ReportDom.parse(render_html(built)).text


def test_an_empty_log_of_a_governed_vault_is_a_note_saying_no_evidence() -> None:
    report = with_perimeter_logs(walkthrough_report(fixed=True), rows=False)
    (index,) = [i for i, p in enumerate(report.postures) if p.name == "kv-se-demo"]
    report.postures[index] = dataclasses.replace(
        report.postures[index], public_network_access="SecuredByPerimeter"
    )
    notes = vault(document(report), "kv-se-demo")["evidence"]["notes"]
    assert (
        "no log rows in workspace nsp-workspace: a perimeter governs the vault and the workspace may sit "
        "outside it; no evidence, not no access"
    ) in notes
    plain = vault(document(with_perimeter_logs(walkthrough_report(fixed=True), rows=False)), "kv-se-demo")
    assert not any(note.startswith("no log rows") for note in plain["evidence"]["notes"])
