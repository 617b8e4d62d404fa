"""KV201-KV204: pure checks over evidence, then the whole path (emulator -> reader -> evaluate)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from lab.estate import INTERNET_CLIENT, Estate
from lab.http import Fault
from lab.loganalytics import LogAnalyticsEmulator
from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.judge.rules.keyvault.logs import RULES
from monitor.model import CallerActivity, EvidenceSource, Finding, LogEvidence, Outcome, Severity
from monitor.netaddr import parse_network
from monitor.sources.keyvault.normalise import normalise_vault
from monitor.sources.logs import LogsReader
from tests.logs.conftest import APP_ID, NOW, OBJECT_ID, SE_CLIENT, WINDOW, WORKSPACE, record

VAULT_ID = "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough/providers/Microsoft.KeyVault/vaults/kv-se-demo"
POSTURE = normalise_vault(
    {
        "id": VAULT_ID,
        "name": "kv-se-demo",
        "location": "westeurope",
        "properties": {"vaultUri": "https://kv-se-demo.vault.azure.net/", "tenantId": "t"},
    }
)
LOG_RULES = [RULES_BY_ID[rule_id] for rule_id in ("KV201", "KV202", "KV203", "KV204")]


def activity(
    caller: str = "203.0.113.7",
    *,
    outcome: Outcome = Outcome.ADMITTED,
    count: int = 1,
    private: bool = False,
    identity: str | None = APP_ID,
    object_id: str | None = OBJECT_ID,
    auth_type: str | None = None,
) -> CallerActivity:
    return CallerActivity(
        vault_id=VAULT_ID.lower(),
        caller_address=caller,
        address_private=private,
        address_auth_type=auth_type,
        subnet_id=None,
        outcome=outcome,
        identity=identity,
        count=count,
        first_seen=NOW - dt.timedelta(minutes=30),
        last_seen=NOW - dt.timedelta(minutes=5),
        identity_object_id=object_id,
    )


def evidence(*items: CallerActivity, complete: bool = True) -> LogEvidence:
    return LogEvidence(
        vault_id=VAULT_ID.lower(),
        workspace_id=WORKSPACE,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        activity=items,
        complete=complete,
        notes=() if complete else ("evidence incomplete: throttled",),
    )


def findings(
    found: LogEvidence | None, *, policy: VaultPolicy | None = None, threshold: int = 10
) -> list[Finding]:
    facts = VaultFacts(
        posture=POSTURE, policy=policy or VaultPolicy(), evidence=found, logs_refused_threshold=threshold
    )
    return evaluate([facts], today=NOW.date(), rules=LOG_RULES).findings


def by_rule(found: list[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in found:
        grouped.setdefault(finding.rule_id, []).append(finding)
    return grouped


def test_catalog_entries() -> None:
    assert [r.id for r in RULES] == ["KV201", "KV202", "KV203", "KV204", "KV205", "KV207"]
    assert {r.id: r.severity for r in RULES} == {
        "KV201": Severity.HIGH,
        "KV202": Severity.MEDIUM,
        "KV203": Severity.HIGH,
        "KV204": Severity.MEDIUM,
        "KV205": Severity.HIGH,
        "KV207": Severity.MEDIUM,
    }
    for rule in RULES:
        # The vault's audit log, or (KV205, KV207) the perimeter's.
        perimeter = rule.id in ("KV205", "KV207")
        assert rule.source is (EvidenceSource.PERIMETER_LOGS if perimeter else EvidenceSource.LOGS)
        assert rule.references and rule.rationale
        rule.remediation_for(POSTURE, "203.0.113.7")  # formats without a KeyError


def test_no_evidence_no_findings() -> None:
    assert findings(None) == []


def test_kv201_per_public_caller_with_counts() -> None:
    found = findings(
        evidence(
            activity("203.0.113.7", count=3),
            activity("203.0.113.7", count=2, identity="other-app"),
            activity("198.51.100.4", count=1),
            activity(SE_CLIENT, count=9, private=True, auth_type="Subnet"),
            activity("203.0.113.99", outcome=Outcome.REFUSED_FIREWALL, count=50),
            activity("", count=4),  # events without a caller address are never judged public
        )
    )
    kv201 = by_rule(found)["KV201"]
    assert [f.subject for f in kv201] == ["203.0.113.7", "198.51.100.4"]
    first = kv201[0]
    assert first.severity is Severity.HIGH
    assert first.evidence["requests"] == 5
    assert first.evidence["identities"] == [
        {"identity": APP_ID, "requests": 3},
        {"identity": "other-app", "requests": 2},
    ]
    assert first.evidence["top_public_callers"] == [
        {"caller_address": "203.0.113.7", "requests": 5},
        {"caller_address": "198.51.100.4", "requests": 1},
    ]
    assert first.evidence["window_start"] == "2025-03-14T11:00:00Z"
    assert "5 request(s) from public address 203.0.113.7 were admitted" in first.summary
    assert "203.0.113.7" in first.remediation


def test_kv201_respects_the_baseline() -> None:
    items = (
        activity("203.0.113.7"),
        activity("198.51.100.4"),
        activity("52.1.2.3", auth_type="TrustedService"),
    )
    allowed = VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),))
    assert [f.subject for f in by_rule(findings(evidence(*items), policy=allowed))["KV201"]] == [
        "198.51.100.4"
    ]
    assert "KV201" not in by_rule(findings(evidence(*items), policy=VaultPolicy(mode="public")))


def test_kv202_at_the_threshold_per_caller() -> None:
    found = by_rule(
        findings(
            evidence(
                activity("203.0.113.7", outcome=Outcome.REFUSED_FIREWALL, count=6),
                activity("203.0.113.7", outcome=Outcome.REFUSED_FIREWALL, count=4, identity=None),
                activity("198.51.100.4", outcome=Outcome.REFUSED_FIREWALL, count=9),
                activity(SE_CLIENT, outcome=Outcome.REFUSED_FIREWALL, count=12, private=True),
                activity("192.0.2.1", outcome=Outcome.REFUSED_OTHER, count=100),
            ),
            threshold=10,
        )
    )
    kv202 = {f.subject: f for f in found["KV202"]}
    assert set(kv202) == {"203.0.113.7", SE_CLIENT}
    assert (
        kv202["203.0.113.7"].evidence["requests"] == 10 and kv202["203.0.113.7"].evidence["threshold"] == 10
    )
    assert "private address" in kv202[SE_CLIENT].summary
    assert kv202[SE_CLIENT].severity is Severity.MEDIUM


def test_kv203_by_app_id_or_object_id() -> None:
    items = (
        activity("203.0.113.7", count=2),
        activity("203.0.113.8", outcome=Outcome.REFUSED_FIREWALL, count=1),
        activity(SE_CLIENT, count=40, private=True),
        activity("198.51.100.4", identity="someone-else", object_id="x"),
    )
    for named in (APP_ID, OBJECT_ID.upper()):
        (hit,) = by_rule(findings(evidence(*items), policy=VaultPolicy(private_path_identities=(named,))))[
            "KV203"
        ]
        assert hit.subject == named and hit.severity is Severity.HIGH
        assert hit.evidence["requests"] == 3
        assert hit.evidence["outcomes"] == {"admitted": 2, "refused-firewall": 1}
        assert [c["caller_address"] for c in hit.evidence["public_callers"]] == ["203.0.113.7", "203.0.113.8"]
    private_only = evidence(activity(SE_CLIENT, private=True))
    assert "KV203" not in by_rule(
        findings(private_only, policy=VaultPolicy(private_path_identities=(APP_ID,)))
    )


def test_kv204_only_on_complete_empty_evidence() -> None:
    (hit,) = by_rule(findings(evidence()))["KV204"]
    assert hit.severity is Severity.MEDIUM and WORKSPACE in hit.summary
    assert hit.evidence == {
        "workspace_id": WORKSPACE,
        "window_start": "2025-03-14T11:00:00Z",
        "window_end": "2025-03-14T12:00:00Z",
        "perimeter_governed": False,
    }
    assert "KV204" not in by_rule(findings(evidence(complete=False)))
    assert "KV204" not in by_rule(findings(evidence(activity("", outcome=Outcome.REFUSED_OTHER))))


def test_checks_are_pure_and_deterministic() -> None:
    found = evidence(
        activity("203.0.113.7"), activity("203.0.113.7", outcome=Outcome.REFUSED_FIREWALL, count=20)
    )
    assert findings(found) == findings(dataclasses.replace(found))


# -- the whole path -----------------------------------------------------------------------------


def scan_findings(reader: LogsReader, vault: dict[str, Any], policy: VaultPolicy) -> list[Finding]:
    result = reader.read_workspace(WORKSPACE, [vault["id"]], window_start=WINDOW[0], window_end=WINDOW[1])
    facts = VaultFacts(
        posture=normalise_vault(vault),
        policy=policy,
        evidence=result.evidence[vault["id"].lower()],
        logs_refused_threshold=3,
    )
    return evaluate([facts], today=NOW.date(), rules=LOG_RULES).findings


@pytest.mark.parametrize("table", ["AZKVAuditLogs", "AzureDiagnostics"])
def test_findings_from_the_emulated_workspace(
    make_reader: Callable[..., LogsReader],
    emulator: LogAnalyticsEmulator,
    estate: Estate,
    se_vault: dict[str, Any],
    table: str,
) -> None:
    emulator.set_tables(WORKSPACE, table)
    subnet = estate.subnet_named("serviceEndpoint").id
    estate.record(record(se_vault, caller=SE_CLIENT, auth_type="Subnet", subnet_id=subnet))
    estate.record(record(se_vault, caller=INTERNET_CLIENT, app_id="", object_id=OBJECT_ID))
    for _ in range(3):
        estate.record(record(se_vault, caller="127.30.0.66", status=403, authorized=False, app_id="intruder"))
    policy = VaultPolicy(mode="service-endpoint", private_path_identities=(OBJECT_ID,))

    found = by_rule(scan_findings(make_reader(), se_vault, policy))

    assert [f.subject for f in found["KV201"]] == [INTERNET_CLIENT]
    assert [f.subject for f in found["KV202"]] == ["127.30.0.66"]
    assert [f.subject for f in found["KV203"]] == [OBJECT_ID]
    assert "KV204" not in found


def test_kv204_from_an_empty_workspace_but_not_from_a_throttled_one(
    make_reader: Callable[..., LogsReader], emulator: LogAnalyticsEmulator, se_vault: dict[str, Any]
) -> None:
    reader = make_reader(retry_total=0)
    assert [f.rule_id for f in scan_findings(reader, se_vault, VaultPolicy())] == ["KV204"]
    emulator.server.inject(r"/query$", Fault(status=429, headers={"Retry-After": "1"}, times=0))
    assert scan_findings(reader, se_vault, VaultPolicy()) == []
