"""``kvmon probe VAULT``: probe one vault from one vantage point and print every step.

Defaults come from the settings (``KVMON_CLOUD``, ``KVMON_VAULT_DNS_SUFFIX``, ``KVMON_PROBE_PORT``,
``KVMON_PROBE_TIMEOUT``, ``KVMON_PRIVATE_RANGES``, ``KVMON_CA_BUNDLE``, ``KVMON_VANTAGES``,
``KVMON_VANTAGE``); flags override them. Exit 0 when the data plane gave a verdict (admitted or
refused), 3 when it could not (unreachable, error, vantage point silent), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import TokenCredential

from monitor.cli import common
from monitor.config.identity import default_credential
from monitor.config.policy import Vantage
from monitor.config.settings import Settings, SettingsError
from monitor.config.vantages import VantageConfigError, load_vantages, parse_resolver
from monitor.model import ProbeResult, Verdict
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.remote import probe_remote
from probes.scope import OutOfScope, ProbeScope
from probes.wire import result_to_json

EXIT_NO_VERDICT = 3


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Resolve the vault's name, connect to the address DNS gave, check its certificate, read "
        "/healthstatus and make one data-plane call that needs no permission, then print every "
        "step. Exit 3 when the data plane gave no verdict."
    )
    parser.add_argument("vault", metavar="VAULT", help="vault name, host name or https:// vault URI")
    parser.add_argument("--vantage", metavar="NAME", help="probe as this vantage point (from --vantages)")
    parser.add_argument(
        "--vantages", metavar="FILE", help="YAML/JSON file of vantage points (default: KVMON_VANTAGES)"
    )
    parser.add_argument("--resolver", metavar="IP[:PORT]", help="DNS resolver to ask (default: the system's)")
    parser.add_argument("--source-address", metavar="IP", help="local address to connect from")
    parser.add_argument("--port", type=int, metavar="N", help="TCP port of the vault (default: 443)")
    parser.add_argument(
        "--suffix", metavar="S", help="an extra Key Vault DNS suffix (emulators), e.g. vault.lab.test"
    )
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA certificates to trust instead of the system's")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="timeout of each step")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with default_credential(Settings.from_environ(os.environ)) as credential:
        return execute(args, credential=credential, environ=os.environ)


def execute(args: argparse.Namespace, *, credential: TokenCredential, environ: Mapping[str, str]) -> int:
    """The command with its world passed in: the credential and the settings."""
    try:
        settings = Settings.from_environ(environ)
    except SettingsError as exc:
        raise common.UsageError(str(exc)) from None
    options = _options(args, settings)
    vantage = _vantage(args, settings)
    try:
        hostname = options.scope.hostname_for(args.vault)
    except OutOfScope as exc:
        raise common.UsageError(f"VAULT: {exc}") from None

    if vantage.endpoint:
        key = environ.get(vantage.key_setting or "")
        result = probe_remote([hostname], vantage=vantage, function_key=key, options=options)[0]
    else:
        result = probe_vaults([hostname], vantage=vantage, options=options, credential=credential)[0]

    if args.format == "json":
        common.print_json(result_to_json(result))
    else:
        _print_table(result, vantage)
    judged = result.verdict is Verdict.ADMITTED or result.verdict.refused
    return common.EXIT_OK if judged else EXIT_NO_VERDICT


def _options(args: argparse.Namespace, settings: Settings) -> ProbeOptions:
    overrides: dict[str, Any] = {}
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise common.UsageError(f"--port: {args.port} is not a TCP port (1-65535)")
        overrides["port"] = args.port
    if args.ca_bundle is not None:
        if not os.path.isfile(args.ca_bundle):
            raise common.UsageError(f"--ca-bundle: {args.ca_bundle}: no such file")
        overrides["ca_bundle"] = args.ca_bundle
    if args.suffix is not None:
        try:
            overrides["scope"] = ProbeScope(
                suffixes=(*settings.vault_suffixes, args.suffix), default_suffix=args.suffix
            )
        except ValueError as exc:
            raise common.UsageError(f"--suffix: {exc}") from None
    if args.resolver is not None:
        try:
            parse_resolver(args.resolver)
        except ValueError as exc:
            raise common.UsageError(f"--resolver: {exc}") from None
    options = ProbeOptions.from_settings(settings, **overrides)
    if args.timeout is not None:
        if not 0 < args.timeout <= 120:
            raise common.UsageError("--timeout: must be between 0 and 120 seconds")
        options = dataclasses.replace(
            options,
            dns_timeout_s=args.timeout,
            connect_timeout_s=args.timeout,
            tls_timeout_s=args.timeout,
            http_timeout_s=args.timeout,
        )
    return options


def _vantage(args: argparse.Namespace, settings: Settings) -> Vantage:
    if args.vantages:
        try:
            defined = load_vantages(args.vantages)
        except VantageConfigError as exc:
            raise common.UsageError(f"--vantages: {exc}") from None
    else:
        defined = list(settings.vantages)
    if args.vantage:
        found = next((v for v in defined if v.name.lower() == args.vantage.lower()), None)
        if found is None:
            known = (
                ", ".join(v.name for v in defined) or "none defined (use --vantages FILE or KVMON_VANTAGES)"
            )
            raise common.UsageError(f"--vantage: no vantage point named {args.vantage!r}; known: {known}")
        vantage = found
    else:
        vantage = Vantage(
            name=settings.vantage, inside=None
        )  # a place nobody stated (README, Vantage points)
    if args.source_address is not None:
        try:
            source = str(ipaddress.ip_address(args.source_address))
        except ValueError:
            raise common.UsageError(
                f"--source-address: {args.source_address!r} is not an IP address"
            ) from None
        vantage = dataclasses.replace(vantage, source_address=source)
    if args.resolver is not None:
        vantage = dataclasses.replace(vantage, resolver=args.resolver)
    if vantage.endpoint and (args.source_address or args.resolver):
        raise common.UsageError(
            f"--source-address/--resolver: vantage point {vantage.name} probes remotely; they apply to local probes"
        )
    return vantage


def _print_table(result: ProbeResult, vantage: Vantage) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"{result.hostname or result.vault_name} from {vantage.name}"
    table = Table(title=title, show_lines=True)
    for column in ("Step", "Outcome", "Detail"):
        table.add_column(column, overflow="fold")
    for step, outcome, detail in _rows(result):
        table.add_row(step, outcome, detail)
    Console(soft_wrap=not common.is_terminal()).print(table)


def _rows(result: ProbeResult) -> list[tuple[str, str, str]]:
    if result.vantage_error is not None:
        return [("vantage", "no answer", result.vantage_error)]
    rows: list[tuple[str, str, str]] = []
    dns = result.dns
    if dns is not None:
        private = set(dns.private_addresses)
        answers = ", ".join(f"{a} ({'private' if a in private else 'public'})" for a in dns.addresses)
        detail = [
            f"resolver: {dns.resolver or 'system'}",
            f"chain: {' -> '.join(dns.chain) or dns.query}",
            f"privatelink in chain: {'yes' if dns.private_link_in_chain else 'no'}",
            _ms(dns.elapsed_ms),
        ]
        if dns.error:
            detail.append(dns.error)
        rows.append(("DNS", answers or "no address", "\n".join(d for d in detail if d)))
    tls = result.tls
    if tls is not None:
        target = f"{tls.address}:{tls.port}" if tls.address else f"port {tls.port}"
        if tls.handshake_ok:
            outcome = "certificate valid"
        elif tls.certificate_valid is False:
            outcome = "CERTIFICATE NOT VALID"
        else:
            outcome = "connected, no TLS" if tls.connected else "not connected"
        detail = [target, f"connect {_ms(tls.connect_ms)}" if tls.connect_ms is not None else ""]
        detail += [d for d in (tls.certificate_error, tls.error) if d]
        rows.append(("TCP/TLS", outcome, "\n".join(d for d in detail if d)))
    health = result.health
    if health is not None:
        if health.seen_address:
            kind = "private" if health.seen_address_private else "public"
            outcome = f"vault saw {health.seen_address} ({kind})"
        else:
            outcome = "no address seen"
        detail = [f"HTTP {health.status_code}" if health.status_code else "", health.error or ""]
        rows.append(("health", outcome, "\n".join(d for d in detail if d)))
    step = result.data_plane
    if step is not None:
        detail = [
            f"HTTP {step.status_code}" if step.status_code else "",
            " / ".join(c for c in (step.error_code, step.inner_code) if c),
            f"client address: {step.client_address} ({'private' if step.client_address_private else 'public'})"
            if step.client_address
            else "",
            step.message or "",
        ]
        rows.append(("data plane", step.verdict.value, "\n".join(d for d in detail if d)))
    return rows


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else ""
