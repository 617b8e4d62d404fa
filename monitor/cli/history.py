"""``kvmon history VAULT``: a vault's stored network configurations over time and what changed between them."""

from __future__ import annotations

import argparse
from typing import Any

from monitor.cli import common
from monitor.cli.findings import add_store_arguments, store_from_arguments
from monitor.jsonable import to_jsonable
from monitor.judge.drift import network_diff
from monitor.model import VaultPosture
from monitor.store import Store
from monitor.store.base import PostureSnapshot
from monitor.store.codec import posture_to_json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("vault", metavar="VAULT", help="vault name or resource id")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_store_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with store_from_arguments(args) as store:
        key = _vault_key(store, args.vault)
        snapshots = store.posture_history(key)
        latest = store.load_postures(vault_keys=[key]).get(key)
    if not snapshots:
        raise common.UsageError(f"the store has no history for {args.vault}: run 'kvmon scan' first")
    entries = _entries(snapshots)
    if args.format == "json":
        newest = snapshots[-1].posture
        common.print_json(
            {
                "vault_id": newest.id,
                "vault_name": newest.name,
                "last_seen": to_jsonable(latest.seen_at) if latest else None,
                "last_scan_id": latest.scan_id if latest else None,
                "snapshots": entries,
            }
        )
        return common.EXIT_OK
    _print_table(snapshots, entries, latest)
    return common.EXIT_OK


def _vault_key(store: Store, vault: str) -> str:
    if "/" in vault:
        return vault.strip().lower()
    matches = sorted(
        key for key, s in store.load_postures().items() if s.posture.name.lower() == vault.lower()
    )
    if not matches:
        raise common.UsageError(
            f"no vault named {vault!r} in the store: run 'kvmon scan' first, or pass its resource id"
        )
    if len(matches) > 1:
        raise common.UsageError(
            f"{len(matches)} vaults are named {vault!r}; pass one resource id: {', '.join(matches)}"
        )
    return matches[0]


def _entries(snapshots: list[PostureSnapshot]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    previous: VaultPosture | None = None
    for snapshot in snapshots:
        entry: dict[str, Any] = {
            "seen_at": to_jsonable(snapshot.seen_at),
            "scan_id": snapshot.scan_id,
            "posture": posture_to_json(snapshot.posture),
        }
        if previous is not None:
            diff = network_diff(previous, snapshot.posture)
            entry["direction"] = diff.direction
            entry["changes_since_previous"] = [change.as_dict() for change in diff.changes]
        entries.append(entry)
        previous = snapshot.posture
    return entries


def _configuration(posture: VaultPosture) -> str:
    return (
        f"publicNetworkAccess={posture.public_network_access} defaultAction={posture.default_action} "
        f"bypass={posture.bypass} ipRules={len(posture.ip_rules)} subnets={len(posture.virtual_network_rules)} "
        f"privateEndpoints={len(posture.private_endpoint_connections)}"
    )


def _print_table(
    snapshots: list[PostureSnapshot], entries: list[dict[str, Any]], latest: PostureSnapshot | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    newest = snapshots[-1].posture
    caption = f"last seen {to_jsonable(latest.seen_at)} (scan {latest.scan_id})" if latest else None
    table = Table(title=f"kvmon history: {newest.name}", caption=caption)
    for column in ("First seen", "Scan", "Configuration", "Changes since the previous snapshot"):
        table.add_column(column)
    for snapshot, entry in zip(snapshots, entries, strict=True):
        changes = entry.get("changes_since_previous")
        if changes is None:
            described = "(first snapshot)"
        elif not changes:
            described = "(no network change; other properties changed)"
        else:
            described = "\n".join(network_change_line(change) for change in changes)
        table.add_row(str(entry["seen_at"]), snapshot.scan_id, _configuration(snapshot.posture), described)
    Console(soft_wrap=not common.is_terminal()).print(table)


def network_change_line(change: dict[str, Any]) -> str:
    if change["change"] == "added":
        text = f"+ {change['field']} {change['after']}"
    elif change["change"] == "removed":
        text = f"- {change['field']} {change['before']}"
    else:
        text = f"~ {change['field']} {change['before']} → {change['after']}"
    return f"{text} ({change['direction']})"
