"""The catalog: what it refuses when it is built."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from monitor.judge.rules.base import Hit, Rule, RuleCategory, VaultFacts, rule
from monitor.judge.rules.catalog import InvalidRule, build_catalog
from monitor.model import EvidenceSource, Severity


@rule(
    id="KV900",
    severity=Severity.LOW,
    title="A rule for these tests",
    source=EvidenceSource.CONFIGURATION,
    category=RuleCategory.CONFIGURATION,
    remediation_cli="az keyvault show --name {name} --resource-group {resource_group}  # {subject}",
    remediation_bicep="// none",
    references=("https://learn.microsoft.com/azure/key-vault/general/network-security",),
)
def sample(facts: VaultFacts) -> Iterator[Hit]:
    """Why it matters, written over
    two lines of the docstring."""
    yield from ()


CHECK = f"{__name__}.sample"


def test_a_valid_rule_joins_with_its_docstring_as_a_one_line_rationale() -> None:
    assert build_catalog([sample]) == (sample,)
    assert sample.rationale == "Why it matters, written over two lines of the docstring."


def test_the_catalog_is_in_id_order_whatever_the_family_order() -> None:
    later = replace(sample, id="KV950")
    assert build_catalog([later], [sample]) == (sample, later)


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "id too short": ({"id": "KV90"}, "the id must be KV and three digits"),
    "id too long": ({"id": "KV9000"}, "the id must be KV and three digits"),
    "id lower case": ({"id": "kv900"}, "the id must be KV and three digits"),
    "id of another prefix": ({"id": "SA001"}, "the id must be KV and three digits"),
    "severity as text": ({"severity": "high"}, "the severity 'high' is not a Severity"),
    "source as text": ({"source": "probes"}, "the source 'probes' is not an EvidenceSource"),
    "category as text": ({"category": "drift"}, "the category 'drift' is not a RuleCategory"),
    "no rationale": ({"rationale": ""}, "no rationale: write it as the check's docstring"),
    "unknown placeholder": (
        {"remediation_cli": "az keyvault show --name {vault} --subscription {subscription}"},
        "the CLI remediation uses unknown placeholders ['vault']: use name, resource_group, "
        "subject, subscription (double braces for a literal)",
    ),
    "unbalanced brace": (
        {"remediation_cli": "az keyvault show --name {name"},
        "the CLI remediation is not a valid template (expected '}' before end of string)",
    ),
    "no references": ({"references": ()}, "no references: name at least one https URL"),
    "plain http": (
        {"references": ("http://learn.microsoft.com/azure/key-vault/",)},
        "the reference 'http://learn.microsoft.com/azure/key-vault/' is not an https URL",
    ),
    "no scheme": (
        {"references": ("learn.microsoft.com/azure/key-vault/",)},
        "the reference 'learn.microsoft.com/azure/key-vault/' is not an https URL",
    ),
    "no host": ({"references": ("https:///azure",)}, "the reference 'https:///azure' is not an https URL"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_faulty_rule_is_refused_naming_the_rule_its_check_and_the_problem(case: str) -> None:
    changes, problem = BAD[case]
    faulty = replace(sample, **changes)
    with pytest.raises(InvalidRule) as caught:
        build_catalog([faulty])
    assert str(caught.value) == f"rule {faulty.id!r} ({CHECK}): {problem}"


def test_a_check_without_docstring_has_no_rationale() -> None:
    def undocumented(facts: VaultFacts) -> Iterator[Hit]:
        yield from ()

    bare: Rule = rule(
        id="KV901",
        severity=Severity.INFO,
        title="No docstring",
        source=EvidenceSource.LOGS,
        category=RuleCategory.LOGS,
        remediation_cli="# nothing",
        remediation_bicep="// nothing",
        references=("https://learn.microsoft.com/azure/key-vault/general/logging",),
    )(undocumented)
    with pytest.raises(InvalidRule, match=r"^rule 'KV901' \(.*undocumented\): no rationale"):
        build_catalog([bare])


def test_literal_braces_in_a_remediation_are_allowed() -> None:
    literal = replace(sample, remediation_cli="az monitor diagnostic-settings create --logs '[{{\"a\":1}}]'")
    assert build_catalog([literal]) == (literal,)


def other(facts: VaultFacts) -> Iterator[Hit]:
    yield from ()


def test_an_id_used_twice_is_refused_naming_both_checks() -> None:
    twin = replace(sample, check=other)
    with pytest.raises(InvalidRule) as caught:
        build_catalog([sample], [twin])
    assert (
        str(caught.value)
        == f"rule 'KV900' ({__name__}.other): the id is already used by rule 'KV900' ({CHECK})"
    )
