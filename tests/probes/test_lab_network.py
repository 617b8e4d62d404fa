"""The lab's split-horizon DNS and Key Vault data plane, asked directly (dnspython, and kvmon's pinned HTTPS connection)."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from lab.estate import INGRESS_NAME, LAB_TENANT, PUBLIC_INGRESS, lab_token
from lab.keyvault import challenge_resource
from lab.world import LabWorld
from probes.dataplane import PinnedConnection, PinnedRoute
from probes.network import tls_context


def _ask(world: LabWorld, name: str, *, source: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, "127.0.0.1", port=world.dns.port, source=source, timeout=2)


def _records(reply: dns.message.Message) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text().rstrip("."), dns.rdatatype.to_text(rrset.rdtype), item.to_text().rstrip("."))
        for rrset in reply.answer
        for item in rrset
    ]


def test_dns_answers_by_the_source_address(world: LabWorld) -> None:
    inside = _ask(world, "kv-pl-demo.vault.lab.test", source="127.10.2.5")
    outside = _ask(world, "kv-pl-demo.vault.lab.test", source="127.30.0.5")

    assert _records(inside) == [
        ("kv-pl-demo.vault.lab.test", "CNAME", "kv-pl-demo.privatelink.vaultcore.lab.test"),
        ("kv-pl-demo.privatelink.vaultcore.lab.test", "A", "127.10.2.10"),
    ]
    assert _records(outside) == [
        ("kv-pl-demo.vault.lab.test", "CNAME", "kv-pl-demo.privatelink.vaultcore.lab.test"),
        ("kv-pl-demo.privatelink.vaultcore.lab.test", "CNAME", INGRESS_NAME),
        (INGRESS_NAME, "A", PUBLIC_INGRESS),
    ]


def test_dns_unknown_names_and_other_types(world: LabWorld) -> None:
    assert _ask(world, "kv-nobody.vault.lab.test", source="127.30.0.5").rcode() == dns.rcode.NXDOMAIN
    assert _ask(world, "www.example.com", source="127.30.0.5").rcode() == dns.rcode.NXDOMAIN
    aaaa = _ask(world, "kv-se-demo.vault.lab.test", source="127.30.0.5", rdtype="AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR
    assert [kind for _, kind, _ in _records(aaaa)] == ["CNAME"]
    assert _records(_ask(world, INGRESS_NAME, source="127.30.0.5")) == [(INGRESS_NAME, "A", PUBLIC_INGRESS)]


def _connect(world: LabWorld, vault: str, *, source: str, address: str = PUBLIC_INGRESS) -> PinnedConnection:
    route = PinnedRoute(
        hostname=f"{vault}.vault.lab.test",
        address=address,
        port=world.port,
        source_address=source,
        connect_timeout_s=2,
        read_timeout_s=2,
    )
    return PinnedConnection(route, context=tls_context(world.ca_path))


def test_a_request_without_token_gets_the_challenge_and_is_logged(world: LabWorld) -> None:
    connection = _connect(world, "kv-se-demo", source="127.30.0.5")
    with connection:
        response = connection.request("GET", "/secrets/anything/?api-version=7.5")

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{LAB_TENANT}", '
        f'resource="https://vault.lab.test:{world.port}"'
    )
    assert response.json()["error"]["message"] == "AKV10000: Request is missing a Bearer or PoP token."
    (record,) = world.estate.access_records()
    assert (record.http_status, record.result_signature, record.operation) == (
        401,
        "Unauthorized",
        "SecretGet",
    )
    assert record.caller_address == "127.30.0.5"
    assert (
        record.request_uri
        == f"https://kv-se-demo.vault.lab.test:{world.port}/secrets/anything/?api-version=7.5"
    )


def test_a_token_for_another_audience_is_refused(world: LabWorld) -> None:
    connection = _connect(world, "kv-se-demo", source="127.30.0.5")
    token = lab_token(object_id="o", app_id="a", audience="https://vault.azure.net")
    with connection:
        response = connection.request("GET", "/secrets/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert "AKV10022" in response.json()["error"]["message"]


@pytest.mark.parametrize(("source", "seen"), [("127.10.1.4", "127.10.1.4"), ("127.10.3.4", "127.20.0.3")])
def test_healthstatus_tells_the_address_the_vault_saw(world: LabWorld, source: str, seen: str) -> None:
    connection = _connect(world, "kv-se-demo", source=source)
    with connection:
        response = connection.request("GET", "/healthstatus")
    assert response.status == 200
    assert (
        response.headers["x-ms-keyvault-network-info"]
        == f"conn_type=Ipv4;addr={seen};act_addr_fam=InterNetwork;"
    )
    assert world.estate.access_records() == []  # health is not an audited operation


def test_the_vault_is_the_one_the_host_header_names(world: LabWorld) -> None:
    connection = _connect(world, "kv-unknown", source="127.30.0.5")
    token = lab_token(object_id="o", app_id="a", audience=challenge_resource(world.port))
    with connection:
        response = connection.request("GET", "/secrets/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 404
    assert response.json()["error"]["code"] == "VaultNotFound"


def test_the_private_endpoint_admits_only_its_vault_from_inside(world: LabWorld) -> None:
    token = lab_token(object_id="o", app_id="a", audience=challenge_resource(world.port))
    headers = {"Authorization": f"Bearer {token}"}
    # The SE vault asked through the PL vault's Private Endpoint: no approved connection for it.
    connection = _connect(world, "kv-se-demo", source="127.10.2.5", address="127.10.2.10")
    with connection:
        response = connection.request("GET", "/secrets/x", headers=headers)
    assert response.status == 403
    assert response.json()["error"]["innererror"]["code"] == "ForbiddenByConnection"
    connection = _connect(world, "kv-pl-demo", source="127.10.2.5", address="127.10.2.10")
    with connection:
        assert connection.request("GET", "/secrets/x", headers=headers).status == 404
