"""``kvmon findings``: what the store remembers, filtered by status and vault.

The store is chosen like everywhere else (``monitor.store.store_from_environment``: ``KVMON_STORAGE``,
``KVMON_STORAGE_ACCOUNT_URL``, ``AzureWebJobsStorage``, else SQLite at ``KVMON_SQLITE_PATH`` or
``~/.kvmon/kvmon.db``); ``--sqlite`` overrides it. A connection string is read only from the
environment (``KVMON_STORAGE``), never from a flag, so it stays out of shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from monitor.cli import common
from monitor.jsonable import to_jsonable
from monitor.model import FindingRecord, FindingStatus
from monitor.store import Store, StoreUnavailable, open_store, store_from_environment

STATUSES = ("open", "resolved", "suppressed", "all")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sqlite",
        metavar="PATH",
        help="SQLite file (default: the store KVMON_STORAGE, AzureWebJobsStorage or KVMON_SQLITE_PATH name)",
    )


@contextmanager
def store_from_arguments(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Iterator[Store]:
    """The store the flags (else the environment) name; its faults become one-line usage errors."""
    try:
        if args.sqlite:
            store = open_store(sqlite_path=args.sqlite)
        else:
            store = store_from_environment(os.environ if environ is None else environ)
    except (ValueError, StoreUnavailable) as exc:
        raise common.UsageError(str(exc)) from None
    try:
        yield store
    except StoreUnavailable as exc:
        raise common.UsageError(f"the store is unavailable: {exc}") from None
    finally:
        store.close()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=STATUSES, default="open", help="which findings (default: open)")
    parser.add_argument("--vault", metavar="PATTERN", help="vault name or resource id, * and ? allowed")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else FindingStatus(args.status)
    with store_from_arguments(args) as store:
        records = list(store.load_findings(status=status).values())
    if args.vault:
        pattern = args.vault.lower()
        records = [
            r
            for r in records
            if fnmatch.fnmatchcase(r.finding.vault_name.lower(), pattern)
            or fnmatch.fnmatchcase(r.finding.vault_id.lower(), pattern)
        ]
    records.sort(
        key=lambda r: (
            -r.finding.severity.rank,
            r.finding.vault_name.lower(),
            r.finding.rule_id,
            r.finding.subject,
        )
    )
    if args.format == "json":
        common.print_json([record_as_json(record) for record in records])
        return common.EXIT_OK
    _print_table(records, title=f"kvmon findings ({args.status})")
    return common.EXIT_OK


def record_as_json(record: FindingRecord) -> dict[str, Any]:
    data: dict[str, Any] = {"id": record.id, "status": record.status.value}
    data.update(to_jsonable(record.finding))
    data.update(
        {
            "first_seen": to_jsonable(record.first_seen),
            "last_seen": to_jsonable(record.last_seen),
            "last_changed": to_jsonable(record.last_changed),
            "resolved_at": to_jsonable(record.resolved_at),
            "occurrences": record.occurrences,
        }
    )
    return data


def _print_table(records: list[FindingRecord], *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=not common.is_terminal())
    if not records:
        console.print(f"{title}: none")
        return
    table = Table(title=title)
    for column in ("Status", "Severity", "Rule", "Vault", "Subject", "Summary", "First seen", "Last seen"):
        table.add_column(column)
    for record in records:
        finding = record.finding
        status = record.status.value
        if finding.suppression is not None and record.status == FindingStatus.SUPPRESSED:
            expires = finding.suppression.expires.isoformat() if finding.suppression.expires else "never"
            status = f"suppressed ({finding.suppression.reason}; until {expires})"
        table.add_row(
            status,
            finding.severity.value,
            finding.rule_id,
            finding.vault_name,
            finding.subject,
            finding.summary,
            _short(record.first_seen),
            _short(record.last_seen),
        )
    console.print(table)


def _short(moment: Any) -> str:
    return str(to_jsonable(moment)).replace("T", " ")[:16] if moment is not None else ""
