"""``kvmon event FILE|-``: an Event Grid payload through the event path's own handler.

For testing the path and replaying dead letters: the body (a delivered array, one event, a
CloudEvent, a dead-lettered record) is read by ``monitor.sources.events`` and each relevant change
goes through ``monitor.app.events.handle_vault_changes`` with the settings of a scan, so the vault
is read again, judged, stored and told exactly as the ``vault_changed`` function would, with its
probes in the same run (there is no queue to follow up on here).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.app.events import ChangeOutcome, EventStatus, HandledEvents, handle_vault_changes
from monitor.app.runtime import build_runtime
from monitor.cli import common
from monitor.cli.evaluate import DEFAULT_FAIL_ON, add_baseline_argument, severity_argument
from monitor.cli.scan import settings_from
from monitor.config.baseline import BaselineError
from monitor.config.channels import ChannelConfigError
from monitor.model import Finding
from monitor.outputs import formats
from monitor.sources.events import EventBatch, EventOutcome, parse_payload


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Feed an Event Grid payload (a delivered array, one event, a CloudEvent, a dead-lettered "
        "record) through the event handler: each succeeded write or delete of a vault in the "
        "configured subscriptions is read again from ARM, judged, stored and notified as the "
        "vault_changed function does; a duplicate event id is folded. Exit 0 when nothing active "
        "is at or above --fail-on, 1 when something is, 2 for a payload that cannot be read (the "
        "message names the file and the field), 3 when a vault could not be read or the store is "
        "unavailable."
    )
    parser.add_argument("path", metavar="FILE", help="the payload (JSON), or - for standard input")
    parser.add_argument(
        "--subscription",
        action="append",
        default=[],
        metavar="ID",
        help="a subscription in scope (repeatable; default: KVMON_SUBSCRIPTIONS)",
    )
    parser.add_argument("--arm-endpoint", metavar="URL", help="ARM endpoint (default: KVMON_ARM_ENDPOINT)")
    add_baseline_argument(parser)
    parser.add_argument("--no-store", action="store_true", help="do not read or write the store")
    parser.add_argument("--no-probes", action="store_true", help="skip the probes")
    parser.add_argument("--no-notify", action="store_true", help="do not send notifications")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    parser.add_argument(
        "--fail-on",
        type=severity_argument,
        default=DEFAULT_FAIL_ON,
        metavar="SEVERITY",
        help=f"exit 1 when an unsuppressed finding is at or above this severity (default: {DEFAULT_FAIL_ON.value})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    settings = settings_from(args, environ)
    source = "<stdin>" if args.path == "-" else args.path
    batch = parse_payload(_read(args.path), source=source, subscriptions=settings.subscriptions)
    try:
        runtime = build_runtime(settings, environ=environ, with_store=not args.no_store)
    except (BaselineError, ChannelConfigError, ValueError) as exc:
        raise common.UsageError(str(exc)) from None
    handled = handle_vault_changes(
        batch.changes,
        runtime,
        subscriptions=settings.subscriptions,
        probe=not args.no_probes,
        notify=not args.no_notify,
    )
    findings = [finding for result in handled.results for finding in result.findings]
    if args.format == "json":
        common.print_json(_document(batch, handled))
    else:
        _print_table(batch, handled)
    for result in handled.results:
        for error in result.errors:
            print(f"kvmon: {error.source} {error.scope}: {error.message}", file=sys.stderr)
    if handled.count(EventStatus.ERROR):
        return common.EXIT_INCOMPLETE
    active: Sequence[Finding] = [f for f in findings if not f.suppressed]
    return common.EXIT_FINDINGS if formats.at_or_above(active, args.fail_on) else common.EXIT_OK


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise common.UsageError(f"{path}: cannot read the payload: {exc.strerror or exc}") from None


def _rows(batch: EventBatch, handled: HandledEvents) -> list[tuple[EventOutcome, ChangeOutcome | None]]:
    by_event = {result.change.event_id: result for result in handled.results}
    return [
        (outcome, by_event.get(outcome.change.event_id) if outcome.change is not None else None)
        for outcome in batch.outcomes
    ]


def _status(outcome: EventOutcome, result: ChangeOutcome | None) -> str:
    return result.status.value if result is not None else outcome.verdict.value


def _document(batch: EventBatch, handled: HandledEvents) -> dict[str, Any]:
    events = []
    for outcome, result in _rows(batch, handled):
        change = outcome.change
        events.append(
            {
                "position": outcome.position,
                "event_id": outcome.event_id,
                "event_type": outcome.event_type,
                "schema": outcome.schema.value,
                "status": _status(outcome, result),
                "reason": outcome.reason,
                "deliveries": outcome.deliveries,
                "vault_id": change.vault_id if change else None,
                "operation": change.operation_name if change else None,
                "actor": change.actor.as_evidence() if change else None,
                "scan_id": result.scan_id if result else None,
                "findings": [formats.finding_json(f) for f in formats.ordered(result.findings)]
                if result
                else [],
                "changes": [formats.change_json(c) for c in result.changes] if result else [],
                "errors": [formats.error_json(e) for e in result.errors] if result else [],
            }
        )
    return {"source": batch.source, "duplicates": batch.duplicates, "events": events}


def _print_table(batch: EventBatch, handled: HandledEvents) -> None:
    for outcome, result in _rows(batch, handled):
        change = outcome.change
        where = change.vault_id.rsplit("/", 1)[-1] if change else "-"
        who = change.actor.describe() if change else outcome.reason
        print(
            f"{outcome.position or '-':6} {_status(outcome, result):13} {where:26} {outcome.event_id or '-'}  {who}"
        )
        if result is None:
            continue
        for line in formats.change_lines(list(result.changes)):
            print(f"       {line}")
    if batch.duplicates:
        print(f"{batch.duplicates} duplicate deliveries folded")
