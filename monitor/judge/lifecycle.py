"""The finding lifecycle: this scan's findings against the stored ones.

``reconcile`` is pure. It decides which findings opened, reopened, changed or resolved, and
which records must be written: only those whose state or content changed, so an unchanged
estate rewrites nothing (``seen_vaults`` lets the store advance ``last_seen`` with one marker per
subscription instead). Rules it keeps:

- a finding resolves only when its vault was assessed in a *complete* scan and the finding was
  not seen; incomplete evidence (a timeout, partial logs) never resolves anything;
- a resolved finding seen again reopens (``occurrences`` + 1), keeping ``first_seen``;
- a finding that claims an exposure (``Exposure.CLAIMED``: KV001 says the vault is open to every
  address) is confirmed when a finding that proves one (``Exposure.PROVEN``: KV101, admitted from a
  vantage point that should be refused) is open on the same vault in the same scan: recorded once
  per open period (``confirmed_at``, ``confirmed_by``) and told once, as ``confirmed`` or on the
  change that opens it; the event path's probe follow-up is where this happens;
- "changed" means the severity changed; a new summary or evidence (a caller's count grows, a
  probe's timing differs) is stored without telling anyone;
- suppressed findings are recorded with status suppressed (reason and expiry in the record) and
  never announced; one whose suppression lapsed is announced as opened.

``monitor.store.reconcile.apply_reconciliation`` runs it against the store, with optimistic
concurrency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from monitor.judge.rules.base import Exposure
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import ChangeKind, EvidenceSource, Finding, FindingChange, FindingRecord, FindingStatus

_ACTIVE = (FindingStatus.OPEN, FindingStatus.SUPPRESSED)

# A finding whose evidence only moved (a caller's count grew, the logs window slid) is rewritten
# at most this often: writes stay proportional to change, and stored evidence is at most this old.
EVIDENCE_REFRESH = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Reconciliation:
    records: tuple[FindingRecord, ...]  # to write; each carries the etag of the version read
    changes: tuple[FindingChange, ...]
    # Vaults whose every open or suppressed finding was seen now: their last_seen advances by marker.
    seen_vaults: frozenset[str]


def reconcile(
    *,
    previous: Mapping[str, FindingRecord],
    current: Sequence[Finding],
    assessed_vaults: AbstractSet[str],
    complete_vaults: AbstractSet[str],
    now: dt.datetime,
    incomplete_sources: Mapping[str, AbstractSet[EvidenceSource]] | None = None,
) -> Reconciliation:
    """``previous`` must hold every stored record of the assessed vaults and of the vaults that
    ``current`` names (finding id -> record); vault keys are resource ids, compared case-folded.
    ``current`` comes in the form the store gives findings back (the store's side prepares it), or
    a finding whose evidence the store trims would look changed on every scan.

    An unseen finding resolves when its vault is in ``complete_vaults`` and the source its rule
    reads (``Rule.source``) is not among the vault's ``incomplete_sources``; configuration there
    holds back every finding of the vault."""
    assessed = {key.lower() for key in assessed_vaults}
    complete = {key.lower() for key in complete_vaults} & assessed
    missing = {key.lower(): frozenset(sources) for key, sources in (incomplete_sources or {}).items()}
    seen = _dedupe(current)
    proofs = _proofs(seen.values())
    records: list[FindingRecord] = []
    changes: list[FindingChange] = []
    written: set[str] = set()

    for finding_id, finding in seen.items():
        proof = proofs.get(finding.vault_id.lower()) if _exposure(finding) is Exposure.CLAIMED else None
        record, change = _observe(previous.get(finding_id), finding, now, proof=proof)
        if record is not None:
            records.append(record)
            written.add(finding_id)
        if change is not None:
            changes.append(change)

    lagging: set[str] = set()  # vaults with an active finding neither seen nor resolved
    for finding_id, prior in previous.items():
        if finding_id in seen or prior.status not in _ACTIVE:
            continue
        vault = prior.finding.vault_id.lower()
        if vault in complete and _evidence_answered(prior.finding, missing.get(vault, frozenset())):
            records.append(replace(prior, status=FindingStatus.RESOLVED, resolved_at=now, last_changed=now))
            written.add(finding_id)
            if prior.status == FindingStatus.OPEN:
                changes.append(FindingChange(kind=ChangeKind.RESOLVED, finding=prior.finding))
        else:
            lagging.add(vault)

    # A lagging vault's marker must not move (it would claim the unseen finding was seen), so its
    # seen findings carry their own last_seen this time.
    for finding_id, finding in seen.items():
        unchanged = previous.get(finding_id)
        if finding_id not in written and unchanged is not None and finding.vault_id.lower() in lagging:
            records.append(replace(unchanged, last_seen=now))

    vaults = assessed | {finding.vault_id.lower() for finding in seen.values()}
    return Reconciliation(
        records=tuple(records),
        changes=tuple(sorted(changes, key=change_order)),
        seen_vaults=frozenset(vaults - lagging),
    )


def _evidence_answered(finding: Finding, missing: AbstractSet[EvidenceSource]) -> bool:
    if EvidenceSource.CONFIGURATION in missing:
        return False
    rule = RULES_BY_ID.get(finding.rule_id)
    # A rule no longer in the catalog read the configuration, as most do.
    return (rule.source if rule is not None else EvidenceSource.CONFIGURATION) not in missing


def _observe(
    prior: FindingRecord | None, finding: Finding, now: dt.datetime, *, proof: str | None
) -> tuple[FindingRecord | None, FindingChange | None]:
    """The record to write (None: unchanged) and the change to announce for one seen finding.
    ``proof``: the finding that proves this one's claimed exposure in this scan, if any."""
    status = FindingStatus.SUPPRESSED if finding.suppressed else FindingStatus.OPEN
    announce = status == FindingStatus.OPEN
    confirmed_at = now if proof is not None else None
    if prior is None:
        record = FindingRecord(
            finding=finding,
            status=status,
            first_seen=now,
            last_seen=now,
            last_changed=now,
            evidence_at=now,
            confirmed_at=confirmed_at,
            confirmed_by=proof,
        )
        opened = FindingChange(kind=ChangeKind.OPENED, finding=finding, confirmed_by=proof)
        return record, opened if announce else None
    if prior.status == FindingStatus.RESOLVED:
        record = replace(
            prior,
            finding=finding,
            status=status,
            last_seen=now,
            last_changed=now,
            occurrences=prior.occurrences + 1,
            resolved_at=None,
            evidence_at=now,
            confirmed_at=confirmed_at,  # a new open period: what proved the last one proves nothing
            confirmed_by=proof,
        )
        reopened = FindingChange(kind=ChangeKind.REOPENED, finding=finding, confirmed_by=proof)
        return record, reopened if announce else None
    # Only a new severity, or a first proof, is news. Evidence moves on every scan (a caller's count
    # grows, a probe's timing differs): it is stored, but announcing it would flood the channels.
    notable = prior.finding.severity != finding.severity
    status_changed = prior.status != status
    confirming = proof is not None and prior.confirmed_at is None
    if not confirming and not status_changed and prior.finding == finding:
        return None, None
    if not confirming and not status_changed and not notable and _only_evidence_moved(prior, finding, now):
        return None, None  # the vault's last-seen marker says it was seen
    record = replace(
        prior,
        finding=finding,
        status=status,
        last_seen=now,
        last_changed=now if notable or status_changed or confirming else prior.last_changed,
        evidence_at=now,
        confirmed_at=now if confirming else prior.confirmed_at,
        confirmed_by=proof if confirming else prior.confirmed_by,
    )
    if not announce:
        return record, None
    told_proof = proof if confirming else None
    if status_changed:  # its suppression lapsed or was removed: news to whoever watches
        return record, FindingChange(kind=ChangeKind.OPENED, finding=finding, confirmed_by=told_proof)
    if notable:
        return record, FindingChange(
            kind=ChangeKind.CHANGED,
            finding=finding,
            previous_severity=prior.finding.severity,
            confirmed_by=told_proof,
        )
    if confirming:
        return record, FindingChange(kind=ChangeKind.CONFIRMED, finding=finding, confirmed_by=proof)
    return record, None


def _proofs(findings: Iterable[Finding]) -> dict[str, str]:
    """Per vault key, the open finding of an ``Exposure.PROVEN`` rule that proves the vault's
    claimed exposures, as ``FindingRecord.confirmed_by`` names it: one from a vantage point outside
    the VNet first (the internet got in), then the most severe, then by id."""
    proven = sorted(
        (f for f in findings if not f.suppressed and _exposure(f) is Exposure.PROVEN),
        key=lambda f: (f.evidence.get("vantage_inside") is not False, -f.severity.rank, f.id),
    )
    proofs: dict[str, str] = {}
    for finding in proven:
        subject = f" [{finding.subject}]" if finding.subject else ""
        proofs.setdefault(finding.vault_id.lower(), f"{finding.rule_id}{subject}: {finding.summary}")
    return proofs


def _exposure(finding: Finding) -> Exposure:
    rule = RULES_BY_ID.get(finding.rule_id)
    return rule.exposure if rule is not None else Exposure.NONE


def _only_evidence_moved(prior: FindingRecord, finding: Finding, now: dt.datetime) -> bool:
    """The same finding but for its evidence and summary (a count grew, a window moved), and its
    stored evidence is fresher than ``EVIDENCE_REFRESH``: not worth a write on every scan."""
    same_otherwise = replace(prior.finding, evidence=finding.evidence, summary=finding.summary) == finding
    written = prior.evidence_at or prior.last_changed
    return same_otherwise and now - written < EVIDENCE_REFRESH


def _dedupe(findings: Iterable[Finding]) -> dict[str, Finding]:
    """One finding per id (the most severe, first on ties)."""
    chosen: dict[str, Finding] = {}
    for finding in findings:
        kept = chosen.get(finding.id)
        if kept is None or finding.severity.rank > kept.severity.rank:
            chosen[finding.id] = finding
    return chosen


def change_order(change: FindingChange) -> tuple[str, str, str, str]:
    """The order changes are announced in: by vault, rule, subject, kind."""
    finding = change.finding
    return (finding.vault_id.lower(), finding.rule_id, finding.subject.lower(), change.kind.value)
