"""The walkthrough's matrix, from real probe runs against the lab: split-horizon DNS, the Key
Vault data plane enforcing the estate's firewall by source address, and the probe rules judging
what each vantage point saw."""

from __future__ import annotations

import datetime as dt

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, PUBLIC_INGRESS, Estate
from lab.world import LabWorld
from monitor.config.policy import Vantage, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.model import Finding, ProbeResult, Verdict
from monitor.sources.keyvault.normalise import normalise_vault
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from tests.probes.conftest import LAB_SPACE

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _vault_id(estate: Estate, name: str) -> str:
    vault = estate.vault_by_name(name)
    assert vault is not None
    return str(vault["id"])


def _probe(
    name: str, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> dict[str, ProbeResult]:
    return {
        vantage.name: probe_vaults([name], vantage=vantage, options=options, credential=credential)[0]
        for vantage in vantages.values()
    }


def _findings(
    estate: Estate,
    name: str,
    policy: VaultPolicy,
    results: dict[str, ProbeResult],
    vantages: dict[str, Vantage],
) -> list[Finding]:
    facts = VaultFacts(
        posture=normalise_vault(estate.vault(_vault_id(estate, name)) or {}),
        policy=policy,
        probes=tuple(results.values()),
        vantages=tuple(vantages.values()),
        scan_started_at=NOW,
        address_space=LAB_SPACE,
    )
    return [f for f in evaluate([facts], today=NOW.date()).findings if f.rule_id.startswith("KV1")]


def _ids(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule_id, f.subject) for f in findings}


def _service_endpoint_policy(world: LabWorld) -> VaultPolicy:
    subnet = world.estate.subnet_named("serviceEndpoint")
    return VaultPolicy(entry="se", mode="service-endpoint", allowed_subnets=(subnet.id.lower(),))


PRIVATE_LINK_POLICY = VaultPolicy(entry="pl", mode="private-link")


def test_service_endpoint_vault_with_default_allow_is_open_to_the_internet(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    results = _probe("kv-se-demo", vantages, options, credential)

    internet = results["internet"]
    assert internet.dns is not None and internet.dns.addresses == (PUBLIC_INGRESS,)
    assert internet.verdict is Verdict.ADMITTED
    assert internet.data_plane is not None and internet.data_plane.status_code == 404
    assert internet.seen_address == INTERNET_CLIENT
    # The Service Endpoint changed the address the vault sees from its subnet, not who may connect.
    assert results["se-subnet"].verdict is Verdict.ADMITTED
    assert results["se-subnet"].seen_address == "127.10.1.4"
    assert results["se-subnet"].health is not None and results["se-subnet"].health.seen_address_private

    findings = _findings(world.estate, "kv-se-demo", _service_endpoint_policy(world), results, vantages)
    ids = _ids(findings)
    assert ("KV101", "internet") in ids
    assert ("KV101", "default-subnet") in ids
    assert not any(rule == "KV101" and subject == "se-subnet" for rule, subject in ids)
    kv101 = next(f for f in findings if (f.rule_id, f.subject) == ("KV101", "internet"))
    assert kv101.severity.value == "critical"
    assert kv101.evidence["seen_address"] == INTERNET_CLIENT


def test_service_endpoint_vault_fixed_to_deny(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    vault_id = _vault_id(world.estate, "kv-se-demo")
    acls = (world.estate.vault(vault_id) or {})["properties"]["networkAcls"]
    world.estate.update_vault(vault_id, properties={"networkAcls": {**acls, "defaultAction": "Deny"}})

    results = _probe("kv-se-demo", vantages, options, credential)

    internet = results["internet"]
    assert internet.verdict is Verdict.REFUSED_FIREWALL
    assert internet.data_plane is not None
    assert internet.data_plane.inner_code == "ForbiddenByFirewall"
    assert internet.data_plane.client_address == INTERNET_CLIENT
    assert internet.data_plane.client_address_private is False
    assert (
        internet.data_plane.message == "Client address is not authorized and caller is not a trusted service."
    )

    se = results["se-subnet"]
    assert se.verdict is Verdict.ADMITTED
    assert se.seen_address == "127.10.1.4"
    assert se.health is not None and se.health.seen_address_private is True

    default = results["default-subnet"]
    assert default.verdict is Verdict.REFUSED_FIREWALL
    assert default.data_plane is not None and default.data_plane.client_address == "127.20.0.3"  # its NAT

    findings = _findings(world.estate, "kv-se-demo", _service_endpoint_policy(world), results, vantages)
    assert findings == []


def test_service_endpoint_lost_shows_a_public_source_and_a_refusal(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    vault_id = _vault_id(world.estate, "kv-se-demo")
    acls = (world.estate.vault(vault_id) or {})["properties"]["networkAcls"]
    world.estate.update_vault(vault_id, properties={"networkAcls": {**acls, "defaultAction": "Deny"}})
    world.estate.subnet_named("serviceEndpoint").service_endpoint_keyvault = False

    results = _probe("kv-se-demo", {"se-subnet": vantages["se-subnet"]}, options, credential)

    se = results["se-subnet"]
    assert se.verdict is Verdict.REFUSED_FIREWALL
    assert se.data_plane is not None and se.data_plane.client_address == "127.20.0.1"
    ids = _ids(_findings(world.estate, "kv-se-demo", _service_endpoint_policy(world), results, vantages))
    assert {("KV102", "se-subnet"), ("KV105", "se-subnet")} <= ids


def test_private_link_vault_from_its_subnet_resolves_privately_and_is_admitted(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    result = probe_vaults(
        ["kv-pl-demo"], vantage=vantages["pl-subnet"], options=options, credential=credential
    )[0]

    assert result.dns is not None
    assert result.dns.chain == ("kv-pl-demo.vault.lab.test", "kv-pl-demo.privatelink.vaultcore.lab.test")
    assert result.dns.addresses == ("127.10.2.10",)
    assert result.dns.private_link_in_chain and result.dns.resolves_private
    assert result.tls is not None and result.tls.address == "127.10.2.10" and result.tls.certificate_valid
    assert result.verdict is Verdict.ADMITTED
    assert result.seen_address == "127.10.2.5"
    record = world.estate.access_records()[-1]
    assert record.vault_name == "kv-pl-demo"
    assert record.address_auth_type == "PrivateEndpoint"
    assert record.private_endpoint_id.endswith("/privateEndpoints/pe-kv-pl-demo")


def test_private_link_vault_from_the_unlinked_spoke_resolves_publicly(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    results = _probe("kv-pl-demo", vantages, options, credential)

    spoke = results["spoke"]
    assert spoke.dns is not None
    assert spoke.dns.addresses == (PUBLIC_INGRESS,)
    assert spoke.dns.private_link_in_chain  # the CNAME is there; the zone is not linked
    assert spoke.seen_address == "127.20.0.4"

    findings = _findings(world.estate, "kv-pl-demo", PRIVATE_LINK_POLICY, results, vantages)
    ids = _ids(findings)
    assert ("KV103", "spoke") in ids
    assert not any(rule == "KV103" and subject != "spoke" for rule, subject in ids)
    kv103 = next(f for f in findings if (f.rule_id, f.subject) == ("KV103", "spoke"))
    assert "privatelink.vaultcore.lab.test" in kv103.summary
    # Public access is still enabled, so the internet gets in: live exposure.
    assert results["internet"].verdict is Verdict.ADMITTED
    assert ("KV101", "internet") in ids


def test_linking_the_zone_to_the_spoke_resolves_the_finding(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    spoke_vnet = next(v for v in world.estate.vnets if v.name == "vnet-spoke")
    spoke_vnet.private_dns_zone_linked = True

    results = _probe("kv-pl-demo", {"spoke": vantages["spoke"]}, options, credential)

    spoke = results["spoke"]
    assert spoke.dns is not None and spoke.dns.addresses == ("127.10.2.10",)
    assert spoke.verdict is Verdict.ADMITTED
    assert spoke.seen_address == "127.11.1.4"
    ids = _ids(_findings(world.estate, "kv-pl-demo", PRIVATE_LINK_POLICY, results, vantages))
    assert ("KV103", "spoke") not in ids


def test_private_link_vault_with_public_access_disabled(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    world.estate.update_vault(
        _vault_id(world.estate, "kv-pl-demo"), properties={"publicNetworkAccess": "Disabled"}
    )

    results = _probe("kv-pl-demo", vantages, options, credential)

    assert results["internet"].verdict is Verdict.REFUSED_PUBLIC_DISABLED
    assert results["internet"].data_plane is not None
    assert results["internet"].data_plane.inner_code == "ForbiddenByConnection"
    assert results["pl-subnet"].verdict is Verdict.ADMITTED
    assert results["spoke"].verdict is Verdict.REFUSED_PUBLIC_DISABLED
    ids = _ids(_findings(world.estate, "kv-pl-demo", PRIVATE_LINK_POLICY, results, vantages))
    assert not any(rule == "KV101" for rule, _ in ids)
    assert {("KV102", "spoke"), ("KV103", "spoke")} <= ids


def test_every_secret_request_is_in_the_access_log(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    vault_id = _vault_id(world.estate, "kv-se-demo")
    acls = (world.estate.vault(vault_id) or {})["properties"]["networkAcls"]
    world.estate.update_vault(vault_id, properties={"networkAcls": {**acls, "defaultAction": "Deny"}})

    _probe(
        "kv-se-demo",
        {"internet": vantages["internet"], "se-subnet": vantages["se-subnet"]},
        options,
        credential,
    )

    records = [r for r in world.estate.access_records() if r.vault_name == "kv-se-demo"]
    assert all(r.operation == "SecretGet" and r.vault_id == vault_id for r in records)
    refused = [r for r in records if r.http_status == 403]
    assert len(refused) == 1
    assert refused[0].caller_address == INTERNET_CLIENT
    assert refused[0].result_signature == "Forbidden" and not refused[0].is_address_authorized
    assert refused[0].identity_appid == credential.app_id and refused[0].identity_oid == credential.object_id
    admitted = [r for r in records if r.http_status == 404]
    assert len(admitted) == 1
    assert admitted[0].caller_address == "127.10.1.4"
    assert admitted[0].address_auth_type == "Subnet"
    assert admitted[0].subnet_id == world.estate.subnet_named("serviceEndpoint").id
    assert admitted[0].is_address_authorized and admitted[0].result_signature == "NotFound"
    # 401 challenges appear only while the SDK has not cached the vault's challenge yet.
    assert all(r.http_status in (401, 403, 404) for r in records)
