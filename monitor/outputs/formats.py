"""Findings for people and machines: a table, JSON, SARIF 2.1.0 and Markdown.

Every renderer takes the same three things a scan or an evaluation ends with: the findings, the
faults of the outside world (``ScanError``) and the suppressions that expired. A scan adds what it
observed (``Observed``): the vantage points and where each stands, every probe result (vault ×
vantage point) and which sources were complete for each vault; JSON carries all of it, SARIF and
Markdown the gaps and the vantage points whose place nobody stated, the table the same in lines.
``kvmon evaluate`` and ``kvmon scan`` both go through ``write_report``. Pure except
``write_report``/``render_table``, which write to the stream they are given.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

from monitor.config.policy import PLACE_NOT_STATED, Vantage
from monitor.jsonable import to_jsonable
from monitor.judge.coverage import SourceState, VaultSources, probes_by_vault, vault_sources
from monitor.judge.evaluate import ExpiredSuppression
from monitor.judge.rules.base import Rule
from monitor.judge.rules.catalog import CATALOG
from monitor.model import (
    EvidenceSource,
    Finding,
    FindingChange,
    LogEvidence,
    PerimeterLogEvidence,
    ProbeResult,
    ScanError,
    Severity,
    VaultPosture,
)
from monitor.model_storage import StorageAccountPosture
from monitor.scan_report import ScanReport

FORMATS = ("table", "json", "sarif", "markdown")

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_VERSION = "2.1.0"
FINGERPRINT_KEY = "kvmonFindingId/v1"
SOURCE_ROOT = "SRCROOT"

_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub code scanning ranks security alerts by this property (critical > 9.0, high 7.0-8.9,
# medium 4.0-6.9, low 0.1-3.9); informational rules carry none.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
}
_RICH_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


@dataclass(frozen=True)
class SourceLocation:
    """Where a vault was read from: a file (``uri`` relative to the source root, or absolute
    ``file://``) and the lines that hold it (the line of its resource id; the whole file,
    ``1..end_line``, when that line is not known)."""

    uri: str
    start_line: int = 1
    end_line: int | None = None


@dataclass(frozen=True)
class Observed:
    """What a scan observed besides its findings: its report (postures, probe results, log
    evidence, which subscriptions were listed) and the vantage points it probed from."""

    report: ScanReport
    vantages: Sequence[Vantage] = ()

    @functools.cached_property
    def columns(self) -> list[tuple[Vantage, bool]]:
        return vantage_columns(self.vantages, self.report.probes)

    @functools.cached_property
    def vaults(self) -> list[VaultObserved]:
        """Every vault read, in the order the inventory gave them."""
        report = self.report
        probed = EvidenceSource.PROBES not in report.skipped_sources
        logs_read = EvidenceSource.LOGS not in report.skipped_sources
        perimeter_logs_read = EvidenceSource.PERIMETER_LOGS not in report.skipped_sources
        names = [vantage.name for vantage, configured in self.columns if configured] if probed else []
        order = {vantage.name: index for index, (vantage, _) in enumerate(self.columns)}
        by_vault = probes_by_vault(report.probes)
        evidence = {found.vault_id.lower(): found for found in report.evidence}
        perimeter_evidence = {seen.vault_id.lower(): seen for seen in report.perimeter_evidence}
        observed = []
        for posture in report.postures:
            results = sorted(by_vault.get(posture.name.lower(), ()), key=lambda r: order.get(r.vantage, 0))
            found = evidence.get(posture.key)
            sources = vault_sources(
                posture,
                probes=results,
                vantages=names,
                evidence=found,
                probed=probed,
                logs_read=logs_read,
                perimeter_evidence=perimeter_evidence.get(posture.key),
                perimeter_logs_read=perimeter_logs_read,
            )
            observed.append(
                VaultObserved(
                    posture=posture,
                    sources=sources,
                    probes=tuple(results),
                    evidence=found,
                    perimeter_evidence=perimeter_evidence.get(posture.key),
                )
            )
        return observed

    @property
    def unknown_places(self) -> list[Vantage]:
        """Vantage points whose place nobody stated: neither inside nor outside is judged there."""
        return [vantage for vantage, _ in self.columns if vantage.inside is None]

    def subscription_state(self, subscription: str) -> str:
        """``complete`` (every page listed), ``partial`` (some vaults read) or ``unread``."""
        if subscription in self.report.listed_subscriptions:
            return "complete"
        return "unread" if subscription in self.report.unread_subscriptions else "partial"

    @property
    def complete(self) -> bool:
        """Every subscription listed whole and every vault's sources complete."""
        return (
            all(self.subscription_state(s) == "complete" for s in self.report.scope)
            and all(vault.sources.complete for vault in self.vaults)
            and not any(account.key in self.report.incomplete for account in self.report.accounts)
        )


@dataclass(frozen=True)
class VaultObserved:
    posture: VaultPosture
    sources: VaultSources
    probes: tuple[ProbeResult, ...]  # one per vantage point, in the vantage points' order
    evidence: LogEvidence | None = None  # its logs, merged over the workspaces read
    perimeter_evidence: PerimeterLogEvidence | None = None  # its perimeter's NSPAccessLogs

    def gaps(self) -> list[str]:
        """Each incomplete source in words: ``probes: internet: error, DNS: ...``."""
        return [
            f"{name}: {'; '.join(reading.notes)}"
            for name, reading in self.sources.readings()
            if reading.state is SourceState.INCOMPLETE
        ]


def vantage_columns(vantages: Sequence[Vantage], probes: Iterable[ProbeResult]) -> list[tuple[Vantage, bool]]:
    """Every configured vantage point (True), then any a probe names that is not configured
    (False): its place is unknown, so neither inside nor outside can be claimed."""
    columns = [(vantage, True) for vantage in vantages]
    configured = {vantage.name for vantage in vantages}
    for name in dict.fromkeys(probe.vantage for probe in probes):
        if name not in configured:
            columns.append((Vantage(name=name, inside=None), False))
    return columns


def vantage_json(vantage: Vantage, *, configured: bool) -> dict[str, Any]:
    """A vantage point for machines; ``place`` (what is not judged, how to state it) only when
    its place is not stated."""
    entry: dict[str, Any] = {
        "name": vantage.name,
        "inside": vantage.inside,
        "subnet_id": vantage.subnet_id,
        "configured": configured,
    }
    if vantage.inside is None:
        entry["place"] = PLACE_NOT_STATED
    return entry


def place_line(vantage: Vantage) -> str:
    return f"vantage point {vantage.name}: {PLACE_NOT_STATED}"


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Active findings first, most severe first, then by vault, rule and subject: stable output."""
    return sorted(
        findings,
        key=lambda f: (f.suppressed, -f.severity.rank, f.vault_name.lower(), f.rule_id, f.subject.lower()),
    )


def summary(
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
) -> dict[str, int]:
    """Counts of active findings by severity (most severe first), then suppressed, errors, expired."""
    counts = {severity.value: 0 for severity in sorted(Severity, key=lambda s: -s.rank)}
    for finding in findings:
        if not finding.suppressed:
            counts[finding.severity.value] += 1
    counts["suppressed"] = sum(1 for f in findings if f.suppressed)
    counts["errors"] = len(errors)
    counts["expired_suppressions"] = len(expired)
    return counts


def at_or_above(findings: Sequence[Finding], threshold: Severity) -> list[Finding]:
    """Active (unsuppressed) findings at or above ``threshold``: what makes a run fail."""
    return [f for f in findings if not f.suppressed and f.severity.rank >= threshold.rank]


# -- JSON --------------------------------------------------------------------------------------------


def finding_json(finding: Finding) -> dict[str, Any]:
    suppression = finding.suppression
    return {
        "rule": finding.rule_id,
        "severity": finding.severity.value,
        "vault": finding.vault_name,
        "vault_id": finding.vault_id,
        "title": finding.title,
        "summary": finding.summary,
        "subject": finding.subject,
        "evidence": to_jsonable(finding.evidence),
        "remediation": finding.remediation,
        "id": finding.id,
        "suppressed": finding.suppressed,
        "suppression": None
        if suppression is None
        else {
            "reason": suppression.reason,
            "owner": suppression.owner,
            "expires": suppression.expires.isoformat() if suppression.expires else None,
        },
    }


def error_json(error: ScanError) -> dict[str, Any]:
    return {"source": error.source, "scope": error.scope, "message": error.message, "code": error.code}


def expired_json(expired: ExpiredSuppression) -> dict[str, Any]:
    suppression = expired.suppression
    return {
        "rule": expired.rule_id,
        "vault_id": expired.vault_id,
        "vault_pattern": suppression.vault_pattern,
        "reason": suppression.reason,
        "owner": suppression.owner,
        "expires": suppression.expires.isoformat() if suppression.expires else None,
    }


def probe_json(result: ProbeResult) -> dict[str, Any]:
    """One vault probed from one vantage point: the verdict and what decided it first, then every
    step as the probe recorded it (``dns``, ``tls``, ``health``, ``data_plane``; None when not run)."""
    plane = result.data_plane
    return {
        "vantage": result.vantage,
        "hostname": result.hostname,
        "verdict": result.verdict.value,
        "conclusive": result.conclusive,
        "failure": result.failure,
        "dns_addresses": list(result.dns.addresses) if result.dns else [],
        "dns_chain": list(result.dns.chain) if result.dns else [],
        "seen_address": result.seen_address,
        "seen_address_private": result.seen_address_private,
        "status_code": plane.status_code if plane else None,
        "error_code": plane.error_code if plane else None,
        "inner_code": plane.inner_code if plane else None,
        "vantage_error": result.vantage_error,
        "started_at": to_jsonable(result.started_at),
        "duration_ms": result.duration_ms,
        "dns": to_jsonable(result.dns),
        "tls": to_jsonable(result.tls),
        "health": to_jsonable(result.health),
        "data_plane": to_jsonable(plane),
    }


def observed_vault_json(vault: VaultObserved) -> dict[str, Any]:
    sources: dict[str, dict[str, Any]] = {
        name: {"state": reading.state.value, "notes": list(reading.notes)}
        for name, reading in vault.sources.readings()
    }
    if vault.evidence is not None:
        sources["logs"] |= {
            "workspace_id": vault.evidence.workspace_id,
            "window_start": to_jsonable(vault.evidence.window_start),
            "window_end": to_jsonable(vault.evidence.window_end),
        }
    if vault.perimeter_evidence is not None:
        sources["perimeter_logs"] |= {
            "workspace_id": vault.perimeter_evidence.workspace_id,
            "window_start": to_jsonable(vault.perimeter_evidence.window_start),
            "window_end": to_jsonable(vault.perimeter_evidence.window_end),
        }
    posture = vault.posture
    return {
        "name": posture.name,
        "id": posture.id,
        "subscription_id": posture.subscription_id,
        "complete": vault.sources.complete,
        "sources": sources,
        "probes": [probe_json(result) for result in vault.probes],
    }


def observed_json(observed: Observed) -> dict[str, Any]:
    """What ``kvmon scan --format json`` adds to the findings (docs/scan-output.schema.json)."""
    return {
        "complete": observed.complete,
        "subscriptions": [
            {"id": subscription, "listing": observed.subscription_state(subscription)}
            for subscription in observed.report.scope
        ],
        "vantages": [vantage_json(v, configured=configured) for v, configured in observed.columns],
        "vaults": [observed_vault_json(vault) for vault in observed.vaults],
        "accounts": [observed_account_json(account, observed.report) for account in observed.report.accounts],
    }


def observed_account_json(account: StorageAccountPosture, report: ScanReport) -> dict[str, Any]:
    """A storage account read: its configuration, and which of its sources fell short this scan
    (``report.incomplete``). The scan does not probe accounts or read their logs yet, so those
    sources are not listed for them."""
    short = report.incomplete.get(account.key, frozenset())
    return {
        "name": account.name,
        "id": account.id,
        "subscription_id": account.subscription_id,
        "complete": not short,
        "incomplete_sources": sorted(source.value for source in short),
        "public_network_access": account.public_network_access.value,
        "default_action": account.default_action.value,
        "bypass": sorted(member.value for member in account.bypass),
        "private_endpoints": [
            {
                "id": pec.id,
                "subresource": pec.subresource.value if pec.subresource else None,
                "status": pec.connection.status,
            }
            for pec in account.private_endpoint_connections
        ],
        "problems": list(account.problems),
    }


def to_json(
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    changes: Sequence[FindingChange] | None = None,
    observed: Observed | None = None,
) -> dict[str, Any]:
    """``changes`` (from a stored scan) adds what opened, changed and resolved since the last one;
    ``observed`` (a scan's) the vantage points, every probe result and each vault's sources."""
    document: dict[str, Any] = {
        "findings": [finding_json(f) for f in ordered(findings)],
        "errors": [error_json(e) for e in errors],
        "expired_suppressions": [expired_json(e) for e in expired],
        "summary": summary(findings, errors=errors, expired=expired),
    }
    if changes is not None:
        document["changes"] = [change_json(c) for c in changes]
    if observed is not None:
        document |= observed_json(observed)
    return document


def change_json(change: FindingChange) -> dict[str, Any]:
    confirmed = {"confirmed_by": change.confirmed_by} if change.confirmed_by else {}
    return {"change": change.kind.value, **finding_json(change.finding), **confirmed}


def change_lines(changes: Sequence[FindingChange]) -> list[str]:
    """One line per change, for the table and Markdown outputs."""
    if not changes:
        return ["Since the last scan: no change."]
    lines = ["Since the last scan:"]
    for change in changes:
        finding = change.finding
        lines.append(
            f"  {change.kind.value:<9} {finding.severity.value:<8} {finding.rule_id} {finding.vault_name}"
            f"{' [' + finding.subject + ']' if finding.subject else ''}: {finding.summary or finding.title}"
            + (f" (confirmed by the probes: {change.confirmed_by})" if change.confirmed_by else "")
        )
    return lines


# -- SARIF 2.1.0 -------------------------------------------------------------------------------------


def _tool_version() -> str:
    try:
        return metadata.version("kvmon")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _rule_name(rule: Rule) -> str:
    """SARIF wants a PascalCase identifier-like name: built from the title."""
    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", rule.title))


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _rule_help(rule: Rule) -> dict[str, str]:
    references = "\n".join(f"- {ref}" for ref in rule.references)
    text = (
        f"{_sentence(rule.rationale)}\n\nFix with the Azure CLI:\n{rule.remediation_shown}\n\n"
        f"Or in Bicep:\n{rule.remediation_bicep}\n\nReferences:\n{references}"
    )
    markdown = (
        f"{_sentence(rule.rationale)}\n\n**Fix with the Azure CLI**\n\n```sh\n{rule.remediation_shown}\n```\n\n"
        f"**Or in Bicep**\n\n```bicep\n{rule.remediation_bicep}\n```\n\n**References**\n\n{references}"
    )
    return {"text": text, "markdown": markdown}


def _sarif_rule(rule: Rule) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "tags": ["security", "azure", "key-vault", rule.category.value],
        "precision": "high",
    }
    if rule.severity in _SECURITY_SEVERITY:
        properties["security-severity"] = _SECURITY_SEVERITY[rule.severity]
    descriptor: dict[str, Any] = {
        "id": rule.id,
        "name": _rule_name(rule),
        "shortDescription": {"text": _sentence(rule.title)},
        "fullDescription": {"text": _sentence(rule.rationale)},
        "help": _rule_help(rule),
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": properties,
    }
    if rule.references:
        descriptor["helpUri"] = rule.references[0]
    return descriptor


def _location(finding: Finding, source: SourceLocation | None, *, relative_base: bool) -> dict[str, Any]:
    location: dict[str, Any] = {
        "logicalLocations": [
            {"fullyQualifiedName": finding.vault_id, "name": finding.vault_name, "kind": "resource"}
        ]
    }
    if source is not None:
        artifact: dict[str, Any] = {"uri": source.uri}
        if relative_base and "://" not in source.uri:
            artifact["uriBaseId"] = SOURCE_ROOT
        region = {"startLine": source.start_line}
        if source.end_line is not None:
            region["endLine"] = source.end_line
        location["physicalLocation"] = {"artifactLocation": artifact, "region": region}
    return location


def _result(
    finding: Finding,
    rule_index: Mapping[str, int],
    sources: Mapping[str, SourceLocation],
    *,
    relative_base: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "level": _SARIF_LEVEL[finding.severity],
        "message": {"text": _sentence(f"{finding.vault_name}: {finding.summary or finding.title}")},
        "locations": [_location(finding, sources.get(finding.vault_id.lower()), relative_base=relative_base)],
        "partialFingerprints": {FINGERPRINT_KEY: finding.id},
        "properties": {
            "severity": finding.severity.value,
            "vaultId": finding.vault_id,
            "subject": finding.subject,
            "evidence": to_jsonable(finding.evidence),
            "remediation": finding.remediation,
        },
    }
    if finding.rule_id in rule_index:
        result["ruleIndex"] = rule_index[finding.rule_id]
    if finding.suppression is not None:
        expires = finding.suppression.expires
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": (
                    f"{finding.suppression.reason} (owner {finding.suppression.owner}"
                    + (f", expires {expires.isoformat()})" if expires else ")")
                ),
            }
        ]
    return result


def _notification(text: str, level: str) -> dict[str, Any]:
    return {"level": level, "message": {"text": _sentence(text)}}


def to_sarif(
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    sources: Mapping[str, SourceLocation] | None = None,
    source_root: str | None = None,
    rules: Sequence[Rule] = CATALOG,
    observed: Observed | None = None,
) -> dict[str, Any]:
    """One SARIF run; ``sources`` maps lower-cased vault ids to the input they were read from,
    ``source_root`` (a ``file://`` URI ending in ``/``) is what relative source URIs resolve against.
    ``observed`` (a scan's) adds a warning per vantage point whose place nobody stated, and the
    run's properties say what the evidence covered (``_sarif_coverage``)."""
    sources = sources or {}
    rule_index = {rule.id: index for index, rule in enumerate(rules)}
    notifications = [
        _notification(f"{e.source} {e.scope}: {e.message}" + (f" ({e.code})" if e.code else ""), "error")
        for e in errors
    ] + [
        _notification(
            f"suppression of {x.rule_id} for {x.vault_id} (owner {x.suppression.owner}) expired on "
            f"{x.suppression.expires} and no longer suppresses",
            "warning",
        )
        for x in expired
    ]
    if observed is not None:
        notifications += [_notification(place_line(v), "warning") for v in observed.unknown_places]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "kvmon",
                "fullName": "kvmon: Azure Key Vault network exposure monitor",
                "version": _tool_version(),
                "semanticVersion": _tool_version(),
                "informationUri": "https://learn.microsoft.com/en-us/azure/key-vault/general/network-security",
                "rules": [_sarif_rule(rule) for rule in rules],
            }
        },
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
        "results": [
            _result(f, rule_index, sources, relative_base=source_root is not None) for f in ordered(findings)
        ],
        "columnKind": "unicodeCodePoints",
    }
    if source_root is not None:
        run["originalUriBaseIds"] = {SOURCE_ROOT: {"uri": source_root}}
    if observed is not None:
        run["properties"] = _sarif_coverage(observed)
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _sarif_coverage(observed: Observed) -> dict[str, Any]:
    """The run's property bag: whether the evidence was complete, how each subscription was
    listed, the vantage points (a place not stated says so) and the vaults with gaps, each gap in
    words. Every probe result is the JSON format's: SARIF carries what a reviewer must not miss."""
    return {
        "evidenceComplete": observed.complete,
        "subscriptions": [
            {"id": subscription, "listing": observed.subscription_state(subscription)}
            for subscription in observed.report.scope
        ],
        "vantagePoints": [vantage_json(v, configured=configured) for v, configured in observed.columns],
        "incompleteVaults": [
            {"name": vault.posture.name, "vaultId": vault.posture.id, "gaps": vault.gaps()}
            for vault in observed.vaults
            if not vault.sources.complete
        ],
    }


# -- Markdown ----------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """One table cell: pipes escaped, line breaks flattened."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _counts_line(findings: Sequence[Finding]) -> str:
    counts = summary(findings)
    active = [
        f"{counts[s.value]} {s.value}" for s in sorted(Severity, key=lambda s: -s.rank) if counts[s.value]
    ]
    total = sum(counts[s.value] for s in Severity)
    text = f"{total} finding{'s' if total != 1 else ''}"
    if active:
        text += f" ({', '.join(active)})"
    if counts["suppressed"]:
        text += f"; {counts['suppressed']} suppressed"
    return text


def to_markdown(
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    observed: Observed | None = None,
) -> str:
    """``observed`` (a scan's) adds the vantage points, each place not stated saying so and how to
    state it, and the evidence that fell short: subscriptions not listed whole, vaults with gaps."""
    lines = ["# kvmon findings", "", f"**{_counts_line(findings)}**", ""]
    if findings:
        lines += ["| Severity | Rule | Vault | Finding | Fix |", "|---|---|---|---|---|"]
        for f in ordered(findings):
            severity = f"{f.severity.value} (suppressed)" if f.suppressed else f.severity.value
            fix = f"`{_md(f.remediation).replace('`', '')}`" if f.remediation else ""
            lines.append(
                f"| {severity} | {f.rule_id} | {_md(f.vault_name)} | **{_md(f.title)}**: {_md(f.summary)} | {fix} |"
            )
        lines.append("")
    if errors:
        lines += ["## Errors", ""]
        lines += [
            f"- **{_md(e.source)}** `{_md(e.scope)}`: {_md(e.message)}"
            + (f" ({_md(e.code)})" if e.code else "")
            for e in errors
        ]
        lines.append("")
    if expired:
        lines += ["## Expired suppressions", ""]
        lines += [
            f"- {x.rule_id} on `{_md(x.vault_id)}`: {_md(x.suppression.reason)} "
            f"(owner {_md(x.suppression.owner)}, expired {x.suppression.expires})"
            for x in expired
        ]
        lines.append("")
    if observed is not None:
        lines += _markdown_observed(observed)
    return "\n".join(lines)


def _markdown_observed(observed: Observed) -> list[str]:
    lines: list[str] = []
    if observed.columns:
        lines += ["## Vantage points", "", "| Vantage point | Place | Subnet |", "|---|---|---|"]
        for vantage, _ in observed.columns:
            place = (
                f"**{_md(PLACE_NOT_STATED)}**"
                if vantage.inside is None
                else "inside the VNet"
                if vantage.inside
                else "outside the VNet"
            )
            lines.append(f"| {_md(vantage.name)} | {place} | {_md(vantage.subnet_id or '')} |")
        lines.append("")
    short = [s for s in observed.report.scope if observed.subscription_state(s) != "complete"]
    gaps = [vault for vault in observed.vaults if not vault.sources.complete]
    if short or gaps:
        lines += ["## Incomplete evidence", ""]
        lines += [
            f"- subscription `{_md(s)}`: listing {observed.subscription_state(s)} (see the errors)"
            for s in short
        ]
        for vault in gaps:
            lines.append(f"- **{_md(vault.posture.name)}**: {_md('; '.join(vault.gaps()))}")
        lines.append("")
    return lines


# -- Table -------------------------------------------------------------------------------------------


def plain_table(
    findings: Sequence[Finding],
    *,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    observed: Observed | None = None,
) -> str:
    """Aligned columns, one finding per line, no colour and no wrapping: for pipes and files."""
    rows = [("SEVERITY", "RULE", "VAULT", "FINDING")]
    for f in ordered(findings):
        severity = f"{f.severity.value}(suppressed)" if f.suppressed else f.severity.value
        text = f"{f.title}: {f.summary}" if f.summary else f.title
        rows.append((severity, f.rule_id, f.vault_name, " ".join(text.split())))
    out: list[str] = []
    if findings:
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            out.append(
                "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])), row[3]]).rstrip()
            )
    else:
        out.append("No findings.")
    out += _trailer(findings, errors, expired, observed)
    return "\n".join(out) + "\n"


def _trailer(
    findings: Sequence[Finding],
    errors: Sequence[ScanError],
    expired: Sequence[ExpiredSuppression],
    observed: Observed | None,
) -> list[str]:
    lines = ["", _counts_line(findings)]
    for e in errors:
        lines.append(f"error: {e.source} {e.scope}: {e.message}" + (f" ({e.code})" if e.code else ""))
    for x in expired:
        lines.append(
            f"expired suppression: {x.rule_id} on {x.vault_id} (owner {x.suppression.owner}, "
            f"expired {x.suppression.expires}): no longer suppresses"
        )
    if observed is not None:
        lines += [place_line(vantage) for vantage in observed.unknown_places]
        lines += [
            f"incomplete: subscription {s}: listing {observed.subscription_state(s)}"
            for s in observed.report.scope
            if observed.subscription_state(s) != "complete"
        ]
        lines += [
            f"incomplete: {vault.posture.name}: {'; '.join(vault.gaps())}"
            for vault in observed.vaults
            if not vault.sources.complete
        ]
    return lines


def render_table(
    findings: Sequence[Finding],
    *,
    stream: TextIO,
    terminal: bool,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    observed: Observed | None = None,
) -> None:
    """A rich table on a terminal, ``plain_table`` otherwise."""
    if not terminal:
        stream.write(plain_table(findings, errors=errors, expired=expired, observed=observed))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, force_terminal=True, highlight=False)
    if findings:
        table = Table(title="kvmon findings", show_lines=False, expand=False)
        table.add_column("Severity", no_wrap=True)
        table.add_column("Rule", no_wrap=True)
        table.add_column("Vault", no_wrap=True)
        table.add_column("Finding")
        for f in ordered(findings):
            severity = Text(f.severity.value, style="dim" if f.suppressed else _RICH_STYLE[f.severity])
            if f.suppressed:
                severity.append(" (suppressed)", style="dim")
            finding = Text()
            finding.append(f.title, style="bold")
            if f.summary:
                finding.append(f"\n{f.summary}")
            table.add_row(severity, f.rule_id, f.vault_name, finding)
        console.print(table)
    else:
        console.print("No findings.")
    for line in _trailer(findings, errors, expired, observed):
        warning = line.startswith(("expired", "vantage point", "incomplete:"))
        style = "red" if line.startswith("error:") else "yellow" if warning else ""
        console.print(Text(line, style=style))


# -- One entry point for the commands ----------------------------------------------------------------


def write_report(
    output_format: str,
    findings: Sequence[Finding],
    *,
    stream: TextIO,
    terminal: bool = False,
    errors: Sequence[ScanError] = (),
    expired: Sequence[ExpiredSuppression] = (),
    sources: Mapping[str, SourceLocation] | None = None,
    source_root: str | None = None,
    changes: Sequence[FindingChange] | None = None,
    observed: Observed | None = None,
) -> None:
    """Write findings in ``output_format`` (one of ``FORMATS``) to ``stream``; ``changes`` (a
    stored scan's) go into the JSON, and after the table or Markdown; ``observed`` (a scan's) into
    every format."""
    if output_format == "table":
        render_table(
            findings, stream=stream, terminal=terminal, errors=errors, expired=expired, observed=observed
        )
        if changes is not None:
            stream.write("\n".join(["", *change_lines(changes), ""]))
    elif output_format == "json":
        _dump(to_json(findings, errors=errors, expired=expired, changes=changes, observed=observed), stream)
    elif output_format == "sarif":
        sarif = to_sarif(
            findings,
            errors=errors,
            expired=expired,
            sources=sources,
            source_root=source_root,
            observed=observed,
        )
        _dump(sarif, stream)
    elif output_format == "markdown":
        stream.write(to_markdown(findings, errors=errors, expired=expired, observed=observed))
        if changes is not None:
            stream.write("\n".join(["", "```", *change_lines(changes), "```", ""]))
    else:
        raise ValueError(f"unknown output format {output_format!r}: use one of {', '.join(FORMATS)}")


def _dump(document: Mapping[str, Any], stream: TextIO) -> None:
    json.dump(document, stream, indent=2)
    stream.write("\n")
