"""ARM JSON of any shape through the normaliser and on into the rules: a posture judged into
findings (or none), or ``InvalidVault``; never another exception, never a hang.

tests/inventory/test_normalise_fuzz.py checks the normaliser's own contract; here the postures go
on through evaluation, drift against a previous posture, and the walkthrough baseline, with the
hostile values of tests/fuzz/strategies.py (quoted and broken CIDRs, IPv6, mixed-case ids, huge
and exotic strings)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lab.services import WALKTHROUGH_BASELINE
from monitor.config.baseline import Baseline, load_baseline
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import Finding, VaultPosture
from monitor.sources.keyvault.normalise import InvalidVault, normalise_vault
from tests.fuzz.conftest import PURE, tally
from tests.fuzz.strategies import any_json, vault_json

TODAY = dt.date(2026, 3, 1)
BASELINES = {
    "no baseline": Baseline.none(),
    "walkthrough baseline": load_baseline(WALKTHROUGH_BASELINE, known_rules=RULES_BY_ID.keys()),
}


def _posture(raw: Any) -> VaultPosture | None:
    try:
        posture = normalise_vault(raw)
    except InvalidVault as exc:
        assert str(exc).strip()
        return None
    assert posture.id.strip() and posture.name
    # A value Azure does not know is kept as written, and said so.
    for value, known in (
        (posture.default_action, ("Allow", "Deny")),
        (posture.bypass, ("AzureServices", "None")),
    ):
        assert value in known or any(repr(value) in p for p in posture.problems)
    assert all(isinstance(p, str) and p.strip() for p in posture.problems)
    return posture


def _check_finding(finding: Finding, posture: VaultPosture) -> None:
    assert finding.rule_id and finding.title and finding.summary.strip()
    assert finding.vault_id == posture.id
    assert len(finding.id) == 32


def _judge(posture: VaultPosture, previous: VaultPosture | None, baseline: Baseline) -> list[Finding]:
    facts = VaultFacts(
        posture=posture,
        policy=baseline.policy_for(posture),
        previous=previous,
        first_scan_of_scope=previous is None,
        logs_refused_threshold=baseline.logs_refused_threshold,
    )
    findings = evaluate([facts], today=TODAY).findings
    for finding in findings:
        _check_finding(finding, posture)
    return findings


@PURE
@given(raw=vault_json, previous=vault_json, baseline=st.sampled_from(sorted(BASELINES)))
def test_vault_shaped_json_is_judged_or_refused(raw: Any, previous: Any, baseline: str) -> None:
    posture = _posture(raw)
    if posture is None:
        tally("normaliser + rules (vault-shaped)", "InvalidVault")
        return
    before = _posture(previous)
    findings = _judge(posture, before, BASELINES[baseline])
    outcome = "posture with problems" if posture.problems else "clean posture"
    tally("normaliser + rules (vault-shaped)", f"{outcome}, {'findings' if findings else 'no finding'}")


@PURE
@given(raw=any_json)
def test_any_json_is_judged_or_refused(raw: Any) -> None:
    posture = _posture(raw)
    if posture is None:
        tally("normaliser + rules (any JSON)", "InvalidVault")
        return
    findings = _judge(posture, None, BASELINES["walkthrough baseline"])
    tally("normaliser + rules (any JSON)", "judged with findings" if findings else "judged, no finding")
