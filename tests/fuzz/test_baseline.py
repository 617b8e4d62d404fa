"""Baselines as users write them, broken in every way: a ``Baseline`` that then judges vaults, or
one ``BaselineError`` line naming the file and the line; never another exception, never a hang."""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from lab.estate import walkthrough_estate
from monitor.config.baseline import Baseline, BaselineError, parse_baseline
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.sources.keyvault.normalise import normalise_vault
from tests.fuzz.conftest import PURE, tally
from tests.fuzz.strategies import baseline_document, exotic_text

SOURCE = "fuzz.yaml"
POSTURES = [normalise_vault(vault) for vault in walkthrough_estate().vaults.values()]

# Pieces of YAML syntax that parsers trip on: anchors, aliases, merge keys, tags (including the
# unsafe python ones), flow collections, directives, document markers, tabs, odd scalars.
_FRAGMENTS = [
    "version: 1",
    "entries:",
    "  - name: x",
    "    match: {name: kv-*}",
    "    mode: public",
    "&a",
    "*a",
    "<<: *a",
    "!!python/object/apply:os.system ['true']",
    "!!binary aGk=",
    "!!set {a, b}",
    "? complex key",
    "%YAML 1.1",
    "---",
    "...",
    "{",
    "[",
    "\t",
    "~",
    "0x1F",
    ".inf",
    "2026-02-30",
    "'unterminated",
    '"\\u00e9"',
    "|",
    ">-",
    "#",
]
yaml_text = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS) | exotic_text, max_size=12).map("\n".join),
    st.text(max_size=200),
)


def _judge_with(baseline: Baseline) -> int:
    facts = [
        VaultFacts(
            posture=p, policy=baseline.policy_for(p), logs_refused_threshold=baseline.logs_refused_threshold
        )
        for p in POSTURES
    ]
    return len(evaluate(facts, today=dt.date(2026, 3, 1)).findings)


def _check(text: str, target: str) -> None:
    try:
        baseline = parse_baseline(text, source=SOURCE, known_rules=RULES_BY_ID.keys())
    except BaselineError as exc:
        message = str(exc)
        assert message.startswith(f"{SOURCE}:"), message
        assert "\n" not in message, message
        tally(target, "BaselineError")
        return
    assert _judge_with(baseline) > 0  # the walkthrough's vaults are open: a baseline cannot hide that
    tally(target, "valid baseline, vaults judged")


@PURE
@given(document=baseline_document)
def test_a_broken_baseline_document_is_one_clear_error_or_a_baseline(document: Any) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "baseline loader (documents)")


@PURE
@given(text=yaml_text)
def test_any_text_is_one_clear_error_or_a_baseline(text: str) -> None:
    _check(text, "baseline loader (raw YAML text)")


def test_nested_aliases_are_answered_at_once() -> None:
    """A "billion laughs" document: nine levels of nine aliases (9^9 nodes when expanded)."""
    lines = ["version: 1", 'x0: &x0 ["a","a","a","a","a","a","a","a","a"]']
    lines += [f"x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 9)]
    try:
        parse_baseline("\n".join(lines), source=SOURCE, known_rules=RULES_BY_ID.keys())
    except BaselineError as exc:
        assert str(exc).startswith(f"{SOURCE}:2: x0: unknown key 'x0'")
    else:
        raise AssertionError("unknown keys were accepted")


def test_a_recursive_alias_is_a_clear_error() -> None:
    try:
        parse_baseline("version: 1\nentries: &a [*a]\n", source=SOURCE, known_rules=RULES_BY_ID.keys())
    except BaselineError as exc:
        assert str(exc).startswith(f"{SOURCE}:2: entries[0]:")
    else:
        raise AssertionError("a recursive entry list was accepted")


def test_a_control_character_is_named_with_its_line() -> None:
    try:
        parse_baseline("version: 1\nentries: []\x1f\n", source=SOURCE, known_rules=RULES_BY_ID.keys())
    except BaselineError as exc:
        assert str(exc) == f"{SOURCE}:2: character U+001F is not allowed in YAML"
    else:
        raise AssertionError("a control character was accepted")
