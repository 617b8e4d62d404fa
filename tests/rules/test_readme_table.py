"""The README's rule tables are the catalog: every rule has its row (id, severity, what it reads,
title), and no row names a rule the catalog does not have."""

from __future__ import annotations

import re

import pytest

from monitor.judge.rules.catalog import CATALOG, RULES_BY_ID
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("rule", CATALOG, ids=lambda rule: rule.id)
def test_every_rule_has_its_row(rule) -> None:  # type: ignore[no-untyped-def]
    assert f"| {rule.id} | {rule.severity.value} | {rule.category.value} | {rule.title} |" in README


def test_no_row_names_a_rule_the_catalog_lacks() -> None:
    rows = re.findall(r"^\| ((?:KV|ST)\d{3}) \|", README, flags=re.MULTILINE)
    assert sorted(rows) == sorted(RULES_BY_ID)
