"""Bad input and a hostile network: unknown names, names outside the scope, resolvers that do not
answer, a certificate for another name, an address that swallows connections, a vault that stalls.
Every step stays bounded by its timeout and is recorded even when a later one fails."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest

from lab.credential import LabCredential
from lab.estate import PUBLIC_INGRESS, walkthrough_estate
from lab.http import Fault
from lab.services import walkthrough_vantages
from lab.world import LabWorld
from monitor.config.policy import Vantage, VaultPolicy
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.model import Verdict
from monitor.sources.keyvault.normalise import normalise_vault
from probes.endpoint import handle_probe_request
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.scope import OutOfScope, ProbeScope
from tests.probes.conftest import LAB_SPACE, SocketAudit, lab_options

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_unknown_vault_is_nxdomain_and_unreachable(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    result = probe_vaults(
        ["kv-nobody-home"], vantage=vantages["internet"], options=options, credential=credential
    )[0]

    assert result.dns is not None
    assert result.dns.error == "NXDOMAIN: kv-nobody-home.vault.lab.test does not exist"
    assert result.dns.addresses == ()
    assert result.tls is not None and result.tls.address is None and not result.tls.connected
    assert result.health is not None and result.health.error is not None
    assert result.verdict is Verdict.UNREACHABLE


OUT_OF_SCOPE = [
    "evil.example.com",
    "kv-demo.vault.azure.net.evil.example.com",
    "kv.demo.vault.azure.net",
    "ab",
    "a" * 25,
    "1kv-demo",
    "kv-demo-",
    "kv--demo",
    "kv_demo",
    "kv demo",
    "https://kv-demo.vault.azure.net:8443/",
    "https://user@kv-demo.vault.azure.net/",
    "https://kv-demo.vault.azure.net/secrets/x",
    "http://kv-demo.vault.azure.net/",
    "127.0.0.1",
    "",
]


@pytest.mark.parametrize("name", OUT_OF_SCOPE)
def test_names_outside_the_scope_send_no_packet(
    name: str,
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    socket_audit: SocketAudit,
) -> None:
    dns_before, kv_before = world.dns.total_queries, world.keyvault.total_requests
    body = json.dumps({"vaults": ["kv-se-demo", name]}).encode()

    with socket_audit.watch() as events:
        status, answer = handle_probe_request(
            body, vantage=vantages["internet"], options=options, credential=credential
        )
        with pytest.raises(OutOfScope):
            probe_vaults(
                ["kv-se-demo", name], vantage=vantages["internet"], options=options, credential=credential
            )

    assert status == 400
    assert answer["error"]["message"].startswith("vaults[1]: ")
    assert events == []
    assert world.dns.total_queries == dns_before
    assert world.keyvault.total_requests == kv_before


def test_the_lab_suffix_is_refused_unless_configured(
    world: LabWorld, vantages: dict[str, Vantage], credential: LabCredential, socket_audit: SocketAudit
) -> None:
    production = lab_options(world, scope=ProbeScope())
    with socket_audit.watch() as events:
        status, answer = handle_probe_request(
            b'{"vaults": ["kv-se-demo.vault.lab.test"]}',
            vantage=vantages["internet"],
            options=production,
            credential=credential,
        )
    assert status == 400
    assert "not under a Key Vault DNS suffix" in answer["error"]["message"]
    assert events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not JSON"),
        (b"\xff\xfe", "request body is not UTF-8"),
        (b"[]", "request body must be a JSON object"),
        (b'{"vaults": []}', "vaults: must be a non-empty list"),
        (b'{"vaults": "kv-se-demo"}', "vaults: must be a non-empty list"),
        (b'{"vaults": ["kv-se-demo"], "port": 22}', "unknown field(s) in request body: port"),
        (b'{"vaults": [42]}', "vaults[0]: a vault name must be a string"),
        (json.dumps({"vaults": ["kv-se-demo"] * 1001}).encode(), "at most 1000 names"),
        (b'{"vaults": ["' + b"a" * 70000 + b'"]}', "larger than 65536 bytes"),
    ],
)
def test_bad_probe_requests_get_400_and_no_connection(
    body: bytes,
    message: str,
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    socket_audit: SocketAudit,
) -> None:
    with socket_audit.watch() as events:
        status, answer = handle_probe_request(
            body, vantage=vantages["internet"], options=options, credential=credential
        )
    assert status == 400
    assert message in answer["error"]["message"]
    assert events == []


def test_a_silent_resolver_costs_its_timeout_and_is_recorded(
    start_world: Callable[..., LabWorld], credential: LabCredential
) -> None:
    world = start_world(walkthrough_estate(), dns_mode="silent")
    vantage = walkthrough_vantages(resolver=world.resolver)[0]
    options = lab_options(world, dns_timeout_s=0.3)

    result = probe_vaults(["kv-se-demo"], vantage=vantage, options=options, credential=credential)[0]

    assert result.dns is not None
    assert result.dns.error == f"no answer from {world.resolver} within 0.3s"
    assert world.dns.total_queries >= 1  # it was asked, it kept quiet
    assert result.verdict is Verdict.UNREACHABLE
    assert world.keyvault.total_requests == 0


def test_truncated_udp_answers_are_retried_over_tcp(
    start_world: Callable[..., LabWorld], credential: LabCredential
) -> None:
    world = start_world(walkthrough_estate(), dns_mode="truncate")
    vantage = next(v for v in walkthrough_vantages(resolver=world.resolver) if v.name == "pl-subnet")

    result = probe_vaults(["kv-pl-demo"], vantage=vantage, options=lab_options(world), credential=credential)[
        0
    ]

    assert result.dns is not None and result.dns.addresses == ("127.10.2.10",)
    assert result.dns.private_link_in_chain
    assert world.dns.protocol_counts().get("tcp", 0) >= 1
    assert result.verdict is Verdict.ADMITTED


def test_a_certificate_for_another_name_is_kv107_and_gets_no_token(
    start_world: Callable[..., LabWorld], credential: LabCredential
) -> None:
    estate = walkthrough_estate()
    # A middlebox at the Private Endpoint's address presents a certificate for another name.
    world = start_world(estate, certificates={"127.10.2.10": ("intercept.example.org",)})
    vantages = {v.name: v for v in walkthrough_vantages(resolver=world.resolver)}

    result = probe_vaults(
        ["kv-pl-demo"], vantage=vantages["pl-subnet"], options=lab_options(world), credential=credential
    )[0]

    assert result.tls is not None
    assert result.tls.connected and not result.tls.handshake_ok
    assert result.tls.certificate_valid is False
    assert result.tls.certificate_error is not None
    assert "kv-pl-demo.vault.lab.test" in result.tls.certificate_error
    assert result.verdict is Verdict.ERROR
    assert world.keyvault.servers["127.10.2.10"].total_requests == 0  # no request, so no token, was sent

    vault = estate.vault_by_name("kv-pl-demo")
    assert vault is not None
    facts = VaultFacts(
        posture=normalise_vault(vault),
        policy=VaultPolicy(entry="pl", mode="private-link"),
        probes=(result,),
        vantages=tuple(vantages.values())[2:3],
        scan_started_at=NOW,
        address_space=LAB_SPACE,
    )
    findings = evaluate([facts], today=NOW.date()).findings
    assert [(f.rule_id, f.subject) for f in findings if f.rule_id.startswith("KV1")] == [
        ("KV107", "pl-subnet")
    ]


def test_a_blackholed_address_costs_its_timeout_once_per_run(
    start_world: Callable[..., LabWorld], credential: LabCredential, socket_audit: SocketAudit
) -> None:
    estate = walkthrough_estate()
    subnet = estate.subnet_named("privateLink")
    names = [f"kv-dark-{i}" for i in range(6)]
    for name in names:
        vault = estate.add_vault(
            subscription_id="00000000-0000-0000-0000-00000000a001", resource_group="rg", name=name
        )
        estate.add_private_endpoint(
            vault["id"], address="127.10.2.99", subnet_id=subnet.id, name=f"pe-{name}"
        )
    world = start_world(estate, blackholed=("127.10.2.99",))
    vantage = next(v for v in walkthrough_vantages(resolver=world.resolver) if v.name == "pl-subnet")
    options = lab_options(world, connect_timeout_s=0.3, concurrency=3)

    with socket_audit.watch():
        results = probe_vaults(
            [*names, "kv-pl-demo"], vantage=vantage, options=options, credential=credential
        )
        dark_connects = socket_audit.connects_to("127.10.2.99", world.port)

    assert dark_connects == 1
    for result in results[:-1]:
        assert result.dns is not None and result.dns.addresses == ("127.10.2.99",)
        assert result.tls is not None and not result.tls.connected
        assert result.tls.error is not None and "got no answer within 0.3s" in result.tls.error
        assert result.verdict is Verdict.UNREACHABLE
    assert (
        sum("not retried in this run" in (r.tls.error or "") for r in results[:-1] if r.tls) == len(names) - 1
    )
    assert results[-1].verdict is Verdict.ADMITTED  # the live vault behind a live address is unaffected


def test_a_stalled_data_plane_is_unreachable_and_earlier_steps_are_kept(
    world: LabWorld, vantages: dict[str, Vantage], credential: LabCredential
) -> None:
    server = world.keyvault.servers[PUBLIC_INGRESS]
    server.inject(r"^/secrets/", Fault(delay_s=1.0, status=500, times=0))
    try:
        options = lab_options(world, http_timeout_s=0.3)
        result = probe_vaults(
            ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
        )[0]
    finally:
        server.clear_faults()

    assert result.dns is not None and result.dns.addresses == (PUBLIC_INGRESS,)
    assert result.tls is not None and result.tls.handshake_ok
    assert result.health is not None and result.health.seen_address == "127.30.0.5"
    assert result.data_plane is not None
    assert result.verdict is Verdict.UNREACHABLE
    assert result.data_plane.message == f"no answer from {PUBLIC_INGRESS}:{world.port} in time"


def test_a_refusal_never_keeps_the_callers_claims(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    vault = world.estate.vault_by_name("kv-se-demo")
    assert vault is not None
    acls = vault["properties"]["networkAcls"]
    world.estate.update_vault(vault["id"], properties={"networkAcls": {**acls, "defaultAction": "Deny"}})

    result = probe_vaults(
        ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
    )[0]

    assert result.verdict is Verdict.REFUSED_FIREWALL
    text = json.dumps(repr(result))
    assert credential.app_id not in text and credential.object_id not in text
    assert "Caller:" not in text
