"""Remote vantage points: another deployment's ``POST /api/probe`` answering over HTTPS, its JSON
decoded exactly, and silence turned into ``vantage_error`` (KV106), never an exception."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
from collections.abc import Iterator

import pytest

from lab.credential import LabCredential
from lab.http import Fault, LabServer, Request, Response
from lab.world import LabWorld
from monitor.config.policy import Vantage
from monitor.errors import SourceError
from monitor.model import DataPlaneStep, DnsStep, HealthStep, ProbeResult, TlsStep, Verdict
from probes.endpoint import handle_probe_request
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.prober import Prober
from probes.remote import probe_remote
from probes.wire import WireError, result_from_json, result_to_json
from tests.probes.conftest import lab_options

FUNCTION_KEY = "remote-function-key-0123456789"


@pytest.fixture
def remote(world: LabWorld, vantages: dict[str, Vantage], credential: LabCredential) -> Iterator[LabServer]:
    """Another deployment of the app, running in the Private Link subnet, behind a function key."""
    options = lab_options(world)

    def probe(request: Request) -> Response:
        if request.header("x-functions-key") != FUNCTION_KEY:
            return Response(401, "")
        status, body = handle_probe_request(
            request.body, vantage=vantages["pl-subnet"], options=options, credential=credential
        )
        return Response(status, body)

    server = LabServer(name="remote-vantage")
    server.route("POST", r"/api/probe", probe)
    with server:
        yield server


def _remote_vantage(server: LabServer) -> Vantage:
    return Vantage(
        name="remote-pl", inside=True, endpoint=f"{server.url}/api/probe", key_setting="KVMON_PROBE_KEY_PL"
    )


def _monitor_options(world: LabWorld, **overrides: object) -> ProbeOptions:
    return lab_options(world, resolver=None, **overrides)


def test_wire_round_trip_is_exact(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, credential: LabCredential
) -> None:
    probed = probe_vaults(
        ["kv-pl-demo", "kv-se-demo", "kv-missing"],
        vantage=vantages["spoke"],
        options=options,
        credential=credential,
    )
    constructed = ProbeResult(
        vault_name="kv-x",
        vantage="v",
        hostname="kv-x.vault.azure.net",
        started_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dns=DnsStep(
            "kv-x.vault.azure.net", ("a", "b"), ("10.0.0.4",), ("10.0.0.4",), True, "10.0.0.2:53", 1.5
        ),
        tls=TlsStep("10.0.0.4", 443, True, False, False, "not valid", 2.25, "aborted"),
        health=HealthStep(200, "10.0.1.4", True),
        data_plane=DataPlaneStep(
            Verdict.REFUSED_FIREWALL, 403, "Forbidden", "ForbiddenByFirewall", "1.2.3.4", False, "m"
        ),
        vantage_error=None,
        duration_ms=12.0,
    )
    for result in [*probed, constructed, dataclasses.replace(constructed, dns=None, vantage_error="down")]:
        encoded = json.loads(json.dumps(result_to_json(result)))
        decoded = result_from_json(encoded)
        assert decoded == result
        assert result_to_json(decoded) == encoded  # the offset, the tuples and the enums come back as sent


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("vault_name"), "result: vault_name: required"),
        (lambda d: d["tls"].pop("port"), "result: tls.port: required"),
        (lambda d: d.update(vault_name=None), "result: vault_name: expected a text, got None"),
        (
            lambda d: d.update(started_at="yesterday"),
            "result: started_at: expected an ISO 8601 date-time, got 'yesterday'",
        ),
        (lambda d: d.update(started_at=0), "result: started_at: expected an ISO 8601 date-time, got 0"),
        (
            lambda d: d.update(started_at="2026-01-01T00:00:00"),
            "result: started_at: '2026-01-01T00:00:00' has no UTC offset",
        ),
        (
            lambda d: d["data_plane"].update(verdict="maybe"),
            "result: data_plane.verdict: 'maybe' is not one of admitted, refused-firewall, "
            "refused-public-disabled, refused-perimeter, unreachable, error, not-run",
        ),
        (
            lambda d: d["dns"].update(addresses="10.0.0.1"),
            "result: dns.addresses: expected a list, got '10.0.0.1'",
        ),
        (lambda d: d["dns"].update(chain=[1]), "result: dns.chain[0]: expected a text, got 1"),
        (lambda d: d["tls"].update(port="443"), "result: tls.port: expected a whole number, got '443'"),
        (lambda d: d["tls"].update(port=True), "result: tls.port: expected a whole number, got True"),
        (lambda d: d["tls"].update(connected=1), "result: tls.connected: expected true or false, got 1"),
        (lambda d: d.update(duration_ms="5"), "result: duration_ms: expected a number, got '5'"),
        (lambda d: d.update(dns=["kv-x"]), "result: dns: expected a mapping, got a list"),
        (lambda d: d.update(extra=1), "result: extra: unknown field"),
        (lambda d: d["health"].update(extra=1), "result: health.extra: unknown field"),
        (
            lambda d: d.update(vantage=1, hostname=2),
            "result: vantage: expected a text, got 1 (and 1 more problem)",
        ),
    ],
)
def test_malformed_results_name_the_field(mutate: object, message: str) -> None:
    result = ProbeResult(
        vault_name="kv-x",
        vantage="v",
        hostname="kv-x.vault.azure.net",
        started_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        dns=DnsStep("kv-x.vault.azure.net", addresses=("10.0.0.4",)),
        tls=TlsStep("10.0.0.4", 443, connected=True),
        health=HealthStep(200),
        data_plane=DataPlaneStep(Verdict.ADMITTED, 404),
    )
    data = json.loads(json.dumps(result_to_json(result)))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(WireError) as caught:
        result_from_json(data)
    assert str(caught.value) == message
    assert isinstance(caught.value, SourceError)  # a vantage point answered what kvmon cannot read


def test_a_malformed_result_is_named_by_its_place_in_the_answer() -> None:
    with pytest.raises(WireError) as caught:
        result_from_json("kv-x", path="results[3]")
    assert str(caught.value) == "results[3]: expected a mapping, got 'kv-x'"


def test_decoded_results_have_the_records_own_types() -> None:
    data = {
        "vault_name": "kv-x",
        "vantage": "v",
        "hostname": "kv-x.vault.azure.net",
        "started_at": "2026-01-02T03:04:05Z",
        "dns": {"query": "kv-x.vault.azure.net", "chain": ["a", "b"]},
        "data_plane": {"verdict": "refused-firewall"},
        "duration_ms": 7,
    }
    result = result_from_json(data)
    assert result.started_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert result.dns is not None and result.dns.chain == ("a", "b") and result.dns.addresses == ()
    assert result.data_plane is not None and result.data_plane.verdict is Verdict.REFUSED_FIREWALL
    assert result.duration_ms == 7.0 and isinstance(result.duration_ms, float)
    assert result.tls is None and result.health is None


def test_a_remote_vantage_probes_from_where_it_runs(world: LabWorld, remote: LabServer) -> None:
    vantage = _remote_vantage(remote)
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test", "kv-se-demo.vault.lab.test"],
        vantage=vantage,
        function_key=FUNCTION_KEY,
        options=_monitor_options(world),
    )

    pl, se = results
    assert pl.vantage == "remote-pl" and pl.vantage_error is None
    assert pl.dns is not None and pl.dns.addresses == ("127.10.2.10",)  # the remote's own DNS view
    assert pl.verdict is Verdict.ADMITTED and pl.seen_address == "127.10.2.5"
    assert se.hostname == "kv-se-demo.vault.lab.test" and se.seen_address == "127.20.0.2"


def test_the_prober_dispatches_local_and_remote(
    world: LabWorld, remote: LabServer, vantages: dict[str, Vantage], credential: LabCredential
) -> None:
    prober = Prober(
        options=lab_options(world), credential=credential, function_keys={"KVMON_PROBE_KEY_PL": FUNCTION_KEY}
    )
    local = prober(["kv-pl-demo", "not a vault"], vantages["internet"])
    far = prober(["kv-pl-demo"], _remote_vantage(remote))

    assert local[0].vantage == "internet" and local[0].verdict is Verdict.ADMITTED
    assert local[1].verdict is Verdict.ERROR and local[1].data_plane is not None
    assert (local[1].data_plane.message or "").startswith("not probed: ")
    assert far[0].vantage == "remote-pl" and far[0].seen_address == "127.10.2.5"


def test_a_wrong_key_is_a_blind_spot_and_the_key_is_not_repeated(world: LabWorld, remote: LabServer) -> None:
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test"],
        vantage=_remote_vantage(remote),
        function_key="wrong-key-abcdef",
        options=_monitor_options(world),
    )
    assert results[0].vantage_error == "the probe endpoint answered HTTP 401 (function key rejected?)"
    assert results[0].verdict is Verdict.ERROR
    assert "wrong-key-abcdef" not in repr(results)


def test_a_missing_key_is_a_blind_spot_without_a_request(world: LabWorld, remote: LabServer) -> None:
    before = remote.total_requests
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test"],
        vantage=_remote_vantage(remote),
        function_key=None,
        options=_monitor_options(world),
    )
    assert "KVMON_PROBE_KEY_PL is empty" in (results[0].vantage_error or "")
    assert remote.total_requests == before


def test_a_remote_that_is_down_is_a_blind_spot(world: LabWorld) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    vantage = Vantage(
        name="gone", inside=False, endpoint=f"https://127.0.0.1:{port}/api/probe", key_setting="K"
    )
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test", "kv-se-demo.vault.lab.test"],
        vantage=vantage,
        function_key=FUNCTION_KEY,
        options=_monitor_options(world),
    )
    assert [r.vantage_error for r in results] == ["could not reach the probe endpoint (ConnectionError)"] * 2
    assert [r.hostname for r in results] == ["kv-pl-demo.vault.lab.test", "kv-se-demo.vault.lab.test"]


def test_a_remote_that_stalls_is_cut_off_at_its_timeout(world: LabWorld, remote: LabServer) -> None:
    remote.inject(r"/api/probe", Fault(delay_s=1.0, status=200, body={"results": []}))
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test"],
        vantage=_remote_vantage(remote),
        function_key=FUNCTION_KEY,
        options=_monitor_options(world, remote_timeout_s=0.3),
    )
    assert results[0].vantage_error == "no answer from the probe endpoint within 0.3s"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "the probe endpoint answered something that is not JSON"),
        ({"results": "nope"}, 'the probe endpoint\'s answer has no "results" list'),
        (
            {"results": [{"vault_name": 1}]},
            "the probe endpoint's answer is malformed: results[0]: unknown field",
        ),
        ({"results": []}, "the probe endpoint returned no result for kv-pl-demo.vault.lab.test"),
    ],
)
def test_a_remote_that_answers_badly_is_a_blind_spot(
    world: LabWorld, remote: LabServer, body: object, error: str
) -> None:
    remote.inject(r"/api/probe", Fault(status=200, body=body))
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test"],
        vantage=_remote_vantage(remote),
        function_key=FUNCTION_KEY,
        options=_monitor_options(world),
    )
    assert (results[0].vantage_error or "").startswith(error.split(": unknown")[0])


def test_a_remote_whose_certificate_is_not_trusted_is_a_blind_spot(
    world: LabWorld, remote: LabServer
) -> None:
    results = probe_remote(
        ["kv-pl-demo.vault.lab.test"],
        vantage=_remote_vantage(remote),
        function_key=FUNCTION_KEY,
        options=_monitor_options(world, ca_bundle=None),
    )
    assert (
        results[0].vantage_error == "TLS to the probe endpoint failed (certificate not trusted or not valid)"
    )
