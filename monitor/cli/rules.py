"""``kvmon rules``: print the rule catalog."""

from __future__ import annotations

import argparse

from monitor.cli import common
from monitor.judge.rules.catalog import CATALOG


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "json":
        common.print_json([rule.as_dict() for rule in CATALOG])
        return common.EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kvmon rules", show_lines=False)
    for column in ("ID", "Severity", "Reads", "Title"):
        table.add_column(column)
    for rule in CATALOG:
        table.add_row(rule.id, rule.severity.value, rule.category.value, rule.title)
    Console(soft_wrap=not common.is_terminal()).print(table)
    return common.EXIT_OK
