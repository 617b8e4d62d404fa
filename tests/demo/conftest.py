"""The demo runs once per module (about five seconds with Azurite); the tests read its result."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from lab.azurite import azurite_missing_reason
from lab.demo import DemoResult, Display, ScanView, run_demo


@dataclass
class DemoRun:
    result: DemoResult
    output: str

    def scan(self, step: int, index: int = 0) -> ScanView:
        return self.result.steps[step - 1].scans[index]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"the demo keeps findings in Azurite's Table storage, which cannot run here: {reason}")
    buffer = io.StringIO()
    display = Display(color=False, pauses=False, console=Console(file=buffer, width=120, no_color=True))
    report = tmp_path_factory.mktemp("demo") / "demo-report.html"
    result = run_demo(report_path=report, display=display)
    yield DemoRun(result=result, output=buffer.getvalue())


@pytest.fixture
def report_html(demo: DemoRun) -> str:
    return Path(demo.result.report_path).read_text(encoding="utf-8")
