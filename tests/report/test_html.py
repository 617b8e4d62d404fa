"""The HTML page: self-contained, escaped, and showing the matrix, findings and incomplete evidence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.outputs.report import ReportDocumentError, build_report_document, render_html
from tests.report.dom import ReportDom
from tests.report.scenario import GENERATED, HOSTILE, POLICIES, VANTAGES, walkthrough_report


def _document(*, fixed: bool = False) -> dict[str, Any]:
    report = walkthrough_report(fixed=fixed)
    # Stored and read back, as `kvmon report` gets it.
    return json.loads(
        json.dumps(
            build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)
        )
    )


def test_page_shows_matrix_findings_and_incomplete_evidence() -> None:
    page = ReportDom.parse(render_html(_document()))

    internet = page.cell("kv-se-demo", "internet")
    assert internet.startswith("✘ MISMATCH")
    assert "expected refused · DNS public" in internet
    assert "observed admitted · DNS public" in internet
    assert "seen as 127.30.0.5 (public)" in internet
    assert page.cell("kv-se-demo", "se-subnet").startswith("✔ as expected")
    assert "seen as 127.10.1.4 (private)" in page.cell("kv-se-demo", "se-subnet")
    assert page.cell("kv-se-demo", "spoke").startswith("? no evidence")
    assert "observed admitted · DNS public" in page.cell("kv-pl-demo", "spoke")
    assert len(page.cells) == 10

    assert page.finding_rules == ["KV001", "KV101", "KV201", "KV002", "KV008", "KV103", "KV004"]
    assert "Evidence incomplete" in page.text
    assert "Evidence incomplete for this vault" in page.text
    assert "query timed out after 30 s" in page.text
    assert "Changes since the last scan" in page.text
    assert "scan-20250314T093000Z-1a2b" in page.text
    assert "2025-03-14 09:30:00 UTC" in page.text


def test_step2_page_shows_refusals_and_resolutions() -> None:
    page = ReportDom.parse(render_html(_document(fixed=True)))

    internet = page.cell("kv-se-demo", "internet")
    assert internet.startswith("✔ as expected")
    assert "observed refused-firewall" in internet
    assert "Forbidden (ForbiddenByFirewall)" in internet
    assert "seen as 127.30.0.5 (public)" in internet
    assert re.search(r"✔ resolved kv-se-demo .*KV001", page.text)
    assert re.search(r"▲ opened kv-se-demo .*KV301", page.text)


def test_everything_user_controlled_is_escaped() -> None:
    html = render_html(_document())

    assert HOSTILE not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;kvmon&#39;)&lt;/script&gt;" in html
    # Shown as text in the tags, the finding summary and the error message.
    assert ReportDom.parse(html).text.count(HOSTILE) >= 3


def test_page_is_self_contained() -> None:
    html = render_html(_document())

    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html
    assert '<meta charset="utf-8">' in html


def test_complete_scan_says_so() -> None:
    report = walkthrough_report(fixed=True)
    report.errors.clear()
    report.incomplete.clear()
    report.evidence = [e for e in report.evidence if e.complete]
    document = build_report_document(report, vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED)

    text = ReportDom.parse(render_html(document)).text
    assert "Evidence complete" in text
    assert "Evidence incomplete" not in text and "evidence incomplete" not in text


def test_wrong_schema_is_refused() -> None:
    document = _document()
    document["schema"] = "kvmon.report/v0"
    with pytest.raises(ReportDocumentError, match=r"schema is 'kvmon.report/v0', expected 'kvmon.report/v1'"):
        render_html(document)


def test_missing_field_is_named() -> None:
    document = _document()
    del document["vaults"][0]["reachability"]["internet"]
    with pytest.raises(ReportDocumentError, match="internet"):
        render_html(document)


# -- kvmon report -----------------------------------------------------------------------------


def test_cli_renders_a_document_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = _document()
    source = tmp_path / "scan.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    output = tmp_path / "report.html"

    assert main(["report", "--input", str(source), "--output", str(output)]) == 0

    assert output.read_text(encoding="utf-8") == render_html(document)
    assert f"report written to {output}" in capsys.readouterr().err


def test_cli_writes_to_standard_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "scan.json"
    source.write_text(json.dumps(_document()), encoding="utf-8")

    assert main(["report", "--input", str(source)]) == 0

    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "scan.json: no such file"),
        ('{"schema": "kvmon.report/v1",\n  "scan": [}', "scan.json: line 2 column 12: not valid JSON"),
        ("[1, 2]", "scan.json: not a kvmon report document: a report document is a JSON object"),
        ('{"schema": "other"}', "scan.json: not a kvmon report document: schema is 'other'"),
        (
            '{"schema": "kvmon.report/v1"}',
            "scan.json: not a kvmon report document: the document lacks a field",
        ),
        (b"\xff\xfe\x00junk", "scan.json: not a text file"),
    ],
)
def test_cli_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    source = tmp_path / "scan.json"
    if isinstance(content, bytes):
        source.write_bytes(content)
    elif content is not None:
        source.write_text(content, encoding="utf-8")
    output = tmp_path / "report.html"

    assert main(["report", "--input", str(source), "--output", str(output)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("kvmon: error: ") and message in err
    assert "Traceback" not in err
    assert not output.exists()


def test_cli_input_and_scan_are_alternatives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--input", str(tmp_path / "x.json"), "--scan", "abc"]) == 2
    assert "--input and --scan are alternatives" in capsys.readouterr().err


def test_cli_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "scan.json"
    source.write_text(json.dumps(_document()), encoding="utf-8")

    assert main(["report", "--input", str(source), "--output", str(tmp_path / "missing" / "r.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err
