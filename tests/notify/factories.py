"""Findings and changes for notification tests (plain records, nothing faked)."""

from __future__ import annotations

import datetime as dt

from monitor.model import ChangeKind, Finding, FindingChange, Severity

SCAN_TIME = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


def vault_id(name: str, *, subscription: str = "11111111-2222-3333-4444-555555555555") -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/rg-{name}/providers/Microsoft.KeyVault/vaults/{name}"
    )


def change(
    kind: ChangeKind,
    *,
    vault: str = "kv-prod-1",
    rule: str = "KV001",
    severity: Severity = Severity.HIGH,
    previous: Severity | None = None,
    subject: str = "",
    summary: str = "internet vantage admitted",
    title: str = "Public network access is open to every address",
    remediation: str | None = None,
) -> FindingChange:
    finding = Finding(
        rule_id=rule,
        severity=severity,
        title=title,
        vault_id=vault_id(vault),
        vault_name=vault,
        subject=subject,
        summary=summary,
        remediation=remediation
        if remediation is not None
        else f"az keyvault update --name {vault} --resource-group rg-{vault} --default-action Deny",
    )
    return FindingChange(kind=kind, finding=finding, previous_severity=previous)


def mixed_changes() -> list[FindingChange]:
    """Every kind of change over three vaults and every severity."""
    return [
        change(ChangeKind.OPENED, vault="kv-prod-1", rule="KV001", severity=Severity.HIGH),
        change(
            ChangeKind.REOPENED,
            vault="kv-prod-1",
            rule="KV201",
            severity=Severity.CRITICAL,
            subject="20.1.2.3",
            title="Public caller reached the vault",
            summary="caller 20.1.2.3 admitted 42 times",
        ),
        change(
            ChangeKind.CHANGED,
            vault="kv-prod-2",
            rule="KV003",
            severity=Severity.HIGH,
            previous=Severity.MEDIUM,
            subject="0.0.0.0/1",
            title="IP rule admits too much",
            summary="ip rule 0.0.0.0/1 admits 2147483648 addresses",
        ),
        change(
            ChangeKind.RESOLVED,
            vault="kv-dev-1",
            rule="KV009",
            severity=Severity.MEDIUM,
            subject="pe-dev",
            title="Private endpoint connection is not healthy",
            summary="connection pe-dev is Pending",
        ),
        change(
            ChangeKind.OPENED,
            vault="kv-dev-1",
            rule="KV005",
            severity=Severity.LOW,
            summary="10.0.0.0/8 admits nothing",
        ),
        change(
            ChangeKind.OPENED,
            vault="kv-dev-1",
            rule="KV013",
            severity=Severity.INFO,
            summary="no baseline entry",
        ),
    ]


def many_changes(count: int, *, vaults: int = 40, text_size: int = 300) -> list[FindingChange]:
    """A flood: ``count`` changes over ``vaults`` vaults with long texts (markup characters included)."""
    kinds = (ChangeKind.OPENED, ChangeKind.CHANGED, ChangeKind.RESOLVED, ChangeKind.REOPENED)
    severities = tuple(Severity)
    result = []
    for index in range(count):
        vault = f"kv-flood-{index % vaults:03d}"
        result.append(
            change(
                kinds[index % len(kinds)],
                vault=vault,
                rule=f"KV{100 + index % 7:03d}",
                severity=severities[index % len(severities)],
                previous=Severity.LOW if kinds[index % len(kinds)] is ChangeKind.CHANGED else None,
                subject=f"20.0.{index // 256}.{index % 256}",
                summary=(f"caller 20.0.{index // 256}.{index % 256} admitted {index} times <&> *_` " * 20)[
                    :text_size
                ],
            )
        )
    return result
