"""The HTML report: one scan as a versioned JSON document, and that document as a web page.

``build_report_document`` turns a ``ScanReport`` plus what it was judged against (vantage points,
policies) into plain JSON that the store keeps per scan, so any stored scan can be rendered
again later without the records it came from. ``render_html`` turns such a document into one
self-contained page (inline CSS, no external assets, nothing fetched). Both are pure.

The page shows the vaults needing attention first (open findings, changes, mismatches, evidence
incomplete; the worst severity first), and an overview of the vaults by subscription and worst
severity. A report of up to ``PAGE_SIZE`` vaults is plain HTML with no script. A bigger one (a
10,000-vault estate is tens of megabytes of markup) keeps its initial DOM bounded: the first
``PAGE_SIZE`` vaults are on the page, every other vault's markup waits in an inert ``<template>``,
and one inline script filters (subscription, worst severity, state, name) and pages through them
in the browser, with the filter in the address's fragment (``#sev=high&page=2``) so a link keeps
it; no request leaves the page.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import jinja2

from monitor.config.policy import DnsAnswer, Reach, Vantage, VantageExpectation, VaultPolicy
from monitor.errors import SourceError
from monitor.jsonable import to_jsonable
from monitor.judge.perimeter import (
    EffectiveExposure,
    NetworkPosture,
    effective_exposure,
    perimeter_may_govern,
)
from monitor.model import (
    ChangeKind,
    ErrorSource,
    Finding,
    FindingChange,
    LogEvidence,
    Outcome,
    PerimeterLogCategory,
    PerimeterLogEvidence,
    ProbeResult,
    ScanError,
    Service,
    Severity,
    VaultPosture,
    Verdict,
)
from monitor.model_storage import StorageAccountPosture
from monitor.outputs.formats import vantage_columns, vantage_json
from monitor.scan_report import ScanReport

SCHEMA = "kvmon.report/v1"
TOP_CALLERS = 10
PAGE_SIZE = 100  # vaults on the page at once; a report with more pages them (render_html)
CLEAN = "none"  # the worst severity of a vault with no open finding

# Errors from these sources mean something was not seen, so the scan's evidence is incomplete;
# store and notification faults do not change what was seen.
EVIDENCE_SOURCES = frozenset(
    {ErrorSource.ARM, ErrorSource.RESOURCE_GRAPH, ErrorSource.PROBE, ErrorSource.LOGS, ErrorSource.INPUT}
)

# How one side (reach or DNS) of a matrix cell compares with the baseline.
MET = "ok"
CONTRADICTED = "mismatch"
NO_EVIDENCE = "unknown"
NOT_EXPECTED = "no-expectation"


T = TypeVar("T")


class ReportDocumentError(SourceError):
    """The document is not one ``render_html`` can show (wrong schema, missing field): a stored
    report that cannot be read (``kvmon report --input`` turns it into an input error)."""


# ---------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------


def build_report_document(
    report: ScanReport,
    *,
    vantages: Sequence[Vantage],
    policies: Mapping[str, VaultPolicy],
    generated_at: dt.datetime,
) -> dict[str, Any]:
    """The scan as plain JSON (``"schema": "kvmon.report/v1"``).

    ``policies`` is keyed by vault key (the lower-cased resource id); a vault with no policy is
    shown with no expectations. Every configured vantage point is a matrix column, plus any
    vantage a probe names that is not configured.
    """
    columns = vantage_columns(vantages, report.probes)
    probes = _latest_probes(report.probes)
    findings = _by_vault(report.findings, key=lambda f: f.vault_id)
    changes = _by_vault(report.changes, key=lambda c: c.finding.vault_id)
    evidence = _by_vault(report.evidence, key=lambda e: e.vault_id)
    perimeter_evidence = _by_vault(report.perimeter_evidence, key=lambda e: e.vault_id)
    incomplete = {key.lower() for key in report.incomplete_vaults}
    # Grouped once: a scan whose vantage point is down has an error per vault, and matching every
    # vault against every error would be quadratic.
    error_positions: dict[str, list[int]] = {}
    for index, error in enumerate(report.errors):
        error_positions.setdefault(error.scope.lower(), []).append(index)

    vaults = [
        _vault_entry(
            posture,
            policy=policies.get(posture.key) or policies.get(posture.id) or VaultPolicy(),
            columns=columns,
            probes=probes,
            findings=findings.get(posture.key, []),
            changes=changes.get(posture.key, []),
            evidence=evidence.get(posture.key, []),
            perimeter_evidence=perimeter_evidence.get(posture.key, []),
            errors=_vault_errors(report.errors, error_positions, posture),
            marked_incomplete=posture.key in incomplete,
        )
        for posture in report.postures
    ]
    accounts = [
        _account_entry(
            account,
            policy=policies.get(account.key) or VaultPolicy(),
            findings=findings.get(account.key, []),
            changes=changes.get(account.key, []),
            errors=_vault_errors(report.errors, error_positions, account),
            marked_incomplete=account.key in incomplete,
        )
        for account in report.accounts
    ]
    # Findings and changes of resources the inventory no longer returned (deleted, out of reach):
    # their resolutions belong in the report too, under their service.
    known = {posture.key for posture in report.postures} | {account.key for account in report.accounts}
    for key in dict.fromkeys([*findings, *changes]):
        if key in known:
            continue
        vault_findings, vault_changes = findings.get(key, []), changes.get(key, [])
        sample = vault_findings[0] if vault_findings else vault_changes[0].finding
        absent = _absent_vault_entry(
            sample,
            findings=vault_findings,
            changes=vault_changes,
            marked_incomplete=key in incomplete,
        )
        if Service.of_resource_id(sample.vault_id) is Service.STORAGE:
            accounts.append(absent)
        else:
            vaults.append(absent)

    errors = [to_jsonable(error) for error in report.errors]
    open_findings = [f for f in report.findings if not f.suppressed]
    evidence_complete = (
        not incomplete
        and all(entry["evidence"]["complete"] for entry in [*vaults, *accounts])
        and not any(error.source in EVIDENCE_SOURCES for error in report.errors)
    )
    return {
        "schema": SCHEMA,
        "generated_at": to_jsonable(generated_at),
        "scan": {
            "id": report.scan_id,
            "started_at": to_jsonable(report.started_at),
            "finished_at": to_jsonable(report.finished_at),
            "duration_s": report.duration_s,
            "scope": list(report.scope),
        },
        "evidence_complete": evidence_complete,
        "counts": {
            "vaults": len(vaults),
            "accounts": len(accounts),
            "open": len(open_findings),
            "suppressed": len(report.findings) - len(open_findings),
            "by_severity": {
                severity.value: sum(1 for f in open_findings if f.severity is severity)
                for severity in sorted(Severity, key=lambda s: s.rank, reverse=True)
            },
            "changes": {kind.value: sum(1 for c in report.changes if c.kind is kind) for kind in ChangeKind},
            "mismatches": sum(
                1
                for entry in vaults
                for cell in entry["reachability"].values()
                if cell["state"] == CONTRADICTED
            ),
            "errors": len(errors),
        },
        "vantages": [vantage_json(v, configured=configured) for v, configured in columns],
        "errors": errors,
        "vaults": vaults,
        "accounts": accounts,
    }


def _latest_probes(probes: Iterable[ProbeResult]) -> dict[tuple[str, str], ProbeResult]:
    """One result per (vault name, vantage): the last one the scan recorded."""
    return {(probe.vault_name.lower(), probe.vantage): probe for probe in probes}


def _by_vault(items: Iterable[T], *, key: Callable[[T], str]) -> dict[str, list[T]]:
    grouped: dict[str, list[T]] = {}
    for item in items:
        grouped.setdefault(key(item).lower(), []).append(item)
    return grouped


def _vault_errors(
    errors: Sequence[ScanError],
    positions: Mapping[str, list[int]],
    posture: VaultPosture | StorageAccountPosture,
) -> list[ScanError]:
    """The errors scoped to the resource's key or name, in the order the scan recorded them."""
    scopes = dict.fromkeys((posture.key, posture.name.lower()))
    found = sorted(index for scope in scopes for index in positions.get(scope, ()))
    return [errors[index] for index in found]


def _vault_entry(
    posture: VaultPosture,
    *,
    policy: VaultPolicy,
    columns: list[tuple[Vantage, bool]],
    probes: Mapping[tuple[str, str], ProbeResult],
    findings: list[Finding],
    changes: list[FindingChange],
    evidence: list[LogEvidence],
    perimeter_evidence: list[PerimeterLogEvidence],
    errors: list[ScanError],
    marked_incomplete: bool,
) -> dict[str, Any]:
    vault_subnets = tuple(rule.subnet_id for rule in posture.virtual_network_rules)
    reachability = {
        vantage.name: _cell(
            policy.expectation_for(vantage, vault_subnets=vault_subnets)
            if configured
            else VantageExpectation(),
            probes.get((posture.name.lower(), vantage.name)),
        )
        for vantage, configured in columns
    }
    notes = _evidence_notes(marked_incomplete, evidence)
    notes.extend(
        f"perimeter logs of workspace {item.workspace_id} incomplete: {'; '.join(item.notes) or 'no reason given'}"
        for item in perimeter_evidence
        if not item.complete
    )
    if perimeter_may_govern(posture):
        # A perimeter's resources log only to workspaces inside it: no rows says nothing.
        empty = [item.workspace_id for item in evidence if item.complete and not item.activity]
        empty += [item.workspace_id for item in perimeter_evidence if item.complete and not item.access]
        notes.extend(
            f"no log rows in workspace {workspace}: a perimeter governs the vault and the workspace may sit "
            "outside it; no evidence, not no access"
            for workspace in dict.fromkeys(empty)
        )
    notes.extend(f"{error.source} error: {error.message}" for error in errors)
    return {
        "name": posture.name,
        "id": posture.id,
        "subscription_id": posture.subscription_id,
        "resource_group": posture.resource_group,
        "present": True,
        "mode": policy.mode,
        "baseline_entry": policy.entry,
        "tags": dict(posture.tags),
        "config": _config_summary(posture, policy),
        "reachability": reachability,
        "findings": _findings(findings),
        "changes": _changes(changes),
        "logs": [_log_highlights(item) for item in evidence],
        "perimeter_logs": [_perimeter_log_highlights(item) for item in perimeter_evidence],
        "evidence": {"complete": not notes, "notes": notes},
    }


def _absent_vault_entry(
    sample: Finding, *, findings: list[Finding], changes: list[FindingChange], marked_incomplete: bool
) -> dict[str, Any]:
    notes = _evidence_notes(marked_incomplete, [])
    return {
        "name": sample.vault_name,
        "id": sample.vault_id,
        "subscription_id": None,
        "resource_group": None,
        "present": False,
        "mode": None,
        "baseline_entry": None,
        "tags": {},
        "config": None,
        "reachability": {},
        "findings": _findings(findings),
        "changes": _changes(changes),
        "logs": [],
        "perimeter_logs": [],
        "evidence": {"complete": not notes, "notes": notes},
    }


def _account_entry(
    account: StorageAccountPosture,
    *,
    policy: VaultPolicy,
    findings: list[Finding],
    changes: list[FindingChange],
    errors: list[ScanError],
    marked_incomplete: bool,
) -> dict[str, Any]:
    """A storage account as a vault is shown, with its own configuration summary. Storage has no
    reachability matrix in the report yet: its probes are not part of the scan (``reachability``
    stays empty rather than claiming a vantage point's view)."""
    notes = _evidence_notes(marked_incomplete, [])
    notes.extend(f"{error.source} error: {error.message}" for error in errors)
    return {
        "name": account.name,
        "id": account.id,
        "subscription_id": account.subscription_id,
        "resource_group": account.resource_group,
        "present": True,
        "mode": policy.mode,
        "baseline_entry": policy.entry,
        "tags": dict(account.tags),
        "config": _account_config_summary(account, policy),
        "reachability": {},
        "findings": _findings(findings),
        "changes": _changes(changes),
        "logs": [],
        "perimeter_logs": [],
        "evidence": {"complete": not notes, "notes": notes},
    }


def _account_config_summary(account: StorageAccountPosture, policy: VaultPolicy) -> dict[str, Any]:
    # Open to the public as ST001 judges it (effective exposure, perimeter included); None when that
    # cannot be known.
    exposure = effective_exposure(posture=account, policy=policy)
    return {
        "public_network_access": account.public_network_access.value,
        "network_acls_present": account.network_acls_present,
        "default_action": account.default_action.value,
        "bypass": sorted(member.value for member in account.bypass),
        "publicly_open": exposure.public,
        "perimeter": _perimeter_summary(account, exposure),
        "ip_rules": [
            {"value": rule.raw, "parsed": rule.value.parsed}
            for rule in (*account.ip_rules, *account.ipv6_rules)
        ],
        "subnets": [
            {"id": rule.subnet_id, "state": rule.state.value if rule.state else None}
            for rule in account.virtual_network_rules
        ],
        "resource_access_rules": [
            {"tenant_id": rule.tenant_id, "resource_id": rule.resource_id}
            for rule in account.resource_access_rules
        ],
        "private_endpoints": [
            {
                "id": pec.id,
                "private_endpoint_id": pec.connection.private_endpoint_id,
                "subresource": pec.subresource.value if pec.subresource else None,
                "status": pec.connection.status,
                "approved": pec.connection.approved,
                "provisioning_state": pec.connection.provisioning_state,
            }
            for pec in account.private_endpoint_connections
        ],
        "subresources": sorted(subresource.value for subresource in account.primary_endpoints),
        "allow_blob_public_access": account.blob_public_access_allowed,
        "allow_shared_key_access": account.shared_key_allowed,
        "minimum_tls_version": account.effective_minimum_tls.value,
        "https_only": account.https_only,
        "last_modified_by": account.last_modified_by,
        "last_modified_at": to_jsonable(account.last_modified_at),
        "problems": list(account.problems),
    }


def _evidence_notes(marked_incomplete: bool, evidence: list[LogEvidence]) -> list[str]:
    notes = []
    if marked_incomplete:
        notes.append("evidence incomplete this scan: earlier findings stay open until it is complete")
    for item in evidence:
        if not item.complete:
            detail = "; ".join(item.notes) or "no reason given"
            notes.append(f"logs of workspace {item.workspace_id} incomplete: {detail}")
    return notes


def _cell(expected: VantageExpectation, probe: ProbeResult | None) -> dict[str, Any]:
    observed_reach = probe.verdict if probe else Verdict.NOT_RUN
    observed_dns = _observed_dns(probe)
    reach_state = _reach_state(expected.reach, observed_reach)
    dns_state = _dns_state(expected.dns, observed_dns)
    sides = {reach_state, dns_state}
    if CONTRADICTED in sides:
        state = CONTRADICTED
    elif NO_EVIDENCE in sides:
        state = NO_EVIDENCE
    elif MET in sides:
        state = MET
    else:
        state = NOT_EXPECTED
    return {
        "probed": probe is not None,
        "expected_reach": expected.reach,
        "observed_reach": observed_reach.value,
        "reach_state": reach_state,
        "expected_dns": expected.dns,
        "observed_dns": observed_dns,
        "dns_state": dns_state,
        "seen_address": probe.seen_address if probe else None,
        "seen_address_private": probe.seen_address_private if probe else None,
        "detail": _probe_detail(probe),
        "state": state,
        # True only when the baseline expects something here and the evidence shows it.
        "ok": state == MET,
    }


def _observed_dns(probe: ProbeResult | None) -> str:
    if probe is None or probe.dns is None or not probe.dns.answered:
        return "none"
    return "private" if probe.dns.resolves_private else "public"


def _reach_state(expected: Reach | None, observed: Verdict) -> str:
    if expected is None:
        return NOT_EXPECTED
    if observed is Verdict.ADMITTED:
        return MET if expected == Reach.ADMITTED else CONTRADICTED
    if observed.refused:
        return MET if expected == Reach.REFUSED else CONTRADICTED
    # A workload that must reach its vault and cannot is a failure; an outsider that cannot
    # connect at all proves nothing about the firewall.
    if observed is Verdict.UNREACHABLE and expected == Reach.ADMITTED:
        return CONTRADICTED
    return NO_EVIDENCE


def _dns_state(expected: DnsAnswer | None, observed: str) -> str:
    if expected is None:
        return NOT_EXPECTED
    if observed == "none":
        return NO_EVIDENCE
    return MET if observed == expected else CONTRADICTED


def _probe_detail(probe: ProbeResult | None) -> str | None:
    """The decisive word from the probe: the vantage's fault, the refusal's code, a DNS error."""
    if probe is None:
        return None
    if probe.vantage_error:
        return probe.vantage_error
    if probe.data_plane and probe.data_plane.error_code:
        plane = probe.data_plane
        return f"{plane.error_code} ({plane.inner_code})" if plane.inner_code else plane.error_code
    for step_error in (
        probe.dns.error if probe.dns else None,
        probe.tls.error if probe.tls else None,
        probe.data_plane.message if probe.data_plane else None,
    ):
        if step_error:
            return step_error
    return None


def _config_summary(posture: VaultPosture, policy: VaultPolicy) -> dict[str, Any]:
    # Open to the public as KV001 judges it: a perimeter can close an open firewall or re-open a
    # vault whose public access is Disabled; None when that cannot be known (an unreadable association).
    exposure = effective_exposure(posture=posture, policy=policy)
    return {
        "public_network_access": posture.public_network_access,
        "network_acls_present": posture.network_acls_present,
        "default_action": posture.default_action,
        "bypass": posture.bypass,
        "publicly_open": exposure.public,
        "firewall_open": posture.publicly_open,
        "perimeter": _perimeter_summary(posture, exposure),
        "ip_rules": [{"value": rule.raw, "parsed": rule.parsed} for rule in posture.ip_rules],
        "subnets": [rule.subnet_id for rule in posture.virtual_network_rules],
        "private_endpoints": [
            {
                "id": connection.id,
                "private_endpoint_id": connection.private_endpoint_id,
                "status": connection.status,
                "approved": connection.approved,
                "provisioning_state": connection.provisioning_state,
            }
            for connection in posture.private_endpoint_connections
        ],
        "last_modified_by": posture.last_modified_by,
        "last_modified_at": to_jsonable(posture.last_modified_at),
        "problems": list(posture.problems),
    }


def _perimeter_summary(posture: NetworkPosture, exposure: EffectiveExposure) -> dict[str, Any]:
    """The resource's perimeter association and what it makes of inbound traffic (either service)."""
    association = posture.perimeter.association
    return {
        "lookup": posture.perimeter.lookup.value,
        "perimeter": association.perimeter_name if association else None,
        "profile": association.profile_name if association else None,
        "access_mode": association.access_mode_text if association else None,
        "access_rules_version": association.access_rules_version if association else None,
        "effective_inbound": exposure.inbound.value,
        "reason": exposure.reason,
        "error": exposure.error or posture.perimeter.error,
    }


def _findings(findings: list[Finding]) -> list[dict[str, Any]]:
    ordered = sorted(findings, key=lambda f: (f.suppressed, -f.severity.rank, f.rule_id, f.subject))
    return [
        {
            "id": finding.id,
            "rule": finding.rule_id,
            "severity": finding.severity.value,
            "title": finding.title,
            "subject": finding.subject,
            "summary": finding.summary,
            "remediation": finding.remediation,
            "suppressed": finding.suppressed,
            "suppression": (
                {
                    "reason": finding.suppression.reason,
                    "owner": finding.suppression.owner,
                    "expires": to_jsonable(finding.suppression.expires),
                }
                if finding.suppression
                else None
            ),
        }
        for finding in ordered
    ]


_CHANGE_ORDER = {
    ChangeKind.OPENED: 0,
    ChangeKind.REOPENED: 1,
    ChangeKind.CONFIRMED: 2,
    ChangeKind.CHANGED: 3,
    ChangeKind.RESOLVED: 4,
}


def _changes(changes: list[FindingChange]) -> list[dict[str, Any]]:
    ordered = sorted(
        changes, key=lambda c: (_CHANGE_ORDER[c.kind], -c.finding.severity.rank, c.finding.rule_id)
    )
    return [
        {
            "kind": change.kind.value,
            "rule": change.finding.rule_id,
            "severity": change.finding.severity.value,
            "previous_severity": change.previous_severity.value if change.previous_severity else None,
            "title": change.finding.title,
            "subject": change.finding.subject,
            "summary": change.finding.summary,
            "confirmed_by": change.confirmed_by,
        }
        for change in ordered
    ]


def _log_highlights(evidence: LogEvidence) -> dict[str, Any]:
    activity = evidence.activity
    top = sorted(activity, key=lambda a: (-a.count, a.caller_address, a.outcome.value))[:TOP_CALLERS]
    public = [a for a in activity if not a.address_private]
    return {
        "workspace_id": evidence.workspace_id,
        "window_start": to_jsonable(evidence.window_start),
        "window_end": to_jsonable(evidence.window_end),
        "complete": evidence.complete,
        "notes": list(evidence.notes),
        "requests": sum(a.count for a in activity),
        "private_requests": sum(a.count for a in activity if a.address_private),
        "public_admitted": sum(a.count for a in public if a.outcome is Outcome.ADMITTED),
        "public_refused": sum(a.count for a in public if a.outcome is not Outcome.ADMITTED),
        "callers": len({a.caller_address for a in activity}),
        "top_callers": [
            {
                "address": a.caller_address,
                "private": a.address_private,
                "outcome": a.outcome.value,
                "auth_type": a.address_auth_type,
                "identity": a.identity,
                "count": a.count,
                "last_seen": to_jsonable(a.last_seen),
            }
            for a in top
        ],
    }


def _perimeter_log_highlights(evidence: PerimeterLogEvidence) -> dict[str, Any]:
    """What the perimeter logged of the vault: who its rules let in from the public side, who the
    vault's own rules did (Learning mode), who was denied, and the busiest sources."""
    access = evidence.access
    top = sorted(access, key=lambda a: (-a.count, a.source_address, a.category.value))[:TOP_CALLERS]

    def requests(*categories: PerimeterLogCategory) -> int:
        return sum(a.count for a in access if a.category in categories)

    return {
        "workspace_id": evidence.workspace_id,
        "window_start": to_jsonable(evidence.window_start),
        "window_end": to_jsonable(evidence.window_end),
        "complete": evidence.complete,
        "notes": list(evidence.notes),
        "requests": sum(a.count for a in access),
        "public_admitted_by_perimeter_rules": requests(PerimeterLogCategory.PUBLIC_PERIMETER_RULES_ALLOWED),
        "public_admitted_by_vault_rules": requests(PerimeterLogCategory.PUBLIC_RESOURCE_RULES_ALLOWED),
        "public_denied": sum(a.count for a in access if a.category.public and not a.category.admitted),
        "not_public": sum(a.count for a in access if not a.category.public),
        "top_sources": [
            {
                "source": a.source_address or a.source_app_id,
                "category": a.category.value,
                "matched_rule": a.matched_rule,
                "app_id": a.source_app_id,
                "count": a.count,
                "last_seen": to_jsonable(a.last_seen),
            }
            for a in top
        ],
    }


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


def render_html(document: Mapping[str, Any]) -> str:
    """The document as one self-contained HTML page; ``ReportDocumentError`` names what is wrong."""
    if not isinstance(document, Mapping):
        raise ReportDocumentError("a report document is a JSON object")
    schema = document.get("schema")
    if schema != SCHEMA:
        raise ReportDocumentError(f"schema is {schema!r}, expected {SCHEMA!r}")
    try:
        return _environment().get_template("report.html.j2").render(doc=document, view=_page(document))
    except jinja2.UndefinedError as exc:
        raise ReportDocumentError(f"the document lacks a field the report shows: {exc.message}") from None
    except KeyError as exc:  # read by _page before the template
        raise ReportDocumentError(f"the document lacks a field the report shows: {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ReportDocumentError(f"a field of the document has the wrong shape: {exc}") from None


_SEVERITY_ORDER = tuple(severity.value for severity in sorted(Severity, key=lambda s: s.rank, reverse=True))
_BUCKETS = (*_SEVERITY_ORDER, CLEAN)


def _page(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the page needs beyond the document: the vaults in the order shown (attention first),
    each with what the filter reads, the overview by subscription, and the errors no vault owns."""
    units = []
    owned: set[int] = set()
    by_scope: dict[str, list[int]] = {}
    for position, error in enumerate(document["errors"]):
        by_scope.setdefault(str(error["scope"]).lower(), []).append(position)
    for vault in document["vaults"]:
        open_severities = [f["severity"] for f in vault["findings"] if not f["suppressed"]]
        worst = min(open_severities, key=_SEVERITY_ORDER.index, default=CLEAN)
        mismatches = sum(1 for cell in vault["reachability"].values() if cell["state"] == CONTRADICTED)
        incomplete = not vault["evidence"]["complete"]
        positions = sorted(
            {*by_scope.get(str(vault["id"]).lower(), ()), *by_scope.get(vault["name"].lower(), ())}
        )
        owned.update(positions)
        units.append(
            {
                "vault": vault,
                "subscription": vault["subscription_id"] or "(not in the inventory)",
                "severity": worst,
                "mismatches": mismatches,
                "incomplete": incomplete,
                "attention": bool(open_severities or vault["changes"] or mismatches or incomplete),
                "errors": [document["errors"][position] for position in positions],
            }
        )
    # Stable: within a severity and a subscription, the vaults stay in the scan's order.
    units.sort(key=lambda u: (not u["attention"], _BUCKETS.index(u["severity"]), u["subscription"]))
    for index, unit in enumerate(units):
        unit["index"] = index  # its place in that order: what the page's script pages by
    overview: dict[str, dict[str, int]] = {}
    for unit in units:
        row = overview.setdefault(
            unit["subscription"], dict.fromkeys((*_BUCKETS, "mismatch", "incomplete"), 0)
        )
        row[unit["severity"]] += 1
        row["mismatch"] += bool(unit["mismatches"])
        row["incomplete"] += unit["incomplete"]
    return {
        "units": units,
        "paged": len(units) > PAGE_SIZE,
        "page_size": PAGE_SIZE,
        "attention": sum(1 for unit in units if unit["attention"]),
        "buckets": _BUCKETS,
        # The subscriptions with the most severe vaults first.
        "overview": sorted(overview.items(), key=lambda item: ([-item[1][b] for b in _BUCKETS], item[0])),
        "unowned_errors": [e for position, e in enumerate(document["errors"]) if position not in owned],
    }


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.outputs", "templates"),
        # The template's name ends in .j2, so extension-based selection would not switch it on.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["leaf"] = _leaf
    return environment


def _when(value: str | None) -> str:
    """An ISO 8601 time as people read it, in UTC."""
    if not value:
        return "—"
    try:
        moment = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _leaf(resource_id: str | None) -> str:
    """The last segment of a resource id (a subnet's name)."""
    if not resource_id:
        return ""
    return str(resource_id).rstrip("/").rsplit("/", 1)[-1]
