"""The pure lifecycle: open, persist, change, resolve, reopen, suppressed, incomplete evidence."""

from __future__ import annotations

import datetime as dt

from monitor.model import ChangeKind, EvidenceSource, FindingRecord, FindingStatus, Severity, Suppression
from tests.store.helpers import T0, finding

LATER = T0 + dt.timedelta(minutes=15)
APP = finding("kv-app").vault_id.lower()
DATA = finding("kv-data").vault_id.lower()
SUPPRESSION = Suppression(
    rule="KV001", vault_pattern="kv-app", reason="pilot", owner="sec", expires=dt.date(2026, 12, 31)
)


def stored(f, *, status=FindingStatus.OPEN, at=T0, **changes) -> FindingRecord:
    return FindingRecord(
        finding=f,
        status=status,
        first_seen=at,
        last_seen=at,
        last_changed=at,
        etag="e1",
        **changes,
    )


def run(previous, current, *, assessed=(APP, DATA), complete=(APP, DATA), now=LATER, missing=None):
    from monitor.judge.lifecycle import reconcile

    return reconcile(
        previous={r.id: r for r in previous},
        current=current,
        assessed_vaults=set(assessed),
        complete_vaults=set(complete),
        now=now,
        incomplete_sources=missing,
    )


def test_a_source_that_fell_short_holds_back_only_the_findings_that_read_it() -> None:
    config = stored(finding(rule="KV001"))
    probe = stored(finding(rule="KV101", subject="internet"))
    logs = stored(finding(rule="KV201", subject="198.51.100.7"))

    probes_down = run([config, probe, logs], [], missing={APP: {EvidenceSource.PROBES}})
    assert {c.finding.rule_id for c in probes_down.changes} == {"KV001", "KV201"}

    unreadable = run([config, probe, logs], [], missing={APP: {EvidenceSource.CONFIGURATION}})
    assert unreadable.changes == ()


def test_a_new_finding_opens() -> None:
    result = run([], [finding()])
    (record,) = result.records
    assert (record.status, record.first_seen, record.last_seen, record.occurrences, record.etag) == (
        FindingStatus.OPEN,
        LATER,
        LATER,
        1,
        None,
    )
    assert [(c.kind, c.finding.id) for c in result.changes] == [(ChangeKind.OPENED, finding().id)]


def test_a_persisting_finding_writes_nothing_and_its_vault_is_marked_seen() -> None:
    result = run([stored(finding())], [finding()])
    assert result.records == () and result.changes == ()
    assert result.seen_vaults == {APP, DATA}


def test_severity_change_is_announced_evidence_and_summary_are_not() -> None:
    before = stored(finding(severity=Severity.MEDIUM))
    severity = run([before], [finding(severity=Severity.HIGH)])
    assert [(c.kind, c.previous_severity) for c in severity.changes] == [
        (ChangeKind.CHANGED, Severity.MEDIUM)
    ]
    assert severity.records[0].last_changed == LATER and severity.records[0].etag == "e1"
    assert severity.records[0].evidence_at == LATER


def test_evidence_that_only_moved_is_rewritten_now_and_then_not_every_scan() -> None:
    from monitor.judge.lifecycle import EVIDENCE_REFRESH

    # A log finding's summary and evidence move with every request counted.
    prior = stored(finding(summary="3 requests", evidence={"count": 3}), evidence_at=T0)
    moved = finding(summary="5 requests", evidence={"count": 5})

    soon = run([prior], [moved])
    assert soon.changes == () and soon.records == ()  # the vault's marker records it was seen
    assert APP in soon.seen_vaults

    later = T0 + EVIDENCE_REFRESH
    refreshed = run([prior], [moved], now=later)
    assert refreshed.changes == ()
    (record,) = refreshed.records
    assert (record.finding.summary, record.finding.evidence["count"]) == ("5 requests", 5)
    assert (record.evidence_at, record.last_seen, record.last_changed) == (later, later, T0)

    # Anything else that differs (here a suppression) is written at once.
    other = run([prior], [finding(summary="3 requests", evidence={"count": 3}, suppression=SUPPRESSION)])
    assert len(other.records) == 1 and other.records[0].status == FindingStatus.SUPPRESSED


def test_not_seen_in_a_complete_scan_resolves() -> None:
    result = run([stored(finding())], [])
    (record,) = result.records
    assert (record.status, record.resolved_at, record.last_seen) == (FindingStatus.RESOLVED, LATER, T0)
    assert [c.kind for c in result.changes] == [ChangeKind.RESOLVED]


def test_incomplete_evidence_never_resolves_and_holds_the_vault_marker() -> None:
    gone_from_logs = stored(finding(rule="KV201", subject="198.51.100.7"))
    still_there = stored(finding(rule="KV001"))
    result = run([gone_from_logs, still_there], [finding(rule="KV001")], complete={DATA})

    assert result.changes == ()
    assert APP not in result.seen_vaults  # the unseen KV201 keeps its last_seen
    # The seen KV001 of that vault gets its own last_seen, since the marker does not move.
    assert [(r.id, r.status, r.last_seen) for r in result.records] == [
        (still_there.id, FindingStatus.OPEN, LATER)
    ]


def test_a_vault_not_assessed_resolves_nothing() -> None:
    result = run([stored(finding())], [], assessed={DATA}, complete={DATA})
    assert result.records == () and result.changes == ()


def test_a_resolved_finding_seen_again_reopens() -> None:
    resolved = stored(finding(), status=FindingStatus.RESOLVED, resolved_at=T0, occurrences=1)
    result = run([resolved], [finding()])
    (record,) = result.records
    assert (record.status, record.first_seen, record.occurrences, record.resolved_at) == (
        FindingStatus.OPEN,
        T0,
        2,
        None,
    )
    assert [c.kind for c in result.changes] == [ChangeKind.REOPENED]


def test_suppressed_findings_are_recorded_not_announced() -> None:
    quiet = finding(suppression=SUPPRESSION)
    opened = run([], [quiet])
    assert opened.changes == ()
    assert opened.records[0].status == FindingStatus.SUPPRESSED
    assert opened.records[0].finding.suppression == SUPPRESSION

    resolved = run([stored(quiet, status=FindingStatus.SUPPRESSED)], [])
    assert resolved.records[0].status == FindingStatus.RESOLVED and resolved.changes == ()

    lapsed = run([stored(quiet, status=FindingStatus.SUPPRESSED)], [finding()])
    assert lapsed.records[0].status == FindingStatus.OPEN
    assert [c.kind for c in lapsed.changes] == [ChangeKind.OPENED]


def test_duplicate_findings_in_one_scan_become_one_record() -> None:
    result = run([], [finding(severity=Severity.LOW), finding(severity=Severity.CRITICAL)])
    assert len(result.records) == 1 and result.records[0].finding.severity == Severity.CRITICAL


# -- confirmation: a probe's proof of a claimed exposure -------------------------------------------

CLAIM = finding(rule="KV001")  # Exposure.CLAIMED: open to every address, says the configuration
PROOF = finding(
    rule="KV101", subject="internet", severity=Severity.CRITICAL, summary="admitted from internet"
)


def test_a_proof_in_a_later_scan_confirms_the_open_claim_once() -> None:
    first = run([stored(CLAIM)], [CLAIM, PROOF])
    assert [(c.kind, c.finding.rule_id, c.confirmed_by) for c in first.changes] == [
        (ChangeKind.CONFIRMED, "KV001", "KV101 [internet]: admitted from internet"),
        (ChangeKind.OPENED, "KV101", None),
    ]
    claim = next(r for r in first.records if r.finding.rule_id == "KV001")
    assert (claim.confirmed_at, claim.confirmed_by, claim.last_changed) == (
        LATER,
        "KV101 [internet]: admitted from internet",
        LATER,
    )

    # The follow-up delivered again, or the next scan: confirmed already, nothing to tell.
    again = run([claim, stored(PROOF, at=LATER)], [CLAIM, PROOF], now=LATER + dt.timedelta(minutes=1))
    assert again.changes == () and again.records == ()


def test_a_claim_and_its_proof_in_one_scan_open_once_with_the_proof() -> None:
    result = run([], [CLAIM, PROOF])
    assert [(c.kind, c.finding.rule_id, c.confirmed_by) for c in result.changes] == [
        (ChangeKind.OPENED, "KV001", "KV101 [internet]: admitted from internet"),
        (ChangeKind.OPENED, "KV101", None),
    ]
    assert next(r for r in result.records if r.finding.rule_id == "KV001").confirmed_at == LATER


def test_a_proof_confirms_only_claims_of_its_own_vault() -> None:
    other_vault_claim = finding("kv-data", rule="KV001")
    not_a_claim = finding(rule="KV013", severity=Severity.INFO)  # Exposure.NONE
    result = run([stored(other_vault_claim), stored(not_a_claim)], [other_vault_claim, not_a_claim, PROOF])
    assert [(c.kind, c.finding.rule_id) for c in result.changes] == [(ChangeKind.OPENED, "KV101")]


def test_a_suppressed_proof_confirms_nothing_and_a_suppressed_claim_is_confirmed_silently() -> None:
    quiet_proof = finding(rule="KV101", subject="internet", suppression=SUPPRESSION)
    assert run([stored(CLAIM)], [CLAIM, quiet_proof]).changes == ()

    quiet_claim = finding(rule="KV001", suppression=SUPPRESSION)
    result = run([stored(quiet_claim, status=FindingStatus.SUPPRESSED), stored(PROOF)], [quiet_claim, PROOF])
    assert result.changes == ()
    (record,) = result.records
    assert record.confirmed_at == LATER


def test_a_reopened_claim_starts_unconfirmed_without_a_proof() -> None:
    confirmed = stored(
        CLAIM,
        status=FindingStatus.RESOLVED,
        resolved_at=T0,
        confirmed_at=T0,
        confirmed_by="KV101 [internet]: old",
    )
    result = run([confirmed], [CLAIM])
    (record,) = result.records
    assert (record.status, record.confirmed_at, record.confirmed_by) == (FindingStatus.OPEN, None, None)
    assert [(c.kind, c.confirmed_by) for c in result.changes] == [(ChangeKind.REOPENED, None)]
