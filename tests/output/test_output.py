"""Rendering findings: JSON, table, Markdown and SARIF (checked by Microsoft's SARIF Multitool)."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.judge.evaluate import ExpiredSuppression
from monitor.judge.rules.catalog import CATALOG
from monitor.model import Finding, ScanError, Severity, Suppression
from monitor.outputs.formats import (
    FINGERPRINT_KEY,
    SourceLocation,
    at_or_above,
    plain_table,
    render_table,
    summary,
    to_json,
    to_markdown,
    to_sarif,
    write_report,
)

from .conftest import Validate

SUB = "00000000-0000-0000-0000-00000000a001"


def vault_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg-walkthrough/providers/Microsoft.KeyVault/vaults/{name}"


def finding(
    rule: str, severity: Severity, name: str = "kv-se-demo", subject: str = "", **extra: Any
) -> Finding:
    return Finding(
        rule_id=rule,
        severity=severity,
        title=f"title of {rule}",
        vault_id=vault_id(name),
        vault_name=name,
        subject=subject,
        evidence=extra.pop("evidence", {"default_action": "Allow"}),
        summary=extra.pop("summary", f"summary of {rule}"),
        remediation=f"az keyvault update --name {name} --resource-group rg-walkthrough --default-action Deny",
        **extra,
    )


LATER = Suppression(
    rule="KV005",
    vault_pattern="kv-*",
    reason="known",
    owner="team@contoso.example",
    expires=dt.date(2030, 1, 1),
)
EXPIRED = ExpiredSuppression(
    suppression=Suppression(
        rule="KV002",
        vault_pattern="kv-se-*",
        reason="migration",
        owner="ops@contoso.example",
        expires=dt.date(2026, 1, 1),
    ),
    vault_id=vault_id("kv-se-demo"),
    rule_id="KV002",
)
ERROR = ScanError(
    source="arm", scope="00000000-0000-0000-0000-0000000000ff", message="access denied", code="403"
)

FINDINGS = [
    finding("KV002", Severity.HIGH),
    finding("KV005", Severity.LOW, subject="10.0.0.0/8", suppression=LATER),
    finding(
        "KV003",
        Severity.CRITICAL,
        name="kv-pl-demo",
        subject="0.0.0.0/0",
        evidence={
            "network": ipaddress.ip_network("0.0.0.0/0"),
            "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        },
    ),
    finding("KV001", Severity.HIGH),
    finding("KV013", Severity.INFO, name="kv-other", summary="a | pipe\nand a newline"),
]


# -- summary, ordering, exit threshold -----------------------------------------------------------------


def test_summary_counts_active_findings_by_severity() -> None:
    assert summary(FINDINGS, errors=[ERROR], expired=[EXPIRED]) == {
        "critical": 1,
        "high": 2,
        "medium": 0,
        "low": 0,
        "info": 1,
        "suppressed": 1,
        "errors": 1,
        "expired_suppressions": 1,
    }


def test_at_or_above_ignores_suppressed() -> None:
    assert {f.rule_id for f in at_or_above(FINDINGS, Severity.HIGH)} == {"KV001", "KV002", "KV003"}
    assert {f.rule_id for f in at_or_above(FINDINGS, Severity.LOW)} == {"KV001", "KV002", "KV003"}
    assert {f.rule_id for f in at_or_above(FINDINGS, Severity.INFO)} == {"KV001", "KV002", "KV003", "KV013"}


# -- JSON -----------------------------------------------------------------------------------------------


def test_json_shape_and_order() -> None:
    document = to_json(FINDINGS, errors=[ERROR], expired=[EXPIRED])
    json.dumps(document)  # plain JSON all the way down
    assert [f["rule"] for f in document["findings"]] == ["KV003", "KV001", "KV002", "KV013", "KV005"]
    first = document["findings"][0]
    assert set(first) >= {
        "rule",
        "severity",
        "vault",
        "vault_id",
        "title",
        "evidence",
        "summary",
        "remediation",
        "subject",
        "id",
        "suppressed",
    }
    assert first["evidence"] == {"network": "0.0.0.0/0", "when": "2026-01-01T00:00:00Z"}
    assert first["id"] == FINDINGS[2].id and first["vault_id"] == vault_id("kv-pl-demo")
    suppressed = document["findings"][-1]
    assert suppressed["suppressed"] is True
    assert suppressed["suppression"] == {
        "reason": "known",
        "owner": "team@contoso.example",
        "expires": "2030-01-01",
    }
    assert document["errors"] == [
        {"source": "arm", "scope": ERROR.scope, "message": "access denied", "code": "403"}
    ]
    assert document["expired_suppressions"] == [
        {
            "rule": "KV002",
            "vault_id": vault_id("kv-se-demo"),
            "vault_pattern": "kv-se-*",
            "reason": "migration",
            "owner": "ops@contoso.example",
            "expires": "2026-01-01",
        }
    ]
    assert document["summary"]["critical"] == 1


# -- table ----------------------------------------------------------------------------------------------


def test_plain_table_is_aligned_and_has_no_escapes() -> None:
    text = plain_table(FINDINGS, errors=[ERROR], expired=[EXPIRED])
    lines = text.splitlines()
    assert lines[0].split() == ["SEVERITY", "RULE", "VAULT", "FINDING"]
    column = lines[0].index("RULE")
    assert all(line[column : column + 3] == "KV0" for line in lines[1:6])
    assert lines[1].startswith("critical ") and "low(suppressed)" in lines[5]
    assert "\x1b" not in text
    assert "4 findings (1 critical, 2 high, 1 info); 1 suppressed" in text
    assert "error: arm 00000000-0000-0000-0000-0000000000ff: access denied (403)" in text
    assert "expired suppression: KV002 on" in text


def test_plain_table_without_findings() -> None:
    assert plain_table([]).startswith("No findings.\n\n0 findings")


def test_render_table_uses_rich_on_a_terminal_and_plain_text_in_a_pipe() -> None:
    terminal = io.StringIO()
    render_table(FINDINGS, stream=terminal, terminal=True)
    assert "\x1b[" in terminal.getvalue() and "┃" in terminal.getvalue()
    pipe = io.StringIO()
    render_table(FINDINGS, stream=pipe, terminal=False)
    assert pipe.getvalue() == plain_table(FINDINGS)


# -- Markdown -------------------------------------------------------------------------------------------


def test_markdown_table_escapes_cells() -> None:
    text = to_markdown(FINDINGS, errors=[ERROR], expired=[EXPIRED])
    assert text.startswith("# kvmon findings\n\n**4 findings (1 critical, 2 high, 1 info); 1 suppressed**")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Severity | Rule | Vault | Finding | Fix |"
    assert len(rows) == 1 + len(FINDINGS)
    other = next(row for row in rows if "KV013" in row)
    assert "a \\| pipe and a newline" in other
    # Five cells per row: the escaped pipe does not split a cell.
    assert all(len(re.split(r"(?<!\\)\|", row)) == 7 for row in rows), rows
    assert "## Errors" in text and "## Expired suppressions" in text
    assert "low (suppressed)" in text


# -- SARIF ----------------------------------------------------------------------------------------------


def _sarif(**kwargs: Any) -> dict[str, Any]:
    return to_sarif(FINDINGS, errors=[ERROR], expired=[EXPIRED], **kwargs)


def test_sarif_rules_cover_the_catalog_with_help() -> None:
    driver = _sarif()["runs"][0]["tool"]["driver"]
    assert [r["id"] for r in driver["rules"]] == [rule.id for rule in CATALOG]
    kv001 = driver["rules"][[r.id for r in CATALOG].index("KV001")]
    assert kv001["helpUri"].startswith("https://learn.microsoft.com/")
    assert "az keyvault update" in kv001["help"]["text"] and "```bicep" in kv001["help"]["markdown"]
    assert kv001["defaultConfiguration"]["level"] == "error"
    assert kv001["properties"]["security-severity"] == "8.0"
    assert driver["name"] == "kvmon" and driver["version"]


def test_sarif_results_locations_fingerprints_and_suppressions() -> None:
    sources = {
        vault_id("kv-se-demo").lower(): SourceLocation(
            uri="examples/vaults/kv-se-demo.json", start_line=7, end_line=7
        )
    }
    run = _sarif(sources=sources, source_root="file:///work/repo/")["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["KV003", "KV001", "KV002", "KV013", "KV005"]
    for result, expected in zip(results, ["error", "error", "error", "note", "note"], strict=True):
        assert result["level"] == expected
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    kv001 = results[1]
    assert kv001["partialFingerprints"] == {FINGERPRINT_KEY: FINDINGS[3].id}
    [location] = kv001["locations"]
    assert location["logicalLocations"][0]["fullyQualifiedName"] == vault_id("kv-se-demo")
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "examples/vaults/kv-se-demo.json", "uriBaseId": "SRCROOT"},
        "region": {"startLine": 7, "endLine": 7},
    }
    assert run["originalUriBaseIds"] == {"SRCROOT": {"uri": "file:///work/repo/"}}
    assert "physicalLocation" not in results[0]["locations"][0]  # kv-pl-demo: no source given
    assert results[-1]["suppressions"][0]["status"] == "accepted"
    notifications = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["level"] for n in notifications] == ["error", "warning"]


@pytest.mark.node
def test_sarif_passes_the_multitool_and_the_schema(
    tmp_path: Path, sarif_multitool: Validate, sarif_schema_errors: Callable[[Any], list[str]]
) -> None:
    documents = {
        "from-files.sarif": _sarif(
            sources={
                vault_id("kv-se-demo").lower(): SourceLocation(
                    uri="examples/vaults/kv-se-demo.json", start_line=7, end_line=7
                ),
                vault_id("kv-pl-demo").lower(): SourceLocation(
                    uri="file:///tmp/elsewhere/kv-pl-demo.json", end_line=40
                ),
            },
            source_root=tmp_path.as_uri() + "/",
        ),
        "from-arm.sarif": _sarif(),  # a live scan: logical locations only
        "empty.sarif": to_sarif([]),
    }
    for name, document in documents.items():
        assert sarif_schema_errors(document) == [], name
        path = tmp_path / name
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        assert sarif_multitool(path) == [], name


@pytest.mark.node
def test_the_validation_harness_sees_problems(
    tmp_path: Path, sarif_multitool: Validate, sarif_schema_errors: Callable[[Any], list[str]]
) -> None:
    """The checks above can fail: a broken rule index and an unknown level are caught."""
    document = to_sarif(FINDINGS[:1])
    document["runs"][0]["results"][0]["ruleIndex"] = 999
    path = tmp_path / "broken.sarif"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert any("SARIF1009" in problem for problem in sarif_multitool(path))
    document["runs"][0]["results"][0]["level"] = "severe"
    assert any("'severe' is not one of" in error for error in sarif_schema_errors(document))


def test_write_report_dispatches_and_rejects_unknown_formats() -> None:
    for output_format, probe in (
        ("json", '"findings"'),
        ("sarif", '"2.1.0"'),
        ("markdown", "# kvmon"),
        ("table", "SEVERITY"),
    ):
        stream = io.StringIO()
        write_report(output_format, FINDINGS, stream=stream)
        assert probe in stream.getvalue()
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        write_report("xml", FINDINGS, stream=io.StringIO())
