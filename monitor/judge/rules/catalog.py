"""The catalog: every rule of every family, in ID order; ``kvmon rules`` prints it."""

from __future__ import annotations

from monitor.judge.rules.base import Rule
from monitor.judge.rules.keyvault import config, drift, logs, probes


def _collect() -> tuple[Rule, ...]:
    rules = [*config.RULES, *probes.RULES, *logs.RULES, *drift.RULES]
    ids = [r.id for r in rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate rule ids in the catalog: {sorted(duplicates)}")
    return tuple(sorted(rules, key=lambda r: r.id))


CATALOG: tuple[Rule, ...] = _collect()
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in CATALOG}
