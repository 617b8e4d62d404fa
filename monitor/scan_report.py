"""A scan's outcome: every service's records, as one report.

The report sits above the service records (``monitor.model`` for what every stage shares and Key
Vault's, ``monitor.model_storage`` for storage accounts') because it holds them all; outputs,
notifications and the store read it. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from monitor.model import (
    EvidenceSource,
    Finding,
    FindingChange,
    LogEvidence,
    PerimeterLogEvidence,
    ProbeResult,
    ScanError,
    VaultPosture,
)
from monitor.model_storage import StorageAccountPosture


@dataclass
class ScanReport:
    scan_id: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    scope: tuple[str, ...] = ()  # subscription ids (or a single vault for a check)
    postures: list[VaultPosture] = field(default_factory=list)
    # The storage accounts in scope (``kvmon scan --service``): judged beside the vaults, by their
    # own rules, into the same findings.
    accounts: list[StorageAccountPosture] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    evidence: list[LogEvidence] = field(default_factory=list)
    perimeter_evidence: list[PerimeterLogEvidence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    changes: list[FindingChange] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # Vaults whose evidence fell short this scan, with the sources that did: findings that read
    # those sources may not resolve (``monitor.judge.coverage``).
    incomplete: dict[str, frozenset[EvidenceSource]] = field(default_factory=dict)

    # Sources no stage read this scan (probes or logs switched off or not configured): like an
    # incomplete source, for every vault, but nobody's evidence "fell short".
    skipped_sources: frozenset[EvidenceSource] = frozenset()
    # Subscriptions in scope of which no vault could be read (the token, ARM or the listing failed):
    # the scan says nothing of them, so it is incomplete (``kvmon scan`` exits 3).
    unread_subscriptions: tuple[str, ...] = ()
    # Subscriptions in scope whose vaults were listed completely (every page answered): a vault
    # missing from one of them is gone; the others were read in part or not at all.
    listed_subscriptions: tuple[str, ...] = ()

    @property
    def incomplete_vaults(self) -> set[str]:
        return set(self.incomplete)

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
