"""What a scan covered: which vaults it assessed, which completely, and which sources fell short.

The lifecycle resolves a finding only when the scan could have seen it: its vault was assessed,
its vault's subscription listed completely (a vault missing from a partial listing proves
nothing), and the source its rule reads answered for that vault. Evidence that fell short is
never read as "the problem went away", so a timeout or partial logs never resolve anything:

- a probe that ended in an error or reached nothing (the vantage point did not answer, DNS or TCP
  timed out, TLS failed, the connection dropped) proved nothing about what the vault admits:
  probe findings of that vault stay as they were (KV102 and KV106 still report the failure);
- logs a workspace could not read completely hold back that vault's log findings; so does an empty
  log of a vault a perimeter governs (or may govern): its logs reach only workspaces inside its
  perimeter, so no rows is no evidence, never "nobody got in". The perimeter's own access log
  (``PERIMETER_LOGS``) answers on its own, by the same two tests;
- a vault whose configuration was read with problems (fields judged on Azure's defaults) holds
  back every finding of that vault: each rule judges what it sees against the configuration;
- a vault whose Network Security Perimeter association could not be read has an unknown exposure:
  its configuration findings stay as they were (KV018 reports why);
- a source no stage read (probes or logs switched off or not configured) is missing for every
  vault, but nobody's evidence fell short, so the report does not mark the vaults incomplete;
- a stored vault missing from a complete listing is gone (KV302): it is assessed completely, so
  its other findings resolve;
- a vantage point the scan probed from that gave no result for a vault is as blind as one that
  failed;
- a storage account is assessed by its configuration alone, by the same tests as a vault's (read
  with problems, or its perimeter unreadable: its findings stay as they were), complete when its
  subscription's *account* listing was, whatever the vault listing did there. Storage has no probes
  or logs yet, so no storage rule reads them and nothing is held back for an account when a scan
  skips them: the sources skipped apply to every assessed key, and match none of its findings.

``vault_sources`` says the same per vault and per source in words (what ``kvmon scan --format
json`` reports as a vault's ``sources``), and ``assess_coverage`` decides from it, so the report and
the lifecycle never disagree about what fell short.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

from monitor.judge.perimeter import perimeter_may_govern
from monitor.model import (
    EvidenceSource,
    LogEvidence,
    PerimeterLogEvidence,
    PerimeterLookup,
    ProbeResult,
    VaultPosture,
)
from monitor.model_storage import StorageAccountPosture


class SourceState(StrEnum):
    """How one source of evidence answered for one vault in one scan."""

    COMPLETE = "complete"  # read, and it answered whole
    INCOMPLETE = "incomplete"  # read, and it fell short: findings that read it may not resolve
    NOT_READ = "not-read"  # no stage read it this scan (switched off, not configured, no reader)


@dataclass(frozen=True)
class SourceReading:
    """One source's state for one vault and, when it is not complete, why, in words."""

    state: SourceState
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class VaultSources:
    """What each source gave for one vault: its ARM document, its perimeter association, the
    probes (one result per vantage point) and the access logs of the window."""

    configuration: SourceReading
    perimeter: SourceReading
    probes: SourceReading
    logs: SourceReading
    perimeter_logs: SourceReading  # the perimeter's NSPAccessLogs for this vault

    def readings(self) -> Iterator[tuple[str, SourceReading]]:
        """(name, reading) in a fixed order: the names ``kvmon scan --format json`` uses."""
        yield "configuration", self.configuration
        yield "perimeter", self.perimeter
        yield "probes", self.probes
        yield "logs", self.logs
        yield "perimeter_logs", self.perimeter_logs

    @property
    def complete(self) -> bool:
        """No source that was read fell short (a source not read is said, not counted)."""
        return all(reading.state is not SourceState.INCOMPLETE for _, reading in self.readings())

    @property
    def fell_short(self) -> frozenset[EvidenceSource]:
        """The sources whose findings may not resolve: an unreadable perimeter leaves the vault's
        exposure unknown, so it holds back the configuration's findings."""
        short = set()
        if SourceState.INCOMPLETE in (self.configuration.state, self.perimeter.state):
            short.add(EvidenceSource.CONFIGURATION)
        if self.probes.state is SourceState.INCOMPLETE:
            short.add(EvidenceSource.PROBES)
        if self.logs.state is SourceState.INCOMPLETE:
            short.add(EvidenceSource.LOGS)
        if self.perimeter_logs.state is SourceState.INCOMPLETE:
            short.add(EvidenceSource.PERIMETER_LOGS)
        return frozenset(short)


_COMPLETE = SourceReading(SourceState.COMPLETE)


def vault_sources(
    posture: VaultPosture,
    *,
    probes: Sequence[ProbeResult],
    vantages: Sequence[str],
    evidence: LogEvidence | None,
    probed: bool,
    logs_read: bool,
    perimeter_evidence: PerimeterLogEvidence | None = None,
    perimeter_logs_read: bool = False,
) -> VaultSources:
    """``probes``: this vault's results; ``vantages``: the vantage points the scan probed from,
    each owing the vault a result; ``evidence``: its logs, merged over the workspaces read;
    ``perimeter_evidence``: what the perimeters' logs said of it; ``probed``, ``logs_read`` and
    ``perimeter_logs_read``: whether those stages ran at all."""
    governed = perimeter_may_govern(posture)
    return VaultSources(
        configuration=_configuration(posture),
        perimeter=_perimeter(posture),
        probes=_probes(probes, vantages)
        if probed
        else SourceReading(SourceState.NOT_READ, ("this scan ran no probes",)),
        logs=_logs(evidence, governed=governed)
        if logs_read
        else SourceReading(SourceState.NOT_READ, ("this scan read no access logs",)),
        perimeter_logs=_perimeter_logs(perimeter_evidence, governed=governed)
        if perimeter_logs_read
        else SourceReading(SourceState.NOT_READ, ("this scan read no perimeter access logs",)),
    )


def _configuration(posture: VaultPosture | StorageAccountPosture) -> SourceReading:
    if not posture.problems:
        return _COMPLETE
    return SourceReading(SourceState.INCOMPLETE, posture.problems)


def _perimeter(posture: VaultPosture | StorageAccountPosture) -> SourceReading:
    reading = posture.perimeter
    if reading.lookup is PerimeterLookup.UNREADABLE:
        return SourceReading(SourceState.INCOMPLETE, (f"perimeter association unreadable: {reading.error}",))
    if reading.lookup is PerimeterLookup.NOT_LOOKED_UP:
        return SourceReading(
            SourceState.NOT_READ, ("the vault's Network Security Perimeter association was not looked up",)
        )
    return _COMPLETE


def _probes(results: Sequence[ProbeResult], vantages: Sequence[str]) -> SourceReading:
    by_vantage = {result.vantage: result for result in results}
    notes = [f"{name}: no result" for name in vantages if name not in by_vantage]
    notes += [
        f"{result.vantage}: {result.verdict.value}, {result.failure}"
        for result in results
        if not result.conclusive
    ]
    return SourceReading(SourceState.INCOMPLETE, tuple(notes)) if notes else _COMPLETE


# A perimeter's resources send their logs only to workspaces inside the perimeter.
_OUTSIDE_THE_PERIMETER = "no rows for a vault a perimeter governs: the workspace may sit outside the perimeter (no evidence, not no access)"


def _logs(evidence: LogEvidence | None, *, governed: bool) -> SourceReading:
    if evidence is None:
        # Every workspace read answers for every vault asked about; none was asked about this one.
        return SourceReading(SourceState.NOT_READ, ("no workspace was queried for this vault",))
    if evidence.complete and not evidence.activity and governed:
        return SourceReading(
            SourceState.INCOMPLETE, (f"logs of workspace {evidence.workspace_id}: {_OUTSIDE_THE_PERIMETER}",)
        )
    if evidence.complete:
        return _COMPLETE
    return SourceReading(
        SourceState.INCOMPLETE,
        evidence.notes or (f"logs of workspace {evidence.workspace_id} incomplete: no reason given",),
    )


def _perimeter_logs(seen: PerimeterLogEvidence | None, *, governed: bool) -> SourceReading:
    if seen is None:
        return SourceReading(SourceState.NOT_READ, ("no perimeter log workspace was queried for this vault",))
    if not seen.complete:
        return SourceReading(
            SourceState.INCOMPLETE,
            seen.notes or (f"perimeter logs of workspace {seen.workspace_id} incomplete: no reason given",),
        )
    if not seen.access and governed:
        return SourceReading(
            SourceState.INCOMPLETE,
            (f"perimeter logs of workspace {seen.workspace_id}: {_OUTSIDE_THE_PERIMETER}",),
        )
    return _COMPLETE


@dataclass(frozen=True)
class Coverage:
    """Vault keys are lower-cased resource ids."""

    assessed: frozenset[str]  # vaults this scan looked at, the disappeared ones included
    complete: frozenset[str]  # of those, the ones whose subscription listed completely
    fell_short: Mapping[str, frozenset[EvidenceSource]]  # per vault: sources that did not answer
    skipped: frozenset[EvidenceSource]  # sources no stage read this scan, for every vault

    @property
    def incomplete_sources(self) -> dict[str, frozenset[EvidenceSource]]:
        """Per assessed vault, every source whose findings may not resolve this scan."""
        return {key: self.fell_short.get(key, frozenset()) | self.skipped for key in self.assessed}


def assess_coverage(
    *,
    postures: Sequence[VaultPosture],
    probes: Sequence[ProbeResult],
    evidence: Mapping[str, LogEvidence],
    probed: bool,
    logs_read: bool,
    subscriptions_complete: AbstractSet[str],
    disappeared: AbstractSet[str],
    vantages: Sequence[str] = (),
    perimeter_evidence: Mapping[str, PerimeterLogEvidence] | None = None,
    perimeter_logs_read: bool = False,
    accounts: Sequence[StorageAccountPosture] = (),
    account_subscriptions_complete: AbstractSet[str] = frozenset(),
    accounts_disappeared: AbstractSet[str] = frozenset(),
) -> Coverage:
    """``postures``: the vaults listed; ``probes``, ``evidence`` and ``perimeter_evidence`` (by vault
    key): what the probes, the vaults' logs and the perimeters' logs said of them; ``probed``,
    ``logs_read`` and ``perimeter_logs_read``: whether those stages ran at all;
    ``subscriptions_complete``: the subscriptions listed completely; ``disappeared``: the keys of
    stored vaults missing from a complete listing; ``vantages``: the vantage points probed from,
    each owing every vault a result. ``accounts``, ``account_subscriptions_complete`` and
    ``accounts_disappeared``: the same of the storage accounts and their listing."""
    listed = {subscription.lower() for subscription in subscriptions_complete}
    gone = frozenset(key.lower() for key in disappeared)
    by_vault = probes_by_vault(probes)
    evidence_by_key = {key.lower(): found for key, found in evidence.items()}
    perimeter_by_key = {key.lower(): seen for key, seen in (perimeter_evidence or {}).items()}

    fell_short: dict[str, frozenset[EvidenceSource]] = {}
    for posture in postures:
        sources = vault_sources(
            posture,
            probes=by_vault.get(posture.name.lower(), ()),
            vantages=vantages,
            evidence=evidence_by_key.get(posture.key),
            probed=probed,
            logs_read=logs_read,
            perimeter_evidence=perimeter_by_key.get(posture.key),
            perimeter_logs_read=perimeter_logs_read,
        )
        if sources.fell_short:
            fell_short[posture.key] = sources.fell_short

    for account in accounts:
        configuration = {_configuration(account).state, _perimeter(account).state}
        if SourceState.INCOMPLETE in configuration:
            fell_short[account.key] = frozenset({EvidenceSource.CONFIGURATION})
    account_listed = {subscription.lower() for subscription in account_subscriptions_complete}
    accounts_gone = frozenset(key.lower() for key in accounts_disappeared)

    skipped = set()
    if not probed:
        skipped.add(EvidenceSource.PROBES)
    if not logs_read:
        skipped.add(EvidenceSource.LOGS)
    if not perimeter_logs_read:
        skipped.add(EvidenceSource.PERIMETER_LOGS)

    return Coverage(
        assessed=frozenset(posture.key for posture in postures)
        | gone
        | frozenset(account.key for account in accounts)
        | accounts_gone,
        complete=frozenset(posture.key for posture in postures if posture.subscription_id.lower() in listed)
        | gone
        | frozenset(account.key for account in accounts if account.subscription_id.lower() in account_listed)
        | accounts_gone,
        fell_short=fell_short,
        skipped=frozenset(skipped),
    )


def probes_by_vault(probes: Sequence[ProbeResult]) -> dict[str, list[ProbeResult]]:
    """Results grouped by lower-cased vault name, once: matching every posture against every probe
    is quadratic (10,000 vaults: a minute of CPU)."""
    grouped: dict[str, list[ProbeResult]] = {}
    for result in probes:
        grouped.setdefault(result.vault_name.lower(), []).append(result)
    return grouped
