"""The catalog: every rule of every family, validated, in ID order; ``kvmon rules`` prints it.

The families are named here, one argument each to ``build_catalog``: Key Vault's, then storage's.
Each rule is checked as the catalog is built, so a faulty one stops the import with ``InvalidRule``
naming it: the id is its service's prefix (KV, ST) and three digits, severity, source and category are their
enums, the rationale (the check's docstring) is there, the CLI remediation uses only
``REMEDIATION_PLACEHOLDERS``, every reference is an https URL, and no id is used twice. How to add a
rule: ``monitor.judge.rules.base``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from monitor.judge.rules.base import REMEDIATION_PLACEHOLDERS, Exposure, Rule, RuleCategory
from monitor.judge.rules.keyvault import config, drift, logs, perimeter, probes
from monitor.judge.rules.storage import config as storage_config
from monitor.judge.rules.storage import drift as storage_drift
from monitor.judge.rules.storage import logs as storage_logs
from monitor.judge.rules.storage import probes as storage_probes
from monitor.model import EvidenceSource, Service, Severity

# Each service's rule ids: its prefix and three digits.
RULE_PREFIXES: dict[Service, str] = {Service.KEYVAULT: "KV", Service.STORAGE: "ST"}


class InvalidRule(ValueError):
    """A rule that cannot join the catalog; the message names the rule, its check and the problem."""


def build_catalog(*families: Iterable[Rule[Any]]) -> tuple[Rule[Any], ...]:
    """The rules of the families, each validated, in ID order; ``InvalidRule`` for the first fault."""
    by_id: dict[str, Rule[Any]] = {}
    for family in families:
        for rule in family:
            _validate(rule)
            if rule.id in by_id:
                raise InvalidRule(f"{_named(rule)}: the id is already used by {_named(by_id[rule.id])}")
            by_id[rule.id] = rule
    return tuple(sorted(by_id.values(), key=lambda rule: rule.id))


def _validate(rule: Rule[Any]) -> None:
    problem = _problem(rule)
    if problem is not None:
        raise InvalidRule(f"{_named(rule)}: {problem}")


def _problem(rule: Rule[Any]) -> str | None:
    if not isinstance(rule.service, Service):
        return f"the service {rule.service!r} is not a Service"
    prefix = RULE_PREFIXES[rule.service]
    if not re.fullmatch(rf"{prefix}\d{{3}}", rule.id):
        return f"the id must be {prefix} and three digits"
    if not isinstance(rule.severity, Severity):
        return f"the severity {rule.severity!r} is not a Severity"
    if not isinstance(rule.source, EvidenceSource):
        return f"the source {rule.source!r} is not an EvidenceSource"
    if not isinstance(rule.category, RuleCategory):
        return f"the category {rule.category!r} is not a RuleCategory"
    if not isinstance(rule.exposure, Exposure):
        return f"the exposure {rule.exposure!r} is not an Exposure"
    if rule.exposure is Exposure.PROVEN and rule.source is not EvidenceSource.PROBES:
        return "only a rule that reads the probes proves an exposure"
    if rule.exposure is Exposure.CLAIMED and rule.source is not EvidenceSource.CONFIGURATION:
        return "only a rule that reads the configuration claims an exposure"
    if not rule.rationale:
        return "no rationale: write it as the check's docstring"
    try:
        fields = {
            name for _, name, _, _ in string.Formatter().parse(rule.remediation_cli) if name is not None
        }
    except ValueError as exc:
        return f"the CLI remediation is not a valid template ({exc})"
    unknown = sorted(fields - REMEDIATION_PLACEHOLDERS)
    if unknown:
        allowed = ", ".join(sorted(REMEDIATION_PLACEHOLDERS))
        return f"the CLI remediation uses unknown placeholders {unknown}: use {allowed} (double braces for a literal)"
    if not rule.references:
        return "no references: name at least one https URL"
    for reference in rule.references:
        parts = urlsplit(reference)
        if parts.scheme != "https" or not parts.netloc:
            return f"the reference {reference!r} is not an https URL"
    return None


def _named(rule: Rule[Any]) -> str:
    return f"rule {rule.id!r} ({rule.check.__module__}.{rule.check.__qualname__})"


CATALOG: tuple[Rule[Any], ...] = build_catalog(
    config.RULES,
    perimeter.RULES,
    probes.RULES,
    logs.RULES,
    drift.RULES,
    storage_config.RULES,
    storage_probes.RULES,
    storage_logs.RULES,
    storage_drift.RULES,
)
RULES_BY_ID: dict[str, Rule[Any]] = {rule.id: rule for rule in CATALOG}
