"""ST201-ST204: pure checks over storage log evidence, then the whole path (the lab's Log Analytics
-> the reader -> evaluate)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from lab.loganalytics import LogAnalyticsEmulator
from monitor.config.policy import VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.judge.rules.storage.logs import RULES
from monitor.model import EvidenceSource, Finding, Outcome, Severity
from monitor.model_storage import StorageLogEvidence, StorageRequestActivity
from monitor.netaddr import parse_network
from monitor.sources.logs import LogsReader
from tests.judge.test_perimeter import association
from tests.logs.conftest import APP_ID, NOW, OBJECT_ID, WINDOW, WORKSPACE
from tests.logs.test_storage_reader import request
from tests.storage.test_rules import ACCOUNT_ID, account, closed, in_perimeter
from tests.storage.test_rules import firewalled as firewalled_account

LOG_RULES = [RULES_BY_ID[rule_id] for rule_id in ("ST201", "ST202", "ST203", "ST204")]
POSTURE = firewalled_account()


def activity(
    caller: str = "203.0.113.7",
    *,
    outcome: Outcome = Outcome.ADMITTED,
    count: int = 1,
    private: bool = False,
    identity: str | None = APP_ID,
    object_id: str | None = OBJECT_ID,
    text: str = "Success",
    table: str = "StorageBlobLogs",
) -> StorageRequestActivity:
    return StorageRequestActivity(
        account_id=ACCOUNT_ID.lower(),
        source_table=table,
        caller_address=caller,
        address_private=private,
        outcome=outcome,
        status_code="403" if outcome is Outcome.REFUSED_FIREWALL else "200",
        status_text="AuthorizationFailure" if outcome is Outcome.REFUSED_FIREWALL else text,
        authentication_type="OAuth",
        identity=identity,
        identity_object_id=object_id,
        tls_version="TLS 1.2",
        count=count,
        first_seen=NOW - dt.timedelta(minutes=30),
        last_seen=NOW - dt.timedelta(minutes=5),
    )


def evidence(*items: StorageRequestActivity, complete: bool = True) -> StorageLogEvidence:
    return StorageLogEvidence(
        account_id=ACCOUNT_ID.lower(),
        workspace_id=WORKSPACE,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        activity=items,
        complete=complete,
        notes=() if complete else ("evidence incomplete: throttled",),
    )


def logged(
    found: StorageLogEvidence | None, policy: VaultPolicy | None = None, **facts: object
) -> StorageFacts:
    return StorageFacts(
        posture=facts.pop("posture", POSTURE),  # type: ignore[arg-type]
        policy=policy or VaultPolicy(),
        evidence=found,
        logs_refused_threshold=int(facts.pop("threshold", 10)),  # type: ignore[call-overload]
    )


def findings(facts: StorageFacts) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in evaluate([facts], today=NOW.date(), rules=LOG_RULES).findings:
        grouped.setdefault(finding.rule_id, []).append(finding)
    return grouped


def test_catalog_entries() -> None:
    assert [r.id for r in RULES] == ["ST201", "ST202", "ST203", "ST204"]
    assert {r.id: r.severity for r in RULES} == {
        "ST201": Severity.HIGH,
        "ST202": Severity.MEDIUM,
        "ST203": Severity.HIGH,
        "ST204": Severity.MEDIUM,
    }
    for rule in RULES:
        assert rule.source is EvidenceSource.LOGS
        assert rule.references and rule.rationale
        rule.remediation_for(POSTURE, "203.0.113.7")  # formats without a KeyError
    # What is not documented is said where the refusal is judged.
    assert "not documented" in RULES_BY_ID["ST202"].rationale


def test_no_evidence_no_findings() -> None:
    assert findings(logged(None)) == {}


def test_st201_per_public_caller_with_its_tables_and_the_baseline() -> None:
    found = evidence(
        activity("203.0.113.7", count=3),
        activity("203.0.113.7", table="StorageQueueLogs"),
        activity("203.0.113.7", text="AuthorizationPermissionMismatch"),  # admitted by the network
        activity("198.51.100.9", outcome=Outcome.REFUSED_FIREWALL, count=2),
        activity("10.1.1.4", private=True),
        activity(""),  # no address: never public
    )
    (hit,) = findings(logged(found))["ST201"]
    assert hit.subject == "203.0.113.7" and hit.evidence["requests"] == 5
    assert hit.evidence["tables"] == ["StorageBlobLogs", "StorageQueueLogs"]
    assert hit.evidence["authentication_types"] == ["OAuth"]
    allowed = VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),))
    assert "ST201" not in findings(logged(found, allowed))
    assert "ST201" not in findings(logged(found, VaultPolicy(mode="public")))


def test_st202_at_the_threshold_per_caller_names_the_status_texts() -> None:
    found = evidence(
        activity("198.51.100.9", outcome=Outcome.REFUSED_FIREWALL, count=6),
        activity("198.51.100.9", outcome=Outcome.REFUSED_FIREWALL, count=4, table="StorageFileLogs"),
        activity("198.51.100.10", outcome=Outcome.REFUSED_FIREWALL, count=9),
        activity("198.51.100.11", outcome=Outcome.REFUSED_OTHER, count=50),  # not the network's refusal
    )
    (hit,) = findings(logged(found))["ST202"]
    assert hit.subject == "198.51.100.9" and hit.evidence["requests"] == 10
    assert hit.evidence["status_texts"] == {"AuthorizationFailure": 10}
    assert "ST202" not in findings(logged(found, threshold=11))


def test_st203_by_app_id_or_object_id_from_public_addresses_only() -> None:
    found = evidence(activity("203.0.113.7", count=2), activity("10.1.1.4", private=True))
    for wanted in (APP_ID, OBJECT_ID.upper()):
        (hit,) = findings(logged(found, VaultPolicy(private_path_identities=(wanted,))))["ST203"]
        assert hit.evidence["requests"] == 2 and hit.evidence["tables"] == ["StorageBlobLogs"]
    private_only = evidence(activity("10.1.1.4", private=True))
    assert "ST203" not in findings(logged(private_only, VaultPolicy(private_path_identities=(APP_ID,))))
    by_key = evidence(activity("203.0.113.7", identity=None, object_id=None))  # account key: no identity
    assert "ST203" not in findings(logged(by_key, VaultPolicy(private_path_identities=(APP_ID,))))


def test_st204_only_on_complete_empty_evidence_and_says_so_under_a_perimeter() -> None:
    (hit,) = findings(logged(evidence()))["ST204"]
    assert "StorageBlobLogs, StorageFileLogs" in hit.summary and hit.evidence["perimeter_governed"] is False
    assert "ST204" not in findings(logged(evidence(complete=False)))
    assert "ST204" not in findings(logged(evidence(activity())))
    governed = in_perimeter(closed(), association("Enforced"))
    (hit,) = findings(logged(evidence(), posture=governed))["ST204"]
    assert hit.evidence["perimeter_governed"] is True and "outside it" in hit.summary


def test_end_to_end_rows_the_lab_writes_become_findings(
    make_reader: Callable[..., LogsReader], emulator: LogAnalyticsEmulator
) -> None:
    """A public caller admitted, one refused eleven times, and the identity the baseline routes
    privately arriving publicly: through the real client, the reader and the catalog."""
    emulator.record_storage_request(WORKSPACE, request(ACCOUNT_ID, caller="203.0.113.7:50100"))
    for _ in range(11):
        emulator.record_storage_request(
            WORKSPACE,
            request(ACCOUNT_ID, caller="198.51.100.9:443", status="403", text="AuthorizationFailure"),
        )
    result = make_reader().read_storage_workspace(
        WORKSPACE, [ACCOUNT_ID], window_start=WINDOW[0], window_end=WINDOW[1]
    )
    assert result.errors == []
    facts = logged(
        result.evidence[ACCOUNT_ID.lower()], VaultPolicy(private_path_identities=(APP_ID,)), posture=account()
    )
    found = findings(facts)
    assert [h.subject for h in found["ST201"]] == ["203.0.113.7"]
    assert [h.subject for h in found["ST202"]] == ["198.51.100.9"]
    assert [h.subject for h in found["ST203"]] == [APP_ID]
    assert "ST204" not in found
