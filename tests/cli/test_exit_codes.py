"""One mapping from errors to exit codes (monitor.cli.common.run): each kind of failure has its own."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import pytest

from monitor.cli import common, main
from monitor.errors import ConfigurationError, InputError, SourceError, StoreError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("bad flag"), common.EXIT_USAGE),
        (ConfigurationError("KVMON_X: bad"), common.EXIT_USAGE),
        (SourceError("unreadable document"), common.EXIT_INCOMPLETE),
        (StoreError("store down"), common.EXIT_INCOMPLETE),
        (RuntimeError("a bug"), common.EXIT_INTERNAL),
        (KeyError("x"), common.EXIT_INTERNAL),
    ],
)
def test_each_kind_has_its_exit_code(error: Exception, code: int) -> None:
    assert common.exit_code_for(error) == code


def _raising(error: BaseException, *, debug: bool = False) -> int:
    def handler(args: argparse.Namespace) -> int:
        raise error

    return common.run(lambda: argparse.Namespace(handler=handler, debug=debug))


def test_an_unexpected_failure_is_one_line_and_its_own_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(RuntimeError("boom\nsecond line")) == common.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err == "kvmon: internal error: RuntimeError: boom (run with --debug for the traceback)\n"


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(RuntimeError("boom"), debug=True) == common.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("kvmon: internal error: RuntimeError: boom")


def test_a_kvmon_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _raising(StoreError("the store is unavailable")) == common.EXIT_INCOMPLETE
    assert capsys.readouterr().err == "kvmon: error: the store is unavailable\n"


def test_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "yaml"]) == common.EXIT_USAGE
    assert capsys.readouterr().err.startswith("kvmon: error: argument --format")


def test_a_closed_pipe_ends_quietly() -> None:
    kvmon = pathlib.Path(sys.executable).with_name("kvmon")
    shell = f"{kvmon} rules --format json | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout == "[\n"
    assert done.stderr == ""


def test_terminal_tables_without_the_cli_extra_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, module, None)  # as in the Functions package: rich absent

    assert main(["rules"]) == common.EXIT_USAGE
    assert "pip install 'kvmon[cli]'" in capsys.readouterr().err
    assert main(["rules", "--format", "json"]) == common.EXIT_OK
