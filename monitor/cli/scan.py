"""``kvmon scan``: read ARM live, probe, read logs, judge, remember and tell.

A thin shell over ``monitor.app.scan.run_scan``: settings come from the environment (the same app
settings the Functions app reads) and the flags override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanOutcome, ScanRequest, ScanRuntime, run_scan
from monitor.cli import common
from monitor.cli.evaluate import add_baseline_argument, add_output_arguments, emit_report
from monitor.config.baseline import BaselineError
from monitor.config.channels import ChannelConfigError
from monitor.config.settings import Settings, SettingsError
from monitor.model import ScanTrigger, Service
from monitor.outputs.formats import Observed
from monitor.store import StoreUnavailable

EXIT_SCAN_FAILED = 3


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Read every vault and storage account of the subscriptions from ARM (--service narrows), "
        "probe the vaults from the configured vantage points, read their access logs, judge "
        "everything against the baseline, store the "
        "findings and print what opened, changed and resolved since the last scan. Settings come "
        "from the environment (see the README's settings table); flags override them. Exit 0 when "
        "nothing active is at or above --fail-on, 1 when something is, 2 on a usage error, 3 when "
        "the scan could not be recorded (the store is unavailable)."
    )
    parser.add_argument(
        "--subscription",
        action="append",
        default=[],
        metavar="ID",
        help="a subscription to scan (repeatable; default: KVMON_SUBSCRIPTIONS)",
    )
    parser.add_argument("--vault", metavar="NAME", help="check only this vault (an on-demand check)")
    parser.add_argument(
        "--service",
        action="append",
        type=Service,
        choices=list(Service),
        default=[],
        help="a service to scan: keyvault or storage (repeatable; default: both)",
    )
    parser.add_argument("--arm-endpoint", metavar="URL", help="ARM endpoint (default: KVMON_ARM_ENDPOINT)")
    add_baseline_argument(parser)
    parser.add_argument("--no-store", action="store_true", help="do not read or write the store")
    parser.add_argument("--no-probes", action="store_true", help="skip the probes")
    parser.add_argument("--no-logs", action="store_true", help="skip the access logs")
    parser.add_argument("--no-notify", action="store_true", help="do not send notifications")
    add_output_arguments(parser)
    parser.set_defaults(handler=run)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """The environment's settings with the flags laid over them; a bad value is a UsageError."""
    overrides = {
        "KVMON_SUBSCRIPTIONS": ",".join(args.subscription) if args.subscription else None,
        "KVMON_ARM_ENDPOINT": args.arm_endpoint,
        "KVMON_BASELINE": args.baseline,
    }
    environ.update({name: value for name, value in overrides.items() if value})
    try:
        settings = Settings.from_environ(environ)
    except SettingsError as exc:
        raise common.UsageError(str(exc)) from None
    if not settings.subscriptions:
        raise common.UsageError("no subscription to scan: give --subscription ID or set KVMON_SUBSCRIPTIONS")
    return settings


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    settings = settings_from(args, environ)
    try:
        runtime = build_runtime(settings, environ=environ, with_store=not args.no_store)
    except (BaselineError, ChannelConfigError, ValueError) as exc:
        raise common.UsageError(str(exc)) from None
    if args.vault is not None and args.service and Service.KEYVAULT not in args.service:
        raise common.UsageError("--vault checks a vault: it cannot go with --service storage only")
    request = ScanRequest(
        subscriptions=settings.subscriptions,
        vault_name=args.vault,
        probe=not args.no_probes,
        logs=not args.no_logs,
        notify=not args.no_notify,
        trigger=ScanTrigger.CLI,
        services=frozenset(args.service) or None,
    )
    try:
        outcome = _run_with_progress(request, runtime)
    except StoreUnavailable as exc:
        logging.getLogger("kvmon").error("scan failed: the store is unavailable: %s", exc)
        print(f"kvmon: scan failed: the store is unavailable: {exc}", file=sys.stderr)
        return EXIT_SCAN_FAILED
    report = outcome.report
    for error in report.errors:
        print(f"kvmon: {error.source} {error.scope}: {error.message}", file=sys.stderr)
    code = emit_report(
        args,
        report.findings,
        errors=report.errors,
        expired=outcome.expired_suppressions,
        changes=report.changes if runtime.store is not None else None,
        observed=Observed(report, vantages=runtime.vantages),
    )
    return common.EXIT_INCOMPLETE if report.unread_subscriptions else code


def _run_with_progress(request: ScanRequest, runtime: ScanRuntime) -> ScanOutcome:
    """A terminal sees each stage as it starts; a pipe sees nothing but the result."""
    if not sys.stderr.isatty():
        return run_scan(request, runtime)
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("scanning") as status:
        return run_scan(request, runtime, progress=lambda stage: status.update(f"kvmon: {stage}"))
