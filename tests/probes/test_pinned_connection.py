"""One connection per probe: the TLS step's connection carries /healthstatus and the data-plane
read, a connection the server closed is opened again with the same checks, and the SDK's
transport sends to the probed vault only."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.keyvault.secrets import SecretClient

from lab.credential import LabCredential
from lab.estate import PUBLIC_INGRESS
from lab.http import Fault
from lab.tls import lab_pki
from lab.world import LabWorld
from monitor.config.policy import Vantage
from monitor.model import Verdict
from probes.dataplane import PinnedConnection, PinnedRoute, PinnedTransport, _dropped
from probes.network import tls_context
from probes.options import ProbeOptions
from probes.pool import probe_vaults


def _count_handshakes(monkeypatch: pytest.MonkeyPatch, world: LabWorld) -> list[str]:
    context = tls_context(world.ca_path)
    names: list[str] = []
    wrap = type(context).wrap_socket

    def counting(self: ssl.SSLContext, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        names.append(kwargs.get("server_hostname", ""))
        return wrap(self, sock, *args, **kwargs)

    monkeypatch.setattr(type(context), "wrap_socket", counting)
    return names


def test_one_handshake_carries_the_tls_step_health_and_the_data_plane_read(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handshakes = _count_handshakes(monkeypatch, world)
    before = world.keyvault.servers[PUBLIC_INGRESS].total_requests

    (result,) = probe_vaults(
        ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
    )

    assert handshakes == ["kv-se-demo.vault.lab.test"]
    # /healthstatus, the SDK's unauthenticated challenge (unless an earlier test's client of this
    # process cached it for the vault's URL), the read with the token: all on one connection.
    assert world.keyvault.servers[PUBLIC_INGRESS].total_requests - before in (2, 3)
    assert result.health is not None and result.health.seen_address == "127.30.0.5"
    assert result.verdict is Verdict.ADMITTED  # the walkthrough starts with the firewall open


def test_a_connection_the_server_closed_is_opened_again_with_the_same_checks(
    world: LabWorld,
    vantages: dict[str, Vantage],
    options: ProbeOptions,
    credential: LabCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = world.keyvault.servers[PUBLIC_INGRESS]
    # The health answer closes the connection, as a server at its keep-alive limit does.
    server.inject(r"^/healthstatus$", Fault(status=200, headers={"Connection": "close"}))
    handshakes = _count_handshakes(monkeypatch, world)
    try:
        (result,) = probe_vaults(
            ["kv-se-demo"], vantage=vantages["internet"], options=options, credential=credential
        )
    finally:
        server.clear_faults()

    assert handshakes == ["kv-se-demo.vault.lab.test", "kv-se-demo.vault.lab.test"]
    assert result.health is not None and result.health.status_code == 200
    assert result.verdict is Verdict.ADMITTED  # the walkthrough starts with the firewall open
    assert result.data_plane is not None and result.data_plane.status_code == 404


def test_the_transport_sends_the_token_to_the_probed_vault_only(world: LabWorld) -> None:
    route = PinnedRoute(
        hostname="kv-se-demo.vault.lab.test",
        address=PUBLIC_INGRESS,
        port=world.port,
        source_address="127.30.0.5",
        connect_timeout_s=2,
        read_timeout_s=2,
    )
    before = world.keyvault.total_requests
    with PinnedConnection(route, context=tls_context(world.ca_path)) as connection:
        other_vault = SecretClient(
            vault_url=f"https://kv-pl-demo.vault.lab.test:{world.port}",
            credential=LabCredential(),
            transport=PinnedTransport(connection),
            retry_total=0,
        )
        with pytest.raises(ServiceRequestError, match="only sends to"):
            other_vault.get_secret("x")
    assert world.keyvault.total_requests == before


def test_session_tickets_after_the_handshake_do_not_look_like_a_closed_connection() -> None:
    """A TLS 1.3 server (Key Vault's among them) sends session tickets after the handshake: the
    connection is readable but open, and must be reused; once the server closes it, it is not."""
    server_context = lab_pki().server_context("kv-tickets.vault.lab.test")
    server_context.num_tickets = 2
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    close_now = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        with server_context.wrap_socket(raw, server_side=True):
            close_now.wait(10)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        tls = tls_context(lab_pki().ca_path).wrap_socket(client, server_hostname="kv-tickets.vault.lab.test")
        deadline = time.monotonic() + 5
        while not select.select([tls], [], [], 0)[0] and time.monotonic() < deadline:
            time.sleep(0.01)  # until the tickets have arrived
        assert select.select([tls], [], [], 0)[0], "the server sent no session tickets"
        assert _dropped(tls) is False
        assert _dropped(tls) is False  # and the tickets, once read, leave nothing behind

        close_now.set()
        server.join(5)
        deadline = time.monotonic() + 5
        while not _dropped(tls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _dropped(tls) is True
        tls.close()
    finally:
        listener.close()
