"""The report document: the walkthrough's scan as JSON, cell by cell."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from lab.estate import INTERNET_CLIENT
from monitor.config.policy import PLACE_NOT_STATED, Vantage, VantageExpectation, VaultPolicy
from monitor.model import (
    ChangeKind,
    DataPlaneStep,
    DnsStep,
    Finding,
    FindingChange,
    ProbeResult,
    ScanError,
    Severity,
    Verdict,
)
from monitor.outputs.report import SCHEMA, build_report_document
from monitor.scan_report import ScanReport
from tests.report import scenario
from tests.report.scenario import GENERATED, POLICIES, VANTAGES, walkthrough_report


def _document(report: ScanReport, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"vantages": VANTAGES, "policies": POLICIES, "generated_at": GENERATED}
    options.update(kwargs)
    return build_report_document(report, **options)


def _vault(document: dict[str, Any], name: str) -> dict[str, Any]:
    (vault,) = [v for v in document["vaults"] if v["name"] == name]
    return vault


def _cell_summary(cell: dict[str, Any]) -> tuple[Any, ...]:
    return (
        cell["expected_reach"],
        cell["observed_reach"],
        cell["expected_dns"],
        cell["observed_dns"],
        cell["seen_address"],
        cell["state"],
        cell["ok"],
    )


def test_document_is_versioned_plain_json() -> None:
    document = _document(walkthrough_report())

    assert document["schema"] == SCHEMA == "kvmon.report/v1"
    assert json.loads(json.dumps(document)) == document
    assert document["scan"] == {
        "id": "scan-20250314T093000Z-1a2b",
        "started_at": "2025-03-14T09:30:00Z",
        "finished_at": "2025-03-14T09:30:04.200000Z",
        "duration_s": 4.2,
        "scope": [scenario.WALKTHROUGH_SUBSCRIPTION],
    }
    assert document["generated_at"] == "2025-03-14T09:30:05.200000Z"
    assert [v["name"] for v in document["vantages"]] == [v.name for v in VANTAGES]


def test_step1_matrix_expected_against_observed() -> None:
    document = _document(walkthrough_report())
    se = _vault(document, "kv-se-demo")["reachability"]
    pl = _vault(document, "kv-pl-demo")["reachability"]

    # Service Endpoint vault with defaultAction Allow: everyone is admitted, only its subnet should be.
    assert _cell_summary(se["internet"]) == (
        "refused",
        "admitted",
        "public",
        "public",
        INTERNET_CLIENT,
        "mismatch",
        False,
    )
    assert se["internet"]["reach_state"] == "mismatch" and se["internet"]["dns_state"] == "ok"
    assert _cell_summary(se["se-subnet"]) == (
        "admitted",
        "admitted",
        "public",
        "public",
        "127.10.1.4",
        "ok",
        True,
    )
    assert se["se-subnet"]["seen_address_private"] is True
    assert _cell_summary(se["pl-subnet"]) == (
        "refused",
        "admitted",
        "public",
        "public",
        "127.20.0.2",
        "mismatch",
        False,
    )
    assert _cell_summary(se["default-subnet"]) == (
        "refused",
        "admitted",
        "public",
        "public",
        "127.20.0.3",
        "mismatch",
        False,
    )
    # The spoke's remote probe did not answer: no evidence either way, and it says why.
    assert _cell_summary(se["spoke"]) == ("refused", "error", "public", "none", None, "unknown", False)
    assert se["spoke"]["detail"] == "remote probe endpoint did not answer within 5 s"

    # Private Link vault with public access still enabled; the spoke's DNS zone is not linked.
    assert _cell_summary(pl["internet"]) == (
        "refused",
        "admitted",
        "public",
        "public",
        INTERNET_CLIENT,
        "mismatch",
        False,
    )
    for inside in ("se-subnet", "pl-subnet", "default-subnet"):
        assert pl[inside]["state"] == "ok" and pl[inside]["ok"] is True
        assert (pl[inside]["expected_dns"], pl[inside]["observed_dns"]) == ("private", "private")
    assert _cell_summary(pl["spoke"]) == (
        "admitted",
        "admitted",
        "private",
        "public",
        "127.20.0.4",
        "mismatch",
        False,
    )
    assert (pl["spoke"]["reach_state"], pl["spoke"]["dns_state"]) == ("ok", "mismatch")

    assert document["counts"]["mismatches"] == 5


def test_step2_refusals_carry_the_client_address() -> None:
    document = _document(walkthrough_report(fixed=True))
    se = _vault(document, "kv-se-demo")["reachability"]

    internet = se["internet"]
    assert _cell_summary(internet) == (
        "refused",
        "refused-firewall",
        "public",
        "public",
        INTERNET_CLIENT,
        "ok",
        True,
    )
    assert internet["seen_address_private"] is False
    assert internet["detail"] == "Forbidden (ForbiddenByFirewall)"
    assert (se["se-subnet"]["observed_reach"], se["se-subnet"]["seen_address"]) == ("admitted", "127.10.1.4")
    assert se["se-subnet"]["seen_address_private"] is True
    assert all(se[v]["ok"] for v in ("internet", "se-subnet", "pl-subnet", "default-subnet"))

    changes = _vault(document, "kv-se-demo")["changes"]
    assert [(c["kind"], c["rule"]) for c in changes] == [
        ("opened", "KV301"),
        ("resolved", "KV001"),
        ("resolved", "KV101"),
        ("resolved", "KV201"),
        ("resolved", "KV002"),
    ]
    assert document["counts"]["changes"] == {
        "opened": 1,
        "reopened": 0,
        "changed": 0,
        "resolved": 4,
        "confirmed": 0,
    }


def test_counts_findings_and_config_summary() -> None:
    document = _document(walkthrough_report())

    assert document["counts"]["vaults"] == 2
    assert document["counts"]["open"] == 6
    assert document["counts"]["suppressed"] == 1
    assert document["counts"]["by_severity"] == {"critical": 0, "high": 4, "medium": 2, "low": 0, "info": 0}
    assert list(document["counts"]["by_severity"]) == ["critical", "high", "medium", "low", "info"]
    assert document["counts"]["errors"] == 1

    se = _vault(document, "kv-se-demo")
    assert se["mode"] == "service-endpoint" and se["baseline_entry"] == "service-endpoint vaults"
    assert [f["rule"] for f in se["findings"]] == ["KV001", "KV101", "KV201", "KV002"]
    kv101 = se["findings"][1]
    assert kv101["severity"] == "high" and kv101["subject"] == "internet" and not kv101["suppressed"]
    assert kv101["remediation"].startswith("az keyvault update --name kv-se-demo")
    assert se["config"]["default_action"] == "Allow"
    assert se["config"]["publicly_open"] is True
    assert se["config"]["subnets"] == [scenario.SE_SUBNET.id.lower()]
    assert se["config"]["last_modified_by"] == "alice@contoso.example"

    pl = _vault(document, "kv-pl-demo")
    assert [f["rule"] for f in pl["findings"]] == ["KV008", "KV103", "KV004"]  # suppressed last
    assert pl["findings"][-1]["suppressed"] is True
    assert pl["findings"][-1]["suppression"] == {
        "reason": "backup service needs it",
        "owner": "platform-team",
        "expires": "2025-12-31",
    }
    (endpoint,) = pl["config"]["private_endpoints"]
    assert endpoint["status"] == "Approved" and endpoint["approved"] is True
    assert endpoint["private_endpoint_id"].endswith("/privateEndpoints/pe-kv-pl-demo")


def test_incomplete_evidence_is_flagged_per_vault_and_overall() -> None:
    document = _document(walkthrough_report())

    assert document["evidence_complete"] is False
    assert _vault(document, "kv-se-demo")["evidence"] == {"complete": True, "notes": []}
    pl = _vault(document, "kv-pl-demo")["evidence"]
    assert pl["complete"] is False
    assert any("evidence incomplete this scan" in note for note in pl["notes"])
    assert any("query timed out after 30 s" in note for note in pl["notes"])
    assert document["errors"][0]["source"] == "logs" and document["errors"][0]["code"] == "GatewayTimeout"


def test_complete_scan_without_errors() -> None:
    report = walkthrough_report(fixed=True)
    report.errors.clear()
    report.incomplete.clear()
    report.evidence = [e for e in report.evidence if e.complete]

    document = _document(report)

    assert document["evidence_complete"] is True
    assert all(v["evidence"]["complete"] for v in document["vaults"])
    assert _vault(document, "kv-pl-demo")["logs"] == []


def test_notification_errors_do_not_make_evidence_incomplete() -> None:
    report = walkthrough_report(fixed=True)
    report.incomplete.clear()
    report.evidence = [e for e in report.evidence if e.complete]
    report.errors = [dataclasses.replace(report.errors[0], source="notify", scope="teams")]

    assert _document(report)["evidence_complete"] is True


def test_errors_land_with_the_vault_they_name_in_recorded_order() -> None:
    report = walkthrough_report(fixed=True)
    (posture,) = [p for p in report.postures if p.name == "kv-se-demo"]
    report.errors = [
        ScanError("probe", posture.name.upper(), "first, by name"),
        ScanError("arm", "kv-pl-demo", "another vault's"),
        ScanError("arm", posture.id.upper(), "second, by resource id"),
        ScanError("logs", posture.name, "third, by name again"),
    ]

    notes = _vault(_document(report), "kv-se-demo")["evidence"]["notes"]

    assert notes == [
        "probe error: first, by name",
        "arm error: second, by resource id",
        "logs error: third, by name again",
    ]


def test_log_highlights() -> None:
    (logs,) = _vault(_document(walkthrough_report()), "kv-se-demo")["logs"]

    assert logs["complete"] is True
    assert logs["workspace_id"] == scenario.WALKTHROUGH_WORKSPACE
    assert (logs["requests"], logs["private_requests"], logs["public_admitted"], logs["public_refused"]) == (
        8,
        5,
        3,
        0,
    )
    assert logs["callers"] == 2
    assert [(c["address"], c["private"], c["outcome"], c["count"]) for c in logs["top_callers"]] == [
        ("127.10.1.4", True, "admitted", 5),
        (INTERNET_CLIENT, False, "admitted", 3),
    ]
    assert logs["top_callers"][0]["auth_type"] == "Subnet"


def test_vault_without_a_policy_has_no_expectations() -> None:
    document = _document(walkthrough_report(), policies={})

    for vault in document["vaults"]:
        assert vault["mode"] is None
        for cell in vault["reachability"].values():
            assert (cell["expected_reach"], cell["expected_dns"]) == (None, None)
            assert cell["state"] == "no-expectation" and cell["ok"] is False
    assert document["counts"]["mismatches"] == 0


def test_policies_keyed_by_resource_id_as_written() -> None:
    by_id = {scenario.SE_VAULT_ID: POLICIES[scenario.SE_VAULT_ID.lower()]}
    document = _document(walkthrough_report(), policies=by_id)
    assert _vault(document, "kv-se-demo")["mode"] == "service-endpoint"


def test_explicit_vantage_expectation_wins() -> None:
    policy = dataclasses.replace(
        POLICIES[scenario.SE_VAULT_ID.lower()], vantages={"internet": VantageExpectation(reach="admitted")}
    )
    document = _document(walkthrough_report(), policies={scenario.SE_VAULT_ID.lower(): policy})
    internet = _vault(document, "kv-se-demo")["reachability"]["internet"]
    assert (internet["expected_reach"], internet["state"], internet["ok"]) == ("admitted", "ok", True)


def test_probe_from_an_unconfigured_vantage_is_shown_without_expectations() -> None:
    report = walkthrough_report()
    report.probes.append(dataclasses.replace(report.probes[0], vantage="laptop"))

    document = _document(report)

    assert document["vantages"][-1] == {
        "name": "laptop",
        "inside": None,
        "subnet_id": None,
        "configured": False,
        "place": PLACE_NOT_STATED,
    }
    cell = _vault(document, "kv-se-demo")["reachability"]["laptop"]
    assert (cell["observed_reach"], cell["state"]) == ("admitted", "no-expectation")
    # The Private Link vault was not probed from there.
    missing = _vault(document, "kv-pl-demo")["reachability"]["laptop"]
    assert (missing["probed"], missing["observed_reach"], missing["observed_dns"]) == (
        False,
        "not-run",
        "none",
    )


def test_vault_gone_from_inventory_keeps_its_resolutions() -> None:
    report = walkthrough_report()
    gone = Finding(
        rule_id="KV001",
        severity=Severity.HIGH,
        title="Vault reachable from any public address",
        vault_id=f"/subscriptions/{scenario.WALKTHROUGH_SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-old",
        vault_name="kv-old",
    )
    report.changes.append(FindingChange(ChangeKind.RESOLVED, gone))

    document = _document(report)

    old = _vault(document, "kv-old")
    assert old["present"] is False and old["config"] is None and old["reachability"] == {}
    assert [(c["kind"], c["rule"]) for c in old["changes"]] == [("resolved", "KV001")]
    assert document["counts"]["vaults"] == 3


SE_VANTAGE = Vantage(name="se", inside=True, subnet_id=scenario.SE_SUBNET.id)
OUTSIDE = Vantage(name="outside", inside=False)


@pytest.mark.parametrize(
    ("vantage", "verdict", "state"),
    [
        (SE_VANTAGE, Verdict.ADMITTED, "ok"),
        (SE_VANTAGE, Verdict.REFUSED_FIREWALL, "mismatch"),
        # A workload that must reach its vault and cannot connect at all is a failure...
        (SE_VANTAGE, Verdict.UNREACHABLE, "mismatch"),
        (SE_VANTAGE, Verdict.ERROR, "unknown"),
        (OUTSIDE, Verdict.REFUSED_FIREWALL, "ok"),
        (OUTSIDE, Verdict.REFUSED_PUBLIC_DISABLED, "ok"),
        (OUTSIDE, Verdict.ADMITTED, "mismatch"),
        # ...while an outsider that cannot connect proves nothing about the firewall.
        (OUTSIDE, Verdict.UNREACHABLE, "unknown"),
        (OUTSIDE, Verdict.NOT_RUN, "unknown"),
    ],
)
def test_reach_judgement(vantage: Vantage, verdict: Verdict, state: str) -> None:
    posture = scenario.se_posture(fixed=True)
    probe = ProbeResult(
        vault_name=posture.name,
        vantage=vantage.name,
        hostname="kv-se-demo.vault.lab.test",
        started_at=scenario.STARTED,
        dns=DnsStep(query="kv-se-demo.vault.lab.test", addresses=("127.40.0.10",)),
        data_plane=DataPlaneStep(verdict=verdict),
    )
    report = ScanReport(scan_id="s", started_at=scenario.STARTED, postures=[posture], probes=[probe])
    policy = VaultPolicy(mode="service-endpoint", allowed_subnets=(scenario.SE_SUBNET.id.lower(),))

    document = build_report_document(
        report, vantages=[vantage], policies={posture.key: policy}, generated_at=scenario.GENERATED
    )

    cell = document["vaults"][0]["reachability"][vantage.name]
    assert cell["state"] == state
    assert cell["ok"] is (state == "ok")
    assert cell["observed_dns"] == "public" and cell["dns_state"] == "ok"


def test_service_endpoint_default_uses_the_vaults_own_subnets() -> None:
    """No allowed_subnets in the baseline: the vault's virtual network rules decide who is expected in."""
    report = walkthrough_report()
    document = _document(
        report, policies={scenario.SE_VAULT_ID.lower(): VaultPolicy(mode="service-endpoint")}
    )
    se = _vault(document, "kv-se-demo")["reachability"]
    assert se["se-subnet"]["expected_reach"] == "admitted"
    assert se["default-subnet"]["expected_reach"] == "refused"


def test_scan_still_running_has_no_finish_time() -> None:
    report = ScanReport(scan_id="s", started_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    document = build_report_document(report, vantages=(), policies={}, generated_at=scenario.GENERATED)
    assert (document["scan"]["finished_at"], document["scan"]["duration_s"]) == (None, None)
    assert document["vaults"] == [] and document["evidence_complete"] is True


def _with_perimeter(posture_of_pl: Any) -> dict[str, Any]:
    report = walkthrough_report()
    postures = [posture_of_pl(p) if p.name == "kv-pl-demo" else p for p in report.postures]
    return _vault(_document(dataclasses.replace(report, postures=postures)), "kv-pl-demo")["config"]


def test_open_to_the_public_is_the_effective_exposure_a_perimeter_decides() -> None:
    from tests.judge.test_perimeter import EVERYONE, NARROW, association, perimetered, unreadable

    reopened = _with_perimeter(
        lambda p: perimetered(
            dataclasses.replace(p, public_network_access="Disabled"), association("Learning", EVERYONE)
        )
    )
    assert (reopened["publicly_open"], reopened["firewall_open"]) == (True, False)
    assert reopened["perimeter"] | {"reason": None} == {
        "lookup": "associated",
        "perimeter": "nsp-lab",
        "profile": "defaultProfile",
        "access_mode": "Learning",
        "access_rules_version": reopened["perimeter"]["access_rules_version"],
        "effective_inbound": "rules",
        "reason": None,
        "error": None,
    }
    assert "re-open" in reopened["perimeter"]["reason"]

    closed = _with_perimeter(
        lambda p: perimetered(
            dataclasses.replace(p, public_network_access="Enabled", network_acls_present=False),
            association("Enforced", NARROW),
        )
    )
    assert (closed["publicly_open"], closed["firewall_open"]) == (False, True)

    unknown = _with_perimeter(lambda p: unreadable(p))
    assert unknown["publicly_open"] is None
    assert "AuthorizationFailed on nsp-lab" in unknown["perimeter"]["error"]


def test_the_page_shows_the_perimeter_and_an_exposure_it_cannot_know() -> None:
    from monitor.outputs.report import render_html
    from tests.judge.test_perimeter import unreadable

    report = walkthrough_report()
    postures = [unreadable(p) if p.name == "kv-pl-demo" else p for p in report.postures]
    html = render_html(_document(dataclasses.replace(report, postures=postures)))
    assert "(exposure unknown)" in html
    assert (
        "could not be read: the perimeter association could not be read: AuthorizationFailed on nsp-lab"
        in html
    )
