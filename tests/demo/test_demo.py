"""The walkthrough demo, step by step: what each scan opened and resolved, what the probes and
the logs showed, what Teams and Slack received, and the HTML report it wrote."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from lab.demo import FIX_AFTER, PL_VAULT, PLATFORM_PIPELINE_APP_ID, SE_VAULT, ScanView, change_lines
from monitor.model import ChangeKind, Outcome, Severity, Verdict
from tests.demo.conftest import DemoRun

SE_STEP1 = {"KV001", "KV002", "KV011", "KV101", "KV201"}
PL_OPEN = {"KV001", "KV008", "KV011", "KV101", "KV103", "KV105", "KV201"}


def sink_lines(view: ScanView, service: str) -> Counter[tuple[str, str]]:
    """(event, rule) -> how many change lines the service's one message of this scan carries."""
    assert len(view.messages[service]) == 1, f"{service} got {len(view.messages[service])} messages"
    return Counter(change_lines(service, view.messages[service][0].json()))


def expected_lines(view: ScanView) -> Counter[tuple[str, str]]:
    label = {
        ChangeKind.OPENED: "Opened",
        ChangeKind.REOPENED: "Reopened",
        ChangeKind.CONFIRMED: "Confirmed",
        ChangeKind.RESOLVED: "Resolved",
    }
    return Counter((label[c.kind], c.finding.rule_id) for c in view.outcome.report.changes)


def rules_of(view: ScanView, vault: str) -> set[str]:
    return {f.rule_id for f in view.findings(vault)}


# -- step 1 -------------------------------------------------------------------------------------


def test_step1_opens_configuration_probe_and_log_findings_for_both_vaults(demo: DemoRun) -> None:
    scan = demo.scan(1)
    assert scan.outcome.report.errors == []
    assert scan.opened == {SE_VAULT: SE_STEP1, PL_VAULT: PL_OPEN}
    assert scan.resolved == {}


def test_step1_internet_probe_admitted_and_logged_as_public(demo: DemoRun) -> None:
    scan = demo.scan(1)
    internet = scan.probe(SE_VAULT, "internet")
    assert internet is not None and internet.verdict is Verdict.ADMITTED
    assert internet.seen_address == "127.30.0.5"
    kv101 = [f for f in scan.findings(SE_VAULT) if f.rule_id == "KV101"]
    assert "internet" in {f.subject for f in kv101}
    kv201 = {f.subject for f in scan.findings(SE_VAULT) if f.rule_id == "KV201"}
    assert "127.30.0.5" in kv201
    evidence = scan.evidence(SE_VAULT)
    assert evidence is not None
    assert any(
        a.caller_address == "127.30.0.5" and a.outcome is Outcome.ADMITTED and not a.address_private
        for a in evidence.activity
    )


def test_step1_sinks_receive_the_opened_findings(demo: DemoRun) -> None:
    scan = demo.scan(1)
    for service in ("teams", "slack"):
        lines = sink_lines(scan, service)
        assert lines == expected_lines(scan)
        assert {event for event, _ in lines} == {"Opened"}
        assert {rule for _, rule in lines} == SE_STEP1 | PL_OPEN


# -- step 2 -------------------------------------------------------------------------------------


def test_step2_fix_resolves_configuration_and_probe_findings_and_opens_kv301(demo: DemoRun) -> None:
    scan = demo.scan(2, 0)
    assert scan.outcome.report.errors == []
    assert scan.opened == {SE_VAULT: {"KV301"}}
    assert scan.resolved == {SE_VAULT: {"KV001", "KV002", "KV011", "KV101"}}
    # The logs window still holds step 1's public admissions: KV201 waits for the next scan.
    assert rules_of(scan, SE_VAULT) == {"KV201", "KV301"}
    evidence = scan.evidence(SE_VAULT)
    assert evidence is not None
    step1_admissions = [
        a.first_seen
        for a in (demo.scan(1).evidence(SE_VAULT) or evidence).activity
        if a.outcome is Outcome.ADMITTED and not a.address_private and a.first_seen
    ]
    assert step1_admissions and all(evidence.window_start <= moment for moment in step1_admissions)


def test_step2_kv301_names_the_pipeline_and_when_it_tightened(demo: DemoRun) -> None:
    scan = demo.scan(2, 0)
    (kv301,) = [f for f in scan.findings(SE_VAULT) if f.rule_id == "KV301"]
    assert kv301.severity is Severity.INFO  # tightening
    assert kv301.evidence["direction"] == "tightening"
    assert kv301.evidence["last_modified_by"] == PLATFORM_PIPELINE_APP_ID
    assert kv301.evidence["last_modified_by_type"] == "Application"
    assert {
        "field": "networkAcls.defaultAction",
        "change": "changed",
        "before": "Allow",
        "after": "Deny",
        "direction": "tightening",
    } in kv301.evidence["changes"]
    # When: on the demo clock, the fix came FIX_AFTER after scan 1 and before scan 2.
    when = dt.datetime.fromisoformat(kv301.evidence["last_modified_at"].replace("Z", "+00:00"))
    first = demo.scan(1).at
    assert first + FIX_AFTER <= when < scan.at
    assert PLATFORM_PIPELINE_APP_ID in kv301.summary


def test_step2_probes_internet_refused_by_firewall_and_service_endpoint_private(demo: DemoRun) -> None:
    scan = demo.scan(2, 0)
    internet = scan.probe(SE_VAULT, "internet")
    assert internet is not None and internet.data_plane is not None
    assert internet.verdict is Verdict.REFUSED_FIREWALL
    assert internet.data_plane.inner_code == "ForbiddenByFirewall"
    assert internet.data_plane.client_address == "127.30.0.5"
    assert internet.data_plane.client_address_private is False
    se = scan.probe(SE_VAULT, "se-subnet")
    assert se is not None and se.health is not None
    assert se.verdict is Verdict.ADMITTED
    assert se.seen_address == "127.10.1.4"
    assert se.health.seen_address_private is True


def test_step2_logs_show_refusals_from_the_public_address(demo: DemoRun) -> None:
    evidence = demo.scan(2, 0).evidence(SE_VAULT)
    assert evidence is not None
    refused = [
        a
        for a in evidence.activity
        if a.outcome is Outcome.REFUSED_FIREWALL and a.caller_address == "127.30.0.5"
    ]
    assert refused and not refused[0].address_private
    assert any(
        a.caller_address == "127.10.1.4" and a.address_private and a.address_auth_type == "Subnet"
        for a in evidence.activity
    )


def test_step2_next_scan_resolves_kv201_and_kv301(demo: DemoRun) -> None:
    scan = demo.scan(2, 1)
    assert scan.outcome.report.errors == []
    assert scan.opened == {}
    assert scan.resolved == {SE_VAULT: {"KV201", "KV301"}}
    assert scan.findings(SE_VAULT) == []


def test_step2_sinks_receive_kv301_and_the_resolutions(demo: DemoRun) -> None:
    fix, next_scan = demo.scan(2, 0), demo.scan(2, 1)
    for service in ("teams", "slack"):
        assert sink_lines(fix, service) == expected_lines(fix)
        assert sink_lines(fix, service)[("Opened", "KV301")] == 1
        assert {rule for event, rule in sink_lines(fix, service) if event == "Resolved"} == {
            "KV001",
            "KV002",
            "KV011",
            "KV101",
        }
        assert sink_lines(next_scan, service) == expected_lines(next_scan)
        assert {event for event, _ in sink_lines(next_scan, service)} == {"Resolved"}


# -- step 3 -------------------------------------------------------------------------------------


def test_step3_private_link_vault_kv008_and_kv103_stay_open_unannounced(demo: DemoRun) -> None:
    scan = demo.scan(3)
    assert scan.outcome.report.errors == []
    # Probes are dated on the demo clock: no vantage point looks stale (KV106) an hour later.
    assert rules_of(scan, PL_VAULT) == PL_OPEN
    assert rules_of(scan, SE_VAULT) == set()
    assert scan.outcome.report.changes == []
    assert scan.messages == {"teams": [], "slack": []}
    (kv103,) = [f for f in scan.findings(PL_VAULT) if f.rule_id == "KV103"]
    assert kv103.subject == "spoke"


def test_step3_dns_private_inside_the_hub_public_from_the_spoke(demo: DemoRun) -> None:
    scan = demo.scan(3)
    for vantage in ("se-subnet", "pl-subnet", "default-subnet"):
        probe = scan.probe(PL_VAULT, vantage)
        assert probe is not None and probe.dns is not None
        assert probe.dns.addresses == ("127.10.2.10",)
        assert probe.seen_address is not None and probe.seen_address.startswith("127.10.")
    spoke = scan.probe(PL_VAULT, "spoke")
    assert spoke is not None and spoke.dns is not None
    assert spoke.dns.addresses == ("127.40.0.10",)
    assert spoke.seen_address == "127.20.0.4"  # through the spoke's NAT, over the public path


# -- the report and the printed summary ---------------------------------------------------------


def test_report_written_with_the_matrix_and_the_findings(demo: DemoRun, report_html: str) -> None:
    assert "Reachability: vaults × vantage points (expected vs observed)" in report_html
    for name in (SE_VAULT, PL_VAULT, "internet", "se-subnet", "pl-subnet", "default-subnet", "spoke"):
        assert name in report_html
    for rule in ("KV008", "KV103"):
        assert rule in report_html
    assert "<script" not in report_html.lower()
    assert 'rel="stylesheet"' not in report_html
    document = demo.scan(3).document
    cells = {v["name"]: v["reachability"] for v in document["vaults"]}
    assert cells[PL_VAULT]["spoke"]["dns_state"] == "mismatch"
    assert cells[PL_VAULT]["internet"]["reach_state"] == "mismatch"
    assert all(cell["state"] == "ok" for cell in cells[SE_VAULT].values())


def test_printed_summary_tells_each_step(demo: DemoRun) -> None:
    output = demo.output
    for text in (
        "Step 1 · kv-se-demo",
        "Step 2 · the firewall is fixed",
        "Step 3 · kv-pl-demo",
        "kv-se-demo from each vantage point",
        "kv-pl-demo from each vantage point",
        "refused: ForbiddenByFirewall",
        "127.10.1.4 (private)",
        "127.40.0.10 (public)",
        "127.10.2.10 (private)",
        PLATFORM_PIPELINE_APP_ID,
        "KV201 stays open",
        "teams: 1 message, Opened 19:",
        "slack: 1 message, Opened 1: KV301; Resolved 7:",
        "teams: nothing new",
        str(demo.result.report_path),
    ):
        assert text in output, text
    assert "Traceback" not in output
