"""``run_scan``: the one place that wires kvmon's stages together.

inventory -> probes -> logs -> evaluate -> drift + lifecycle -> store -> notify.

The CLI and the Functions app build a ``ScanRuntime`` (``monitor.app.runtime``) and call
``run_scan``; nothing else calls one stage after another. Stages are adapters behind small
protocols, so tests can drive this with the lab's real services and the real SDK clients.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from monitor.app.collector import scan_collector
from monitor.config.policy import Vantage, VaultPolicy
from monitor.judge.drift import disappeared_vault_findings
from monitor.judge.evaluate import ExpiredSuppression, evaluate
from monitor.judge.lifecycle import apply_reconciliation
from monitor.judge.rules.base import VaultFacts
from monitor.model import (
    LogEvidence,
    ProbeResult,
    ScanError,
    ScanReport,
    VaultPosture,
    Verdict,
)
from monitor.netaddr import AddressSpace
from monitor.outputs.report import build_report_document
from monitor.sources.inventory import InventorySource
from monitor.sources.logs import LogsReadResult, logs_window
from monitor.store.base import PostureSnapshot, ScanRun, Store


class ProbeRunner(Protocol):
    """Probes vault names from one vantage point (locally or through a remote endpoint)."""

    def __call__(self, names: Sequence[str], vantage: Vantage) -> list[ProbeResult]: ...


class EvidenceSource(Protocol):
    def read_workspace(
        self,
        workspace_id: str,
        vault_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> LogsReadResult: ...


class Notifier(Protocol):
    def notify(self, report: ScanReport, *, now: dt.datetime) -> list[ScanError]: ...


@dataclass(frozen=True)
class ScanRequest:
    subscriptions: tuple[str, ...]
    vault_name: str | None = None  # an on-demand check of one vault
    probe: bool = True
    logs: bool = True
    notify: bool = True
    trigger: str = "cli"  # cli | timer | queue | http


@dataclass
class ScanRuntime:
    """The adapters and knobs a scan runs with; built from settings by ``monitor.app.runtime``."""

    inventory: InventorySource
    policy_for: Callable[[VaultPosture], VaultPolicy]
    vantages: tuple[Vantage, ...] = ()
    prober: ProbeRunner | None = None
    evidence: EvidenceSource | None = None
    workspaces: tuple[str, ...] = ()
    store: Store | None = None
    notifier: Notifier | None = None
    address_space: AddressSpace = field(default_factory=AddressSpace)
    refused_threshold: int = 10
    scan_interval: dt.timedelta = dt.timedelta(minutes=15)
    logs_first_window: dt.timedelta = dt.timedelta(hours=24)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


@dataclass
class ScanOutcome:
    report: ScanReport
    expired_suppressions: list[ExpiredSuppression]
    policies: Mapping[str, VaultPolicy]


def run_scan(
    request: ScanRequest, runtime: ScanRuntime, *, progress: Callable[[str], None] | None = None
) -> ScanOutcome:
    """Scan the requested scope. Faults of the outside world land in ``report.errors``; a store
    that cannot be written raises ``StoreUnavailable`` (the scan must fail loudly).
    ``progress`` hears each stage as it starts (a terminal shows it)."""
    with scan_collector():
        return _scan(request, runtime, progress or (lambda stage: None))


def _scan(request: ScanRequest, runtime: ScanRuntime, tell: Callable[[str], None]) -> ScanOutcome:
    started = runtime.clock()
    report = ScanReport(scan_id=_scan_id(started), started_at=started, scope=request.subscriptions)

    # 1. What is configured.
    tell("reading vault configuration from ARM")
    if request.vault_name is not None:
        inventory = runtime.inventory.find_vault(request.vault_name, request.subscriptions)
    else:
        inventory = runtime.inventory.list_vaults(request.subscriptions)
    report.postures = list(inventory.postures)
    report.errors.extend(inventory.errors)
    # Fields ARM returned that could not be read were judged on Azure's defaults: the report says
    # so, vault by vault, as the offline evaluator does.
    report.errors.extend(
        ScanError("arm", posture.id, problem) for posture in report.postures for problem in posture.problems
    )
    policies = {posture.key: runtime.policy_for(posture) for posture in report.postures}

    # 2. What actually happens, from every vantage point at once.
    probed = request.probe and runtime.prober is not None and bool(runtime.vantages)
    if probed and report.postures:
        tell(f"probing {len(report.postures)} vault(s) from {len(runtime.vantages)} vantage point(s)")
        report.probes = _probe_all(runtime, [p.name for p in report.postures])
    # A probe that ended in an error or reached nothing (the vantage point did not answer, DNS or
    # TCP timed out, TLS failed, the connection dropped) proved nothing about what the vault admits:
    # what was seen from there before may not resolve (KV102 and KV106 still report the failure).
    inconclusive = (Verdict.ERROR, Verdict.UNREACHABLE)
    blind = {r.vault_name.lower() for r in report.probes if r.verdict in inconclusive}
    if not probed:
        report.skipped_sources.add("probes")
    for posture in report.postures:
        if posture.name.lower() in blind:
            report.mark_incomplete(posture.key, "probes")

    # 3. What has happened: one query per workspace for all its vaults.
    evidence: dict[str, LogEvidence] = {}
    logs_until: dt.datetime | None = None
    if request.logs and runtime.evidence is not None and runtime.workspaces:
        if report.postures:
            tell(f"reading access logs from {len(runtime.workspaces)} workspace(s)")
            evidence, logs_until = _read_logs(runtime, report, request.subscriptions)
    else:
        report.skipped_sources.add("logs")
    report.evidence = list(evidence.values())
    for key, found in evidence.items():
        if not found.complete:
            report.mark_incomplete(key, "logs")
            logs_until = None  # the next scan reads this window again

    # 4. Judge, against the stored past.
    tell("evaluating")
    # What the store knows of these subscriptions: one partition read each. A subscription with no
    # stored vault is scanned for the first time, so its vaults did not "appear" (KV302).
    stored = runtime.store.load_postures(subscriptions=request.subscriptions) if runtime.store else {}
    previous = {key: snapshot.posture for key, snapshot in stored.items()}
    known_subscriptions = {posture.subscription_id.lower() for posture in previous.values()}
    # Grouped once: matching every posture against every probe is quadratic (10,000 vaults: a
    # minute of CPU).
    probes_by_vault: dict[str, list[ProbeResult]] = {}
    for result in report.probes:
        probes_by_vault.setdefault(result.vault_name.lower(), []).append(result)
    facts = [
        VaultFacts(
            posture=posture,
            policy=policies[posture.key],
            probes=tuple(probes_by_vault.get(posture.name.lower(), ())),
            vantages=runtime.vantages,
            evidence=evidence.get(posture.key),
            previous=previous.get(posture.key),
            first_scan_of_scope=posture.subscription_id.lower() not in known_subscriptions,
            logs_refused_threshold=runtime.refused_threshold,
            scan_started_at=started,
            scan_interval=runtime.scan_interval,
            address_space=runtime.address_space,
        )
        for posture in report.postures
    ]
    evaluation = evaluate(facts, today=started.date())
    report.findings = list(evaluation.findings)

    # A finding may resolve only when its vault's subscription listed fully and the source its
    # rule reads answered this time: a failed probe holds back probe findings, incomplete logs log
    # findings, and a vault read with problems everything.
    for posture in report.postures:
        if posture.problems:
            report.mark_incomplete(posture.key, "configuration")
    assessed = {p.key for p in report.postures}
    complete = {
        p.key for p in report.postures if p.subscription_id.lower() in inventory.subscriptions_complete
    }
    if runtime.store is not None and request.vault_name is None:
        gone = disappeared_vault_findings(
            previous=previous,
            current_keys=assessed,
            complete_subscriptions=inventory.subscriptions_complete,
        )
        report.findings.extend(gone)
        # A vault that is gone is assessed completely: its other findings resolve.
        assessed |= {f.vault_id.lower() for f in gone}
        complete |= {f.vault_id.lower() for f in gone}

    # 5. Remember, then tell.
    tell("storing findings")
    if runtime.store is not None:
        report.changes = apply_reconciliation(
            runtime.store,
            current=report.findings,
            assessed_vaults=assessed,
            complete_vaults=complete,
            incomplete_sources={
                key: report.incomplete.get(key, set()) | report.skipped_sources for key in assessed
            },
            now=started,
            scan_id=report.scan_id,
        )
        # Only a whole listing becomes the stored state: a one-vault check is judged against the
        # last scan of its subscription, and never makes that subscription look scanned.
        if request.vault_name is None:
            runtime.store.save_postures(
                PostureSnapshot(posture=p, scan_id=report.scan_id, seen_at=started) for p in report.postures
            )
    report.finished_at = runtime.clock()
    if request.notify and runtime.notifier is not None and runtime.store is not None:
        tell("notifying")
        report.errors.extend(runtime.notifier.notify(report, now=report.finished_at))
    if runtime.store is not None:
        runtime.store.record_scan(
            ScanRun(
                scan_id=report.scan_id,
                scope=report.scope,
                started_at=report.started_at,
                finished_at=report.finished_at,
                counts=_counts(report),
                errors=tuple(report.errors),
                trigger=request.trigger,
                vault=request.vault_name,
                logs_until=logs_until,
            )
        )
        runtime.store.save_report(
            report.scan_id,
            build_report_document(
                report, vantages=runtime.vantages, policies=policies, generated_at=report.finished_at
            ),
            started_at=report.started_at,
        )
    return ScanOutcome(report=report, expired_suppressions=evaluation.expired_suppressions, policies=policies)


def _scan_id(started: dt.datetime) -> str:
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def _probe_all(runtime: ScanRuntime, names: list[str]) -> list[ProbeResult]:
    assert runtime.prober is not None
    prober = runtime.prober
    with ThreadPoolExecutor(max_workers=max(1, len(runtime.vantages))) as pool:
        batches = pool.map(lambda vantage: prober(names, vantage), runtime.vantages)
        return [result for batch in batches for result in batch]


def _read_logs(
    runtime: ScanRuntime, report: ScanReport, subscriptions: Sequence[str]
) -> tuple[dict[str, LogEvidence], dt.datetime]:
    """Evidence per vault key, and where the window ended. It ends now, not at the scan's start:
    this scan's own probes are evidence too. It starts where the last scan of these subscriptions
    that read logs stopped, whatever other subscriptions' workers recorded since."""
    assert runtime.evidence is not None
    previous_end = _logs_read_until(runtime.store, subscriptions) if runtime.store is not None else None
    window_start, window_end = logs_window(
        now=runtime.clock(), previous_scan_end=previous_end, first_run=runtime.logs_first_window
    )
    vault_ids = [p.id for p in report.postures]
    merged: dict[str, LogEvidence] = {}
    for workspace in runtime.workspaces:
        result = runtime.evidence.read_workspace(
            workspace, vault_ids, window_start=window_start, window_end=window_end
        )
        report.errors.extend(result.errors)
        for key, found in result.evidence.items():
            merged[key] = _merge_evidence(merged.get(key), found)
    return merged, window_end


# Recent scan records searched for the last logs read of a subscription: one per subscription per
# scheduled scan, so this covers a few rounds of a large fan-out.
_RUNS_SEARCHED = 500


def _logs_read_until(store: Store, subscriptions: Sequence[str]) -> dt.datetime | None:
    wanted = {s.lower() for s in subscriptions}
    for run in store.scan_runs(limit=_RUNS_SEARCHED):
        if run.vault is None and run.logs_until is not None and wanted <= {s.lower() for s in run.scope}:
            return run.logs_until
    return None


def _merge_evidence(first: LogEvidence | None, second: LogEvidence) -> LogEvidence:
    if first is None:
        return second
    return LogEvidence(
        vault_id=first.vault_id,
        workspace_id=f"{first.workspace_id},{second.workspace_id}",
        window_start=min(first.window_start, second.window_start),
        window_end=max(first.window_end, second.window_end),
        activity=first.activity + second.activity,
        complete=first.complete and second.complete,
        notes=first.notes + second.notes,
    )


def _counts(report: ScanReport) -> dict[str, int]:
    counts: dict[str, int] = {
        "vaults": len(report.postures),
        "findings": len(report.findings),
        "errors": len(report.errors),
    }
    for change in report.changes:
        counts[change.kind.value] = counts.get(change.kind.value, 0) + 1
    for finding in report.findings:
        if not finding.suppressed:
            counts[f"severity_{finding.severity.value}"] = (
                counts.get(f"severity_{finding.severity.value}", 0) + 1
            )
    return counts


__all__ = ["ScanOutcome", "ScanRequest", "ScanRuntime", "run_scan"]
