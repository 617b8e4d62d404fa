"""The ``kvmon`` command line: a thin shell over the monitor's functions.

Each command lives in its own module with ``register(subparsers)``; this module only assembles
them and turns user errors into one clear line and exit code 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monitor.cli import common
from monitor.cli import evaluate as evaluate_command
from monitor.cli import findings as findings_command
from monitor.cli import history as history_command
from monitor.cli import logs as logs_command
from monitor.cli import notify_test as notify_test_command
from monitor.cli import probe as probe_command
from monitor.cli import report as report_command
from monitor.cli import rules as rules_command
from monitor.cli import scan as scan_command

# In the order --help lists them: the everyday commands first.
COMMANDS = (
    scan_command,
    evaluate_command,
    probe_command,
    logs_command,
    findings_command,
    history_command,
    report_command,
    rules_command,
    notify_test_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="kvmon",
        description="Continuous compliance monitor for the network exposure of Azure Key Vaults.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=common.ArgumentParser)
    subparsers.required = True
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args))
    except common.UsageError as exc:
        print(f"kvmon: error: {exc}", file=sys.stderr)
        return common.EXIT_USAGE
    except KeyboardInterrupt:
        print("kvmon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
