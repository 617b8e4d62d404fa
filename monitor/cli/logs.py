"""``kvmon logs``: print the summarised access-log evidence of one workspace, or the KQL kvmon sends.

The vaults' audit logs by default; with ``--perimeter`` the Network Security Perimeters' access log
(``NSPAccessLogs``). Defaults come from the settings (``KVMON_LOGS_ENDPOINT``, ``KVMON_LOGS_TABLE``,
``KVMON_LOGS_FIRST_WINDOW``, ``KVMON_PRIVATE_RANGES``, ``KVMON_CA_BUNDLE``); flags override them.
Exit 0 when the read was complete, 3 when it failed or was partial (what was read is printed and
the reason goes to stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential

from monitor.cli import common
from monitor.config.identity import default_credential
from monitor.config.settings import Settings, SettingsError, parse_duration
from monitor.jsonable import to_jsonable
from monitor.model import LogEvidence, PerimeterLogEvidence
from monitor.sources import nsp_kql
from monitor.sources.keyvault.kql import (
    PLACEHOLDER_VAULT_ID,
    TABLE_CHOICES,
    build_summary_query,
    normalise_vault_ids,
)
from monitor.sources.logs import LogsReader, LogsReadResult, PerimeterLogsReadResult

EXIT_INCOMPLETE = 3

_WORKSPACE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Summarise a workspace's Key Vault access logs by vault, caller address, address "
        "authorisation type, subnet, outcome and identity (with --perimeter: the perimeters' "
        "NSPAccessLogs by vault, category, source and matched rule): one query for all vaults. "
        "Exit 3 when the read failed or was partial."
    )
    parser.add_argument("--workspace", metavar="ID", help="Log Analytics workspace id (a GUID)")
    parser.add_argument(
        "--vault",
        metavar="RESOURCE_ID",
        action="append",
        default=[],
        help="a vault's resource id (repeatable); default: every vault with rows in the workspace",
    )
    parser.add_argument(
        "--since",
        metavar="DURATION",
        help="how far back to read, e.g. 30m, 24h, 7d (default: KVMON_LOGS_FIRST_WINDOW, 24h)",
    )
    parser.add_argument(
        "--table", choices=TABLE_CHOICES, help="where the audit events are (default: KVMON_LOGS_TABLE, auto)"
    )
    parser.add_argument(
        "--perimeter",
        action="store_true",
        help="read the Network Security Perimeters' access log (NSPAccessLogs) instead of the vaults' audit logs",
    )
    parser.add_argument(
        "--endpoint", metavar="URL", help="Log Analytics endpoint (default: KVMON_LOGS_ENDPOINT)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--print-query",
        action="store_true",
        help="print the KQL exactly as sent (a placeholder vault when no --vault is given) and exit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.print_query:
        return execute(args, credential=None, now=dt.datetime.now(dt.UTC), environ=os.environ)
    with default_credential(Settings.from_environ(os.environ)) as credential:
        return execute(args, credential=credential, now=dt.datetime.now(dt.UTC), environ=os.environ)


def execute(
    args: argparse.Namespace,
    *,
    credential: TokenCredential | None,
    now: dt.datetime,
    environ: Mapping[str, str],
) -> int:
    """The command with its world passed in: the credential, the clock and the settings."""
    try:
        settings = Settings.from_environ(environ)
    except SettingsError as exc:
        raise common.UsageError(str(exc)) from None
    if args.perimeter and args.table:
        raise common.UsageError("--table names a Key Vault table; --perimeter reads NSPAccessLogs: give one")
    table = nsp_kql.TABLE if args.perimeter else args.table or settings.logs_table
    try:
        vault_ids = normalise_vault_ids(args.vault)
    except ValueError as exc:
        raise common.UsageError(f"--vault: {exc}") from None

    if args.print_query:
        shown = vault_ids or (PLACEHOLDER_VAULT_ID,)
        if args.perimeter:
            print(nsp_kql.build_perimeter_query(vault_ids=shown))
        else:
            print(build_summary_query(table=table, vault_ids=shown))
        return common.EXIT_OK

    if not args.workspace:
        raise common.UsageError("--workspace is required (or use --print-query)")
    if not _WORKSPACE_ID.fullmatch(args.workspace.strip()):
        raise common.UsageError(f"--workspace: {args.workspace!r} is not a workspace id (a GUID)")
    try:
        since = parse_duration(args.since, name="--since") if args.since else settings.logs_first_window
    except SettingsError as exc:
        raise common.UsageError(str(exc)) from None
    if since <= dt.timedelta(0):
        raise common.UsageError("--since: must be longer than zero")
    if credential is None:
        raise common.UsageError("reading logs needs a credential")

    reader = LogsReader(
        credential,
        endpoint=args.endpoint or settings.logs_endpoint,
        table=settings.logs_table if args.perimeter else table,
        address_space=settings.address_space,
        connection_verify=settings.connection_verify,
    )
    result: LogsReadResult | PerimeterLogsReadResult
    with reader:
        read = reader.read_perimeter_workspace if args.perimeter else reader.read_workspace
        result = read(args.workspace.strip(), vault_ids, window_start=now - since, window_end=now)

    if args.format == "json":
        common.print_json(_as_json(result, table))
    elif isinstance(result, PerimeterLogsReadResult):
        _print_perimeter_table(result)
    else:
        _print_table(result)
    for error in result.errors:
        print(f"kvmon: logs: {error.scope}: {error.message}", file=sys.stderr)
    incomplete = bool(result.errors) or any(not e.complete for e in result.evidence.values())
    return EXIT_INCOMPLETE if incomplete else common.EXIT_OK


def _as_json(result: LogsReadResult | PerimeterLogsReadResult, table: str) -> dict[str, Any]:
    evidence: Mapping[str, Any] = result.evidence
    return {
        "workspace_id": result.workspace_id,
        "table": table,
        "source_tables": list(result.source_tables) if isinstance(result, LogsReadResult) else [table],
        "evidence": [to_jsonable(evidence[key]) for key in sorted(evidence)],
        "errors": [to_jsonable(error) for error in result.errors],
    }


def _console() -> Any:
    from rich.console import Console

    # Piped: wide enough that addresses and ids are never cut (they are what the reader greps for).
    return Console(soft_wrap=not common.is_terminal(), width=None if common.is_terminal() else 250)


def _print_table(result: LogsReadResult) -> None:
    _print_evidence(
        result.evidence,
        log="",
        columns=(
            "Caller",
            "Space",
            "Auth type",
            "Subnet",
            "Outcome",
            "Identity",
            "Requests",
            "First",
            "Last",
        ),
        rows=lambda evidence: [
            (
                item.caller_address or "(none)",
                "private" if item.address_private else "public",
                item.address_auth_type or "",
                (item.subnet_id or "").rsplit("/", 1)[-1],
                item.outcome.value,
                item.identity or "",
                str(item.count),
                _short(item.first_seen),
                _short(item.last_seen),
            )
            for item in evidence.activity
        ],
        empty="no rows in the window",
    )


def _print_perimeter_table(result: PerimeterLogsReadResult) -> None:
    _print_evidence(
        result.evidence,
        log=" (NSPAccessLogs)",
        columns=("Source", "Category", "Matched rule", "Traffic", "App id", "Requests", "First", "Last"),
        rows=lambda evidence: [
            (
                item.source_address or "(none)",
                item.category.value,
                item.matched_rule or "",
                item.traffic_type or "",
                item.source_app_id or "",
                str(item.count),
                _short(item.first_seen),
                _short(item.last_seen),
            )
            for item in evidence.access
        ],
        # An empty perimeter log is no evidence: the workspace may sit outside the perimeter.
        empty="no rows in the window: no evidence, not no access",
    )


_Evidence = TypeVar("_Evidence", LogEvidence, PerimeterLogEvidence)


def _print_evidence(
    evidence_by_vault: Mapping[str, _Evidence],
    *,
    log: str,
    columns: Sequence[str],
    rows: Callable[[_Evidence], list[tuple[str, ...]]],
    empty: str,
) -> None:
    """One table per vault: its rows of one log, the window and whether it was read completely."""
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    for key in sorted(evidence_by_vault):
        evidence = evidence_by_vault[key]
        name = key.rsplit("/", 1)[-1]
        window = f"{_short(evidence.window_start)} .. {_short(evidence.window_end)}"
        state = "" if evidence.complete else " (incomplete)"
        table = Table(title=escape(f"{name}{log}: {window}{state}"), title_justify="left")
        for column in columns:
            table.add_column(column, justify="right" if column == "Requests" else "left")
        cells = rows(evidence)
        for row in cells:
            table.add_row(*(escape(cell) for cell in row))
        if not cells:
            table.caption = empty if evidence.complete else "nothing read"
        console.print(table)
        for note in evidence.notes:
            console.print(f"  note: {note}", markup=False, highlight=False)


def _short(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else ""
