"""Checkov over infra/ (Bicep framework): every file parses, nothing fails, every skip is justified."""

from __future__ import annotations

from pathlib import Path

from tests.infra.bicep import INFRA, Skip, bicep_files, skip_comments
from tests.infra.conftest import CheckovReport, checkov_parse

# A justification says why, in words: not empty, not a placeholder.
MIN_REASON_WORDS = 6


def _files_with_results(report: CheckovReport) -> set[Path]:
    return {
        Path(check["file_abs_path"]).resolve() for check in (*report.passed, *report.failed, *report.skipped)
    }


def _all_skips() -> list[Skip]:
    return [skip for path in bicep_files() for skip in skip_comments(path)]


def test_checkov_reports_a_broken_template_as_a_parsing_error(tmp_path: Path) -> None:
    # The same parser and bookkeeping the Checkov runs below use: what "parses" means there.
    broken = tmp_path / "broken.bicep"
    broken.write_text(
        "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n", encoding="utf-8"
    )
    parsed, parsing_errors = checkov_parse([broken, INFRA / "main.bicep"])
    assert parsing_errors == [str(broken)]
    assert parsed == {INFRA / "main.bicep"}


def test_every_template_parses(checkov_report: CheckovReport) -> None:
    assert checkov_report.parsing_errors == []
    # Checkov only lists files with checked resources; its parser must also have taken the rest
    # (role assignments, diagnostic settings) rather than skipped them.
    files = bicep_files()
    assert len(files) >= 7
    parsed, parsing_errors = checkov_parse(files)
    assert parsing_errors == []
    assert parsed == set(files)
    assert _files_with_results(checkov_report) <= {path.resolve() for path in files}


def test_the_templates_pass_checkovs_azure_checks(checkov_report: CheckovReport) -> None:
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in checkov_report.failed]
    assert failed == []
    assert len(checkov_report.passed) >= 20
    assert checkov_report.resource_count >= 40


def test_every_skip_carries_a_justification() -> None:
    skips = _all_skips()
    assert skips, "the lab vaults skip some checks on purpose; no skip found means the parser is wrong"
    for skip in skips:
        where = f"{skip.file.relative_to(INFRA)}:{skip.line} {skip.check_id}"
        assert len(skip.reason.split()) >= MIN_REASON_WORDS, f"{where}: the skip needs a reason in words"
        # Checkov honours a skip only inside the resource's block; above it, it is silently ignored.
        assert skip.resource is not None, f"{where}: the skip sits outside any resource block"


def test_checkov_honoured_every_skip_with_its_reason(checkov_report: CheckovReport) -> None:
    honoured = {
        (Path(c["file_abs_path"]).resolve(), c["resource"].rsplit(".", 1)[-1], c["check_id"]): c[
            "check_result"
        ]
        .get("suppress_comment", "")
        .strip()
        for c in checkov_report.skipped
    }
    written = {(skip.file.resolve(), skip.resource, skip.check_id): skip.reason for skip in _all_skips()}
    assert honoured == written


def test_each_skip_suppresses_a_check_that_fails_without_it(
    checkov_report_without_skips: CheckovReport,
) -> None:
    failing = {
        (Path(c["file_abs_path"]).name, c["resource"].rsplit(".", 1)[-1], c["check_id"])
        for c in checkov_report_without_skips.failed
    }
    skipped = {(skip.file.name, skip.resource, skip.check_id) for skip in _all_skips()}
    assert skipped == failing


def test_only_the_lab_vaults_skip_key_vault_checks() -> None:
    # The lab's vaults are insecure on purpose; the monitor's own infrastructure has no vault.
    vault_skips = {skip.file.name for skip in _all_skips() if skip.resource and "Vault" in skip.resource}
    assert vault_skips == {"lab.bicep"}
