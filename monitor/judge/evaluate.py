"""Facts plus baseline in, findings out: pure, no I/O, no clock (``today`` is passed in)."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from monitor.judge.rules.base import Facts, Rule
from monitor.judge.rules.catalog import CATALOG
from monitor.model import Finding, Suppression


@dataclass(frozen=True)
class ExpiredSuppression:
    suppression: Suppression
    vault_id: str
    rule_id: str


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    # Suppressions that would have applied but are past their expiry: they no longer suppress,
    # and the owner needs telling.
    expired_suppressions: list[ExpiredSuppression] = field(default_factory=list)


def evaluate(facts: Iterable[Facts], *, today: dt.date, rules: Iterable[Rule[Any]] = CATALOG) -> Evaluation:
    """Each resource judged by the rules of its service (a vault's ``VaultFacts`` by Key Vault's, an
    account's ``StorageFacts`` by storage's); its findings carry its id and name as ``vault_id`` and
    ``vault_name``, the store's keys for any resource."""
    rules = tuple(rules)
    result = Evaluation()
    for vault in facts:
        for rule in rules:
            if rule.service is not vault.service:
                continue
            for hit in rule.check(vault):
                finding = Finding(
                    rule_id=rule.id,
                    severity=hit.severity or rule.severity,
                    title=rule.title,
                    vault_id=vault.posture.id,
                    vault_name=vault.posture.name,
                    subject=hit.subject,
                    evidence=dict(hit.evidence),
                    summary=hit.summary,
                    remediation=rule.remediation_for(vault.posture, hit.subject),
                )
                suppression = _matching_suppression(vault, finding)
                if suppression is None:
                    result.findings.append(finding)
                elif suppression.expires is not None and suppression.expires < today:
                    result.findings.append(finding)
                    result.expired_suppressions.append(
                        ExpiredSuppression(suppression, finding.vault_id, rule.id)
                    )
                else:
                    result.findings.append(replace(finding, suppression=suppression))
    return result


def _matching_suppression(vault: Facts, finding: Finding) -> Suppression | None:
    for suppression in vault.policy.suppressions:
        if suppression.rule.upper() != finding.rule_id and suppression.rule != "*":
            continue
        pattern = suppression.vault_pattern.lower()
        if fnmatch.fnmatchcase(vault.posture.name.lower(), pattern) or fnmatch.fnmatchcase(
            vault.posture.key, pattern
        ):
            return suppression
    return None
