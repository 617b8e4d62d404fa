"""One TLS context per CA bundle for a whole probe run, and checks exactly as strict while shared."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.estate import PUBLIC_INGRESS, walkthrough_estate
from lab.world import LabWorld
from probes.dataplane import PinnedConnectFailed, PinnedConnection, PinnedRoute
from probes.network import Reachability, open_tls, tls_context


def test_one_context_per_bundle_even_when_asked_at_once(world: LabWorld) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        contexts = list(pool.map(lambda _: tls_context(world.ca_path), range(64)))

    assert all(context is contexts[0] for context in contexts)
    assert tls_context(None) is tls_context(None)
    assert tls_context(None) is not contexts[0]


def test_a_changed_bundle_gets_a_new_context(world: LabWorld, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    shutil.copyfile(world.ca_path, bundle)
    first = tls_context(str(bundle))
    bundle.write_text(bundle.read_text() + "\n")

    assert tls_context(str(bundle)) is not first


def test_the_shared_context_checks_what_the_default_context_checks(world: LabWorld) -> None:
    shared, default = tls_context(world.ca_path), ssl.create_default_context(cafile=world.ca_path)

    for setting in (
        "verify_mode",
        "check_hostname",
        "verify_flags",
        "options",
        "minimum_version",
        "maximum_version",
        "hostname_checks_common_name",
    ):
        assert getattr(shared, setting) == getattr(default, setting), setting
    assert shared.get_ca_certs() == default.get_ca_certs()


def test_the_shared_context_cannot_be_given_other_protocols(world: LabWorld) -> None:
    with pytest.raises(ValueError, match="only"):
        tls_context(world.ca_path).set_alpn_protocols(["h2"])


def _route(vault: str, *, port: int, address: str, source: str) -> PinnedRoute:
    return PinnedRoute(
        hostname=f"{vault}.vault.lab.test",
        address=address,
        port=port,
        source_address=source,
        connect_timeout_s=2,
        read_timeout_s=2,
    )


def test_a_certificate_for_another_name_is_refused_after_the_data_plane_used_the_context(
    start_world: Callable[..., LabWorld],
) -> None:
    # A middlebox at the Private Endpoint's address presents a certificate for another name.
    world = start_world(walkthrough_estate(), certificates={"127.10.2.10": ("intercept.example.org",)})
    context = tls_context(world.ca_path)
    honest = _route("kv-se-demo", port=world.port, address=PUBLIC_INGRESS, source="127.30.0.5")
    with PinnedConnection(honest, context=context) as connection:
        assert connection.request("GET", "/healthstatus").status == 200

    intercepted = _route("kv-pl-demo", port=world.port, address="127.10.2.10", source="127.10.2.5")
    with (
        PinnedConnection(intercepted, context=context) as connection,
        pytest.raises(PinnedConnectFailed) as refused,
    ):
        connection.request("GET", "/healthstatus")
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
    step, opened = open_tls(
        intercepted.hostname,
        intercepted.address,
        port=world.port,
        source_address=intercepted.source_address,
        connect_timeout_s=2,
        tls_timeout_s=2,
        context=context,
        reachability=Reachability(),
    )
    assert (step.certificate_valid, opened) == (False, None)
    assert world.keyvault.servers["127.10.2.10"].total_requests == 0
