"""The ``kvmon`` command line: a thin shell over the monitor's functions.

Each command lives in its own module with ``register(parser)``, which gives the command's parser
its description, arguments and handler. This module lists the commands without importing them,
so ``kvmon --help`` and each command start with only what that command needs (a scan needs
the SDKs; ``kvmon rules`` needs the rule catalog). It turns user errors into one clear line and
exit code 2 (never a traceback); ``common.run`` maps every error to the exit code of its kind.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.cli import common


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str


# In the order --help lists them: the everyday commands first.
COMMANDS = (
    Command(
        "scan",
        "scan subscriptions live: configuration, probes, logs; store and notify changes",
        "monitor.cli.scan",
    ),
    Command(
        "evaluate",
        "judge offline vault JSON (az keyvault show/list, ARM pages) against the rules",
        "monitor.cli.evaluate",
    ),
    Command(
        "probe", "probe one vault (DNS, TLS, health, data plane) from one vantage point", "monitor.cli.probe"
    ),
    Command(
        "logs",
        "print who reached the vaults, from Log Analytics (or the query kvmon sends)",
        "monitor.cli.logs",
    ),
    Command(
        "event",
        "feed an Event Grid payload (or a dead letter) through the event handler",
        "monitor.cli.event",
    ),
    Command("findings", "list stored findings", "monitor.cli.findings"),
    Command("history", "a vault's configuration snapshots and their diffs", "monitor.cli.history"),
    Command("report", "render a scan's HTML report", "monitor.cli.report"),
    Command("rules", "print the rule catalog", "monitor.cli.rules"),
    Command("notify-test", "send a sample message to one configured channel", "monitor.cli.notify_test"),
)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command argv names: its first argument that is not an option (kvmon's own options
    take no value)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command listed; only ``command`` given its arguments, the only module imported."""
    parser = common.ArgumentParser(
        prog="kvmon",
        description="Continuous compliance monitor for the network exposure of Azure Key Vaults.",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected failure")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=common.ArgumentParser)
    subparsers.required = True
    for entry in COMMANDS:
        command_parser = subparsers.add_parser(entry.name, help=entry.help)
        if entry.name == command:
            importlib.import_module(entry.module).register(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(chosen_command(sys.argv[1:] if argv is None else argv))
    return common.run(lambda: parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
