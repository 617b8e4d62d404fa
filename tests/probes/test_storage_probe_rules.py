"""The storage probe rules ST101-ST104 on probe results, each against the baseline's expectation of
its vantage point and sub-resource (the lab-driven cases are in test_storage_probes.py)."""

from __future__ import annotations

from typing import Any

from monitor.config.policy import Mode, Vantage, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.model import DnsStep
from monitor.model_storage import (
    StorageAccountPosture,
    StorageDataPlaneStep,
    StorageProbeResult,
    StorageSubresource,
    StorageVerdict,
)
from tests.probes.test_probe_rules import INTERNET, NOW, PL, SE, VANTAGES
from tests.storage import test_rules as st

PRIVATE_LINK = VaultPolicy(entry="pl", mode=Mode.PRIVATE_LINK)
CODES = {
    StorageVerdict.ADMITTED: "AuthorizationPermissionMismatch",
    StorageVerdict.REFUSED: "AuthorizationFailure",
}


def storage_result(
    vantage: Vantage,
    verdict: StorageVerdict,
    *,
    subresource: StorageSubresource = StorageSubresource.BLOB,
    addresses: tuple[str, ...] = ("52.1.1.1",),
    untested: str | None = None,
) -> StorageProbeResult:
    host = f"stapp.{subresource.value}.core.windows.net"
    private = tuple(a for a in addresses if a.startswith("10."))
    chain = (host, f"stapp.privatelink.{subresource.value}.core.windows.net") if private else (host,)
    return StorageProbeResult(
        account_id=st.ACCOUNT_ID,
        account_name="stapp",
        subresource=subresource,
        vantage=vantage.name,
        hostname=host,
        started_at=NOW,
        client_request_id="6f1c0e2a-0000-4000-8000-000000000001",
        dns=DnsStep(
            query=host,
            chain=chain,
            addresses=addresses,
            private_addresses=private,
            private_link_in_chain=bool(private),
        ),
        data_plane=StorageDataPlaneStep(verdict=verdict, status_code=403, error_code=CODES.get(verdict)),
        ip_rules_untested=untested,
    )


def storage_probed(
    *results: StorageProbeResult,
    policy: VaultPolicy = PRIVATE_LINK,
    posture: StorageAccountPosture | None = None,
) -> StorageFacts:
    return StorageFacts(
        posture=posture or st.closed(), policy=policy, probes=results, vantages=VANTAGES, scan_started_at=NOW
    )


def hits(facts: StorageFacts) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in evaluate([facts], today=NOW.date()).findings:
        if finding.rule_id.startswith("ST1"):
            found.setdefault(finding.rule_id, []).append(finding.subject)
    return {rule: sorted(subjects) for rule, subjects in found.items()}


def _summaries(facts: StorageFacts, rule_id: str) -> list[Any]:
    return [f.summary for f in evaluate([facts], today=NOW.date()).findings if f.rule_id == rule_id]


def test_private_link_blob_inside_and_dfs_left_public() -> None:
    facts = storage_probed(
        storage_result(PL, StorageVerdict.ADMITTED, addresses=("10.1.2.60",)),
        storage_result(PL, StorageVerdict.REFUSED, subresource=StorageSubresource.DFS),
        storage_result(INTERNET, StorageVerdict.REFUSED),
        storage_result(INTERNET, StorageVerdict.ADMITTED, subresource=StorageSubresource.DFS),
    )
    assert hits(facts) == {
        "ST101": ["internet/dfs"],
        "ST102": ["pl-subnet/dfs"],
        "ST103": ["pl-subnet/dfs"],
    }
    [dns] = _summaries(facts, "ST103")
    assert "privatelink.dfs.core.windows.net" in dns and "expects private" in dns


def test_service_endpoint_mode_admits_the_rule_subnet_only() -> None:
    policy = VaultPolicy(
        entry="se", mode=Mode.SERVICE_ENDPOINT, allowed_subnets=((SE.subnet_id or "").lower(),)
    )
    facts = storage_probed(
        storage_result(SE, StorageVerdict.REFUSED, subresource=StorageSubresource.QUEUE),
        storage_result(PL, StorageVerdict.REFUSED, subresource=StorageSubresource.QUEUE),
        policy=policy,
        posture=st.firewalled(),
    )
    assert hits(facts) == {"ST102": ["se-subnet/queue"]}


def test_unknown_and_unreachable_results_are_not_judged() -> None:
    facts = storage_probed(
        storage_result(INTERNET, StorageVerdict.UNKNOWN),
        storage_result(PL, StorageVerdict.UNREACHABLE, addresses=()),
    )
    assert hits(facts) == {}


def test_an_untested_ip_rule_is_said_once_per_vantage_point() -> None:
    note = "vantage point internet runs in westeurope, the account's region: ..."
    facts = storage_probed(
        storage_result(INTERNET, StorageVerdict.REFUSED, untested=note),
        storage_result(INTERNET, StorageVerdict.REFUSED, subresource=StorageSubresource.DFS, untested=note),
        policy=VaultPolicy(entry="ip", mode=Mode.IP_FIREWALL),
        posture=st.firewalled(),
    )
    assert hits(facts) == {"ST104": ["internet"]}
    assert _summaries(facts, "ST104") == [note]
