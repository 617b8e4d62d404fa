"""A scan of a big synthetic estate as its report document: thousands of vaults, judged by the real
rules, for the tests of what a report is at scale (the store keeps it whole, the page stays usable).

The vaults are ``lab.estate_factory.synthetic_estate``'s, read by the real normaliser; each is
probed (as data: no network) from the internet and from the Service Endpoint subnet with the
verdict its configuration gives there (every DNS answer public: no private zone is linked), and
one vault in fifty's internet probe failed. Each kind of vault has the baseline entry its team
would write (``policy_for``). The
findings are what ``monitor.judge.evaluate`` makes of that; a first scan, so every open finding
is a change (opened).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from lab.estate import INTERNET_CLIENT
from lab.estate_factory import synthetic_estate
from monitor.config.policy import Mode, Vantage, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.model import (
    ChangeKind,
    DataPlaneStep,
    DnsStep,
    ErrorSource,
    FindingChange,
    HealthStep,
    ProbeResult,
    ScanError,
    VaultPosture,
    Verdict,
)
from monitor.outputs.report import build_report_document
from monitor.scan_report import ScanReport
from monitor.sources.keyvault.normalise import normalise_vault
from tests.report.scenario import SE_SUBNET

STARTED = dt.datetime(2025, 6, 2, 8, 0, tzinfo=dt.UTC)
VANTAGES = (
    Vantage(name="internet", inside=False, source_address=INTERNET_CLIENT),
    Vantage(name="se-subnet", inside=True, subnet_id=SE_SUBNET.id, source_address=SE_SUBNET.client_address),
)
FAILED_EVERY = 50  # one vault in this many: its internet probe got no answer


def policy_for(posture: VaultPosture) -> VaultPolicy:
    """The baseline entry a team would write for each kind of synthetic vault (its ``kind`` tag)."""
    kind = posture.tags.get("kind", "")
    if kind.startswith("se-"):
        return VaultPolicy(
            entry="service-endpoint vaults",
            mode=Mode.SERVICE_ENDPOINT,
            allowed_subnets=(SE_SUBNET.id.lower(),),
            baseline_given=True,
        )
    if kind.startswith("pl-") or kind == "locked":
        return VaultPolicy(entry="private-link vaults", mode=Mode.PRIVATE_LINK, baseline_given=True)
    if kind.startswith("ip-"):
        return VaultPolicy(entry="ip-firewall vaults", mode=Mode.IP_FIREWALL, baseline_given=True)
    return VaultPolicy(baseline_given=True)  # "open": no entry matched (KV013)


def _probe(posture: VaultPosture, vantage: Vantage, *, failed: bool) -> ProbeResult:
    hostname = f"{posture.name}.vault.lab.test"
    started = STARTED + dt.timedelta(seconds=1)
    if failed:
        return ProbeResult(
            vault_name=posture.name,
            vantage=vantage.name,
            hostname=hostname,
            started_at=started,
            dns=DnsStep(hostname, error=f"no answer from 127.0.0.1:53 within 2s for {hostname}"),
        )
    dns = DnsStep(hostname, chain=(hostname,), addresses=("127.20.0.2",))
    through_subnet = vantage.subnet_id is not None and any(
        rule.subnet_id.lower() == vantage.subnet_id.lower() for rule in posture.virtual_network_rules
    )
    if (posture.public_network_access or "").lower() == "disabled":
        plane = DataPlaneStep(Verdict.REFUSED_PUBLIC_DISABLED, 403, "Forbidden", "ForbiddenByConnection")
    elif posture.publicly_open or through_subnet:
        plane = DataPlaneStep(Verdict.ADMITTED, 404, "SecretNotFound")
    else:
        plane = DataPlaneStep(Verdict.REFUSED_FIREWALL, 403, "Forbidden", "ForbiddenByFirewall")
    seen = vantage.source_address if through_subnet else INTERNET_CLIENT
    return ProbeResult(
        vault_name=posture.name,
        vantage=vantage.name,
        hostname=hostname,
        started_at=started,
        dns=dns,
        health=HealthStep(200, seen_address=seen, seen_address_private=through_subnet),
        data_plane=plane,
        duration_ms=12.0,
    )


def estate_scan(*, vaults: int, subscriptions: int) -> ScanReport:
    estate = synthetic_estate(vaults=vaults, subscriptions=subscriptions)
    postures = [normalise_vault(raw) for raw in estate.vaults.values()]
    probes = [
        _probe(posture, vantage, failed=vantage.name == "internet" and index % FAILED_EVERY == 0)
        for index, posture in enumerate(postures)
        for vantage in VANTAGES
    ]
    by_vault: dict[str, list[ProbeResult]] = {}
    for probe in probes:
        by_vault.setdefault(probe.vault_name, []).append(probe)
    evaluation = evaluate(
        (
            VaultFacts(
                posture=posture,
                policy=policy_for(posture),
                probes=tuple(by_vault[posture.name]),
                vantages=VANTAGES,
                scan_started_at=STARTED,
            )
            for posture in postures
        ),
        today=STARTED.date(),
    )
    errors = [
        ScanError(ErrorSource.PROBE, posture.id, f"{posture.name}.vault.lab.test from internet: unreachable")
        for index, posture in enumerate(postures)
        if index % FAILED_EVERY == 0
    ]
    return ScanReport(
        scan_id="20250602T080000Z-5ca1ab1e",
        started_at=STARTED,
        finished_at=STARTED + dt.timedelta(seconds=55),
        scope=tuple(estate.subscriptions),
        postures=postures,
        probes=probes,
        findings=list(evaluation.findings),
        changes=[FindingChange(ChangeKind.OPENED, finding) for finding in evaluation.findings],
        errors=errors,
        incomplete={posture.key: {"probes"} for posture in postures[::FAILED_EVERY]},
    )


@functools.cache
def estate_document(*, vaults: int = 10_000, subscriptions: int = 100) -> dict[str, Any]:
    """The report document of ``estate_scan`` (built once per size: callers must not change it)."""
    report = estate_scan(vaults=vaults, subscriptions=subscriptions)
    return build_report_document(
        report,
        vantages=VANTAGES,
        policies={posture.key: policy_for(posture) for posture in report.postures},
        generated_at=report.finished_at or STARTED,
    )
