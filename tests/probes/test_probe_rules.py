"""KV101-KV107 as pure checks: each fires on its evidence and stays quiet without it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.config.policy import Vantage, VantageExpectation, VaultPolicy
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import (
    DataPlaneStep,
    DnsStep,
    EvidenceSource,
    HealthStep,
    PrivateEndpointConnection,
    ProbeResult,
    TlsStep,
    VaultPosture,
    Verdict,
    VirtualNetworkRule,
)
from monitor.netaddr import AddressSpace

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SPACE = AddressSpace()
SUBNETS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets"
SE_SUBNET = f"{SUBNETS}/se"
PL_SUBNET = f"{SUBNETS}/pl"
PUBLIC_FRONT_END = "20.38.1.1"

INTERNET = Vantage(name="internet", inside=False)
SE = Vantage(name="se-subnet", inside=True, subnet_id=SE_SUBNET)
PL = Vantage(name="pl-subnet", inside=True, subnet_id=PL_SUBNET)
VANTAGES = (INTERNET, SE, PL)


def _posture(**changes: object) -> VaultPosture:
    posture = VaultPosture(
        id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-a",
        name="kv-a",
        subscription_id="s",
        resource_group="rg",
        location="westeurope",
        vault_uri="https://kv-a.vault.azure.net/",
        public_network_access="Enabled",
        network_acls_present=True,
        default_action="Deny",
        bypass="AzureServices",
        virtual_network_rules=(VirtualNetworkRule(SE_SUBNET.lower()),),
    )
    return dataclasses.replace(posture, **changes)  # type: ignore[arg-type]


PE = PrivateEndpointConnection(
    id="c", private_endpoint_id="pe", status="Approved", provisioning_state="Succeeded"
)


def _result(
    vantage: Vantage,
    *,
    verdict: Verdict = Verdict.ADMITTED,
    addresses: tuple[str, ...] = (PUBLIC_FRONT_END,),
    seen: str | None = None,
    client_address: str | None = None,
    certificate_valid: bool | None = True,
    started_at: dt.datetime = NOW,
    vantage_error: str | None = None,
) -> ProbeResult:
    return ProbeResult(
        vault_name="kv-a",
        vantage=vantage.name,
        hostname="kv-a.vault.azure.net",
        started_at=started_at,
        dns=DnsStep(
            "kv-a.vault.azure.net",
            chain=("kv-a.vault.azure.net",),
            addresses=addresses,
            private_addresses=tuple(a for a in addresses if SPACE.is_private(a)),
        ),
        tls=TlsStep(
            addresses[0] if addresses else None,
            443,
            connected=True,
            handshake_ok=bool(certificate_valid),
            certificate_valid=certificate_valid,
            certificate_error=None if certificate_valid is not False else "certificate not valid for kv-a",
        ),
        health=HealthStep(200, seen) if seen else None,
        data_plane=DataPlaneStep(verdict, 403 if verdict.refused else 404, client_address=client_address),
        vantage_error=vantage_error,
    )


def _hits(
    rule_id: str, *results: ProbeResult, policy: VaultPolicy | None = None, **facts: object
) -> list[str]:
    values: dict[str, object] = {
        "posture": _posture(),
        "policy": policy or VaultPolicy(mode="service-endpoint"),
        "probes": results,
        "vantages": VANTAGES,
        "scan_started_at": NOW,
    }
    values.update(facts)
    return [hit.subject for hit in RULES_BY_ID[rule_id].check(VaultFacts(**values))]  # type: ignore[arg-type]


def test_kv101_admitted_where_refusal_is_expected() -> None:
    assert _hits("KV101", _result(INTERNET, seen="52.1.1.1")) == ["internet"]
    assert _hits("KV101", _result(INTERNET, verdict=Verdict.REFUSED_FIREWALL)) == []
    assert _hits("KV101", _result(SE, seen="10.1.1.4")) == []  # SE subnet is allowed
    assert _hits("KV101", _result(INTERNET), policy=VaultPolicy(mode="public")) == []
    explicit = VaultPolicy(mode="public", vantages={"internet": VantageExpectation(reach="refused")})
    assert _hits("KV101", _result(INTERNET), policy=explicit) == ["internet"]
    assert _hits("KV101", _result(Vantage(name="unknown", inside=False))) == []


def test_kv102_refused_or_unreachable_where_admission_is_expected() -> None:
    assert _hits("KV102", _result(SE, verdict=Verdict.REFUSED_FIREWALL, client_address="52.1.1.1")) == [
        "se-subnet"
    ]
    assert _hits("KV102", _result(SE, verdict=Verdict.UNREACHABLE, addresses=())) == ["se-subnet"]
    assert _hits("KV102", _result(SE, verdict=Verdict.ERROR)) == []
    assert _hits("KV102", _result(INTERNET, verdict=Verdict.REFUSED_FIREWALL)) == []
    assert _hits("KV102", _result(SE, verdict=Verdict.REFUSED_FIREWALL, vantage_error="down")) == []


def test_kv103_private_link_vault_resolving_public_inside() -> None:
    policy = VaultPolicy(mode="private-link")
    assert _hits("KV103", _result(PL), policy=policy) == ["pl-subnet"]
    assert _hits("KV103", _result(PL, addresses=("10.2.0.10",)), policy=policy) == []
    assert _hits("KV103", _result(INTERNET), policy=policy) == []
    # Without a baseline entry, an approved Private Endpoint makes the vault a Private Link vault.
    pe_posture = _posture(private_endpoint_connections=(PE,))
    assert _hits("KV103", _result(PL), policy=VaultPolicy(), posture=pe_posture) == ["pl-subnet"]
    assert _hits("KV103", _result(PL), policy=VaultPolicy()) == []


def test_kv104_private_address_outside() -> None:
    assert _hits("KV104", _result(INTERNET, addresses=("10.2.0.10",))) == ["internet"]
    assert _hits("KV104", _result(INTERNET)) == []
    assert _hits("KV104", _result(PL, addresses=("10.2.0.10",))) == []


def test_kv105_public_source_on_a_private_path() -> None:
    assert _hits("KV105", _result(SE, seen="52.1.1.1")) == ["se-subnet"]
    assert _hits("KV105", _result(SE, seen="10.1.1.4")) == []
    refused = _result(SE, verdict=Verdict.REFUSED_FIREWALL, client_address="52.1.1.1")
    assert _hits("KV105", refused) == ["se-subnet"]
    assert _hits("KV105", _result(PL, seen="52.1.1.1")) == []  # PL subnet: no path expected here
    assert _hits("KV105", _result(PL, seen="52.1.1.1"), policy=VaultPolicy(mode="private-link")) == [
        "pl-subnet"
    ]
    # The scan's address space decides: a VNet on non-RFC 1918 space is private when configured.
    custom = AddressSpace.with_extra(["52.1.0.0/16"])
    assert _hits("KV105", _result(SE, seen="52.1.1.1"), address_space=custom) == []


def test_kv106_silent_stale_or_missing_vantage() -> None:
    only_internet = (INTERNET,)
    assert _hits("KV106", _result(INTERNET, vantage_error="timed out"), vantages=only_internet) == [
        "internet"
    ]
    stale = _result(INTERNET, started_at=NOW - dt.timedelta(minutes=31))
    assert _hits("KV106", stale, vantages=only_internet) == ["internet"]
    fresh = _result(INTERNET, started_at=NOW - dt.timedelta(minutes=29))
    assert _hits("KV106", fresh, vantages=only_internet) == []
    assert _hits("KV106", fresh, vantages=(INTERNET, SE)) == ["se-subnet"]
    assert _hits("KV106") == []  # probes did not run for this vault at all
    hit = next(
        iter(
            RULES_BY_ID["KV106"].check(
                VaultFacts(_posture(), VaultPolicy(), probes=(stale,), scan_started_at=NOW)
            )
        )
    )
    assert "31m old" in hit.summary


def test_kv107_certificate_not_valid() -> None:
    assert _hits("KV107", _result(PL, certificate_valid=False)) == ["pl-subnet"]
    assert _hits("KV107", _result(PL, certificate_valid=None)) == []
    assert _hits("KV107", _result(PL)) == []


@pytest.mark.parametrize("rule_id", [f"KV10{i}" for i in range(1, 8)])
def test_probe_rules_are_in_the_catalog(rule_id: str) -> None:
    rule = RULES_BY_ID[rule_id]
    assert rule.source is EvidenceSource.PROBES
    assert rule.references and rule.remediation_cli and rule.remediation_bicep
    assert rule.remediation_for(_posture(), subject="internet")


def test_an_approved_connection_whose_provisioning_failed_is_no_private_endpoint() -> None:
    failed = dataclasses.replace(PE, provisioning_state="Failed")
    posture = _posture(private_endpoint_connections=(failed,))
    private_link = VaultPolicy(mode="private-link")
    assert _hits("KV009", posture=posture) == ["c"]  # the one rule that reports the connection
    assert _hits("KV008", posture=posture) == []  # no private path beside the public one
    assert _hits("KV010", policy=private_link, posture=posture) == [""]  # none working
    # Resolving public from inside is the failed connection's doing, not the private DNS zone's.
    assert _hits("KV103", _result(PL), policy=private_link, posture=posture) == []
    assert _hits("KV103", _result(PL), policy=VaultPolicy(), posture=posture) == []
    working = _posture(private_endpoint_connections=(PE,))
    assert _hits("KV103", _result(PL), policy=private_link, posture=working) == ["pl-subnet"]
    assert _hits("KV008", posture=working) == [""]
