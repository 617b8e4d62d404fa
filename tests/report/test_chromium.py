"""The report as a browser shows it: headless Chromium renders the page, we read its DOM back, and the
screenshot stays in test-artifacts/report/ for people to look at."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from monitor.outputs.report import build_report_document, render_html
from tests.report.dom import ReportDom
from tests.report.scenario import GENERATED, POLICIES, VANTAGES, walkthrough_report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "report"
WINDOW = (1400, 2000)
TIMEOUT_S = 60


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "chromium is not installed (Debian package 'chromium'; 'make system-deps' installs it as root)"
        )
    return found


def _run_chromium(binary: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        # The page needs no network; make sure the browser resolves no name either.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *arguments,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(command)}")
    if result.returncode != 0:
        pytest.fail(f"chromium exited with {result.returncode}: {result.stderr[-2000:]}")
    return result


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_shows_the_matrix_and_findings(tmp_path: Path) -> None:
    chromium = _chromium()
    document = build_report_document(
        walkthrough_report(), vantages=VANTAGES, policies=POLICIES, generated_at=GENERATED
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / "walkthrough-report.html"
    page.write_text(render_html(document), encoding="utf-8")
    screenshot = ARTIFACTS / "walkthrough-report.png"
    screenshot.unlink(missing_ok=True)

    dumped = _run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    _run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}", page.as_uri())

    dom = ReportDom.parse(dumped.stdout)
    assert len(dom.cells) == 10
    assert dom.cell("kv-se-demo", "internet").startswith("✘ MISMATCH")
    assert "observed admitted · DNS public" in dom.cell("kv-se-demo", "internet")
    assert dom.cell("kv-se-demo", "se-subnet").startswith("✔ as expected")
    assert dom.cell("kv-se-demo", "spoke").startswith("? no evidence")
    assert "expected admitted · DNS private" in dom.cell("kv-pl-demo", "spoke")
    assert "observed admitted · DNS public" in dom.cell("kv-pl-demo", "spoke")
    assert dom.finding_rules == ["KV001", "KV101", "KV201", "KV002", "KV008", "KV103", "KV004"]
    assert "Evidence incomplete" in dom.text
    # The browser built the same page the renderer wrote (nothing was dropped as malformed).
    assert dom == ReportDom.parse(page.read_text(encoding="utf-8"))

    assert _png_size(screenshot) == WINDOW
    assert screenshot.stat().st_size > 50_000  # a blank page compresses to a few kilobytes
