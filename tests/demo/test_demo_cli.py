"""``python -m lab.demo`` as ``make demo`` runs it: exit status, output, and a lab that stops on
every way out (finished, SIGTERM, Ctrl-C), Azurite included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.azurite import azurite_missing_reason

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    azurite_missing_reason() is not None,
    reason=f"the demo keeps findings in Azurite's Table storage: {azurite_missing_reason()}",
)


def start_demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab.demo", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def children_of(pid: int) -> set[int]:
    """Every process whose parent is ``pid`` (Azurite's node runs as the demo's child)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_runs_to_the_end_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "out" / "demo-report.html"
    demo = start_demo("--quick", "--no-color", "--report", str(report))
    output, _ = demo.communicate(timeout=240)
    assert demo.returncode == 0, output
    assert "Traceback" not in output
    assert f"HTML report (matrix and findings of scan 6): {report}" in output
    assert "the lab is stopped" in output
    assert "Reachability: vaults × vantage points" in report.read_text(encoding="utf-8")


def test_an_unwritable_report_path_is_refused_before_the_lab_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report's directory should be")
    demo = start_demo("--quick", "--no-color", "--report", str(blocker / "demo-report.html"))
    output, _ = demo.communicate(timeout=60)
    assert demo.returncode == 2, output
    assert output.startswith(f"--report {blocker / 'demo-report.html'}: cannot create its directory")
    assert "Traceback" not in output
    assert "Starting the lab" not in output


@pytest.mark.parametrize(
    ("sig", "status", "message"),
    [
        (signal.SIGTERM, 143, "Terminated; the lab is stopped."),
        (signal.SIGINT, 130, "Interrupted; the lab is stopped."),
    ],
)
def test_a_signal_mid_scan_stops_the_lab(tmp_path: Path, sig: int, status: int, message: str) -> None:
    demo = start_demo("--quick", "--no-color", "--report", str(tmp_path / "demo-report.html"))
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if line.startswith("... Scan 1:"):
            break
    else:
        pytest.fail("the demo ended before scan 1:\n" + "".join(lines))
    children = children_of(demo.pid)
    assert children, "Azurite should be running as the demo's child"
    demo.send_signal(sig)
    rest, _ = demo.communicate(timeout=120)
    output = "".join(lines) + rest
    assert demo.returncode == status, output
    assert message in output
    assert "Traceback" not in output
    assert not (tmp_path / "demo-report.html").exists()
    assert [pid for pid in children if alive(pid)] == []
