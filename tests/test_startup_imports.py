"""What starting each entry point imports: a fresh interpreter per case, its ``sys.modules`` read.

The CLI imports only the chosen command (``kvmon --help`` and ``kvmon rules`` no SDK, no DNS, no
HTTP client, no templates); a probe deployment of the Functions app imports probing and its
settings, nothing of the store, the sources, the judge or the outputs. The monitor role still
registers every function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO

# Top-level packages (and kvmon's own stages) a light start must not load.
SDK_AND_FRIENDS = ("azure", "jinja2", "requests", "dns")
NOT_FOR_PROBING = (
    "azure.mgmt",
    "azure.monitor",
    "azure.data.tables",
    "azure.storage",
    "azure.identity",
    "jinja2",
    "requests",
    "monitor.store",
    "monitor.outputs",
    "monitor.sources",
    "monitor.judge",
    "monitor.app.scan",
    "monitor.app.monitor_functions",
)

MONITOR_FUNCTIONS = {
    "scheduled_scan",
    "scan_worker",
    "poison_scan_jobs",
    "vault_changed",
    "vault_changed_queue",
    "poison_vault_changes",
    "check_vault",
    "findings",
    "report",
}


@dataclass(frozen=True)
class Started:
    modules: set[str]  # loaded once the code has run
    printed: str
    logged: str  # stderr


def started(code: str, **settings: str) -> Started:
    """Run ``code`` in a fresh interpreter with only the given kvmon settings."""
    report = "import json, sys; print('\\nMODULES=' + json.dumps(sorted(sys.modules)))"
    environ = {name: value for name, value in os.environ.items() if not name.startswith("KVMON_")}
    environ.update(settings)
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed, _, modules = done.stdout.rpartition("\nMODULES=")
    return Started(modules=set(json.loads(modules)), printed=printed, logged=done.stderr)


def under(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted({p for p in prefixes for m in modules if m == p or m.startswith(p + ".")})


REGISTERED = "import json, function_app\nprint(json.dumps([f.get_function_name() for f in function_app.app.get_functions()]))"


def test_a_probe_deployment_imports_only_probing() -> None:
    app = started(REGISTERED, KVMON_ROLE="probe")

    assert under(app.modules, NOT_FOR_PROBING) == []
    assert {"probes.endpoint", "monitor.app.probe_functions"} <= app.modules  # it did import the app
    assert sorted(json.loads(app.printed)) == ["health", "probe"]


def test_the_monitor_role_registers_every_function() -> None:
    app = started(REGISTERED, KVMON_ROLE="monitor")

    assert "monitor.app.monitor_functions" in app.modules
    assert set(json.loads(app.printed)) == {"probe", "health"} | MONITOR_FUNCTIONS


def test_settings_unusable_at_start_up_are_logged_and_every_function_registered() -> None:
    app = started(REGISTERED, KVMON_ROLE="probe", KVMON_PROBE_TIMEOUT="soon")

    assert "KVMON_PROBE_TIMEOUT" in app.logged and "Traceback" not in app.logged
    assert set(json.loads(app.printed)) == {"probe", "health"} | MONITOR_FUNCTIONS


@pytest.mark.parametrize("argv", [["--help"], ["rules", "--format", "json"]], ids=" ".join)
def test_the_cli_imports_no_sdk_for(argv: list[str]) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from monitor.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        code = main({argv!r})\n"
        "    except SystemExit as exit:\n"  # argparse's --help exits
        "        code = exit.code\n"
        "print(code)"
    )
    cli = started(code)

    assert cli.printed.strip() == "0"
    assert under(cli.modules, SDK_AND_FRIENDS) == []
