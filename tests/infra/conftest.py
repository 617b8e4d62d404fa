"""Checkov over infra/, run once per session (it takes several seconds to start).

Two runs go in parallel: the templates as they are, and a copy with every ``checkov:skip``
comment removed. The first is what ``make test`` judges; the second shows that each skip
suppresses a check that really fails, so no skip is stale or decorative.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA

# make test installs Checkov into a venv of its own (its pins clash with pytest's).
CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
_SKIP_LINE = re.compile(r"^\s*//\s*checkov:skip=.*\n", re.MULTILINE)


def checkov_parse(files: list[Path]) -> tuple[set[Path], list[str]]:
    """Checkov's own Bicep parser over ``files``, run in Checkov's venv: (files it parsed, files it
    reported as parsing errors)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from checkov.bicep.parser import Parser\n"
        "definitions, _, errors = Parser().get_files_definitions([Path(p) for p in sys.argv[1:]])\n"
        "print(json.dumps({'parsed': [str(p) for p in definitions], 'errors': [str(e) for e in errors]}))\n"
    )
    python = CHECKOV.with_name("python")
    answer = subprocess.run(
        [str(python), "-c", script, *map(str, files)], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    return {Path(p) for p in result["parsed"]}, list(result["errors"])


@dataclass(frozen=True)
class CheckovReport:
    directory: Path
    parsing_errors: list[str]
    passed: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    resource_count: int


def _start(directory: Path) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        # Offline: no update check against PyPI, no download of guidelines or mappings.
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        "BC_SKIP_MAPPING": "TRUE",
    }
    return subprocess.Popen(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "bicep",
            "--skip-download",
            "-o",
            "json",
            "--compact",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _finish(process: subprocess.Popen[str], directory: Path) -> CheckovReport:
    stdout, stderr = process.communicate(timeout=240)
    # Exit code 1 only means "some check failed"; anything else is Checkov itself failing.
    assert process.returncode in (0, 1), f"checkov exited {process.returncode}: {stderr[-2000:]}"
    report = json.loads(stdout)
    # Checkov prints a bare summary (no results key) when it found nothing to scan.
    assert isinstance(report, dict) and "results" in report, (
        f"checkov scanned nothing in {directory}: {stdout[:500]}"
    )
    results = report["results"]
    return CheckovReport(
        directory=directory,
        parsing_errors=list(results.get("parsing_errors", [])),
        passed=results["passed_checks"],
        failed=results["failed_checks"],
        skipped=results["skipped_checks"],
        resource_count=report["summary"]["resource_count"],
    )


@pytest.fixture(scope="session")
def checkov_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[CheckovReport, CheckovReport]:
    if not CHECKOV.exists():
        pytest.fail(f"Checkov is not installed at {CHECKOV}: run `make install` (it gets its own venv there)")
    unskipped = tmp_path_factory.mktemp("infra-without-skips") / "infra"
    shutil.copytree(INFRA, unskipped)
    for path in unskipped.rglob("*.bicep"):
        path.write_text(_SKIP_LINE.sub("", path.read_text(encoding="utf-8")), encoding="utf-8")
    as_written, without_skips = _start(INFRA), _start(unskipped)
    return _finish(as_written, INFRA), _finish(without_skips, unskipped)


@pytest.fixture(scope="session")
def checkov_report(checkov_runs: tuple[CheckovReport, CheckovReport]) -> CheckovReport:
    return checkov_runs[0]


@pytest.fixture(scope="session")
def checkov_report_without_skips(checkov_runs: tuple[CheckovReport, CheckovReport]) -> CheckovReport:
    return checkov_runs[1]
