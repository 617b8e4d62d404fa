"""A remote vantage point asked about more vaults than one ``POST /api/probe`` may carry: the names
go in batches within the endpoint's limits, a few at a time, and a batch that fails blinds its
own vaults only. The remote is the app's own probe function (``monitor.app.probe_functions``,
what ``function_app.probe`` calls) served over loopback HTTPS, configured by app settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from lab.credential import LabCredential
from lab.estate import LAB_PRIVATE_RANGES, LAB_VAULT_SUFFIX
from lab.estate_factory import synthetic_estate
from lab.http import LabServer, Request, Response
from lab.services import walkthrough_vantages
from lab.tls import lab_pki
from lab.world import LabWorld
from monitor.app.probe_functions import probe as probe_function
from monitor.config.policy import Vantage
from probes.pool import probe_vaults
from probes.remote import CONCURRENT_BATCHES, probe_remote, request_batches
from probes.wire import MAX_REQUEST_BYTES, MAX_VAULTS_PER_REQUEST
from tests.probes.conftest import lab_options

FUNCTION_KEY = "remote-function-key-batches-0123"
VAULTS = 5_000
REAL_VAULTS = 40  # spread over every batch; the other names are vaults the lab's DNS does not know


@dataclass
class Remote:
    """The probe function behind a function key, recording what each request carried."""

    server: LabServer
    fail_when_asked: dict[str, Callable[[Request], Response]] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)
    body_sizes: list[int] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        if request.header("x-functions-key") != FUNCTION_KEY:
            return Response(401, "")
        names = json.loads(request.body)["vaults"]
        with self.lock:
            self.batches.append(names)
            self.body_sizes.append(len(request.body))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for name, fail in self.fail_when_asked.items():
                if name in names:
                    return fail(request)
            answer = probe_function(request.body)
            return Response(answer.status, answer.body, {"Content-Type": answer.mimetype})
        finally:
            with self.lock:
                self.in_flight -= 1

    @property
    def vantage(self) -> Vantage:
        return Vantage(
            name="outside", inside=False, endpoint=f"{self.server.url}/api/probe", key_setting="KVMON_KEY"
        )


@pytest.fixture
def estate_world(start_world: Callable[..., LabWorld]) -> LabWorld:
    return start_world(synthetic_estate(vaults=REAL_VAULTS, subscriptions=2))


@pytest.fixture
def remote(estate_world: LabWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    """Another deployment of the app in the probe role, on the internet, as its settings say."""
    internet = next(v for v in walkthrough_vantages(resolver=estate_world.resolver) if v.name == "internet")
    settings = {
        "KVMON_ROLE": "probe",
        "KVMON_VANTAGE": "internet",
        "KVMON_VANTAGES": json.dumps(
            [
                {
                    "name": "internet",
                    "inside": False,
                    "source_address": internet.source_address,
                    "resolver": internet.resolver,
                }
            ]
        ),
        "KVMON_VAULT_DNS_SUFFIX": LAB_VAULT_SUFFIX,
        "KVMON_PRIVATE_RANGES": ",".join(LAB_PRIVATE_RANGES),
        "KVMON_CA_BUNDLE": lab_pki().ca_path,
        "KVMON_PROBE_PORT": str(estate_world.port),
        "KVMON_PROBE_TIMEOUT": "2",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.deployment._CREDENTIAL", LabCredential())
    recorded = Remote(server=LabServer(name="remote-batches"))
    recorded.server.route("POST", r"/api/probe", recorded.handle)
    with recorded.server:
        yield recorded


def _names(world: LabWorld) -> tuple[list[str], dict[int, str]]:
    """``VAULTS`` hostnames: the estate's vaults at even intervals, names nobody has between them."""
    real = sorted(vault["name"] for vault in world.estate.vaults.values())
    spacing = VAULTS // len(real)
    placed = {index * spacing + spacing // 2: name for index, name in enumerate(real)}
    names = [
        f"{placed[index]}.{LAB_VAULT_SUFFIX}"
        if index in placed
        else f"kv-absent-{index:05d}.{LAB_VAULT_SUFFIX}"
        for index in range(VAULTS)
    ]
    return names, placed


def test_5000_vaults_go_in_batches_within_the_limit_and_a_failed_batch_blinds_only_its_own(
    estate_world: LabWorld, remote: Remote, credential: LabCredential
) -> None:
    names, placed = _names(estate_world)
    # The second request answers 500 and the fourth drops the connection: chosen by their content,
    # since the batches reach the remote in no set order.
    remote.fail_when_asked = {
        names[1500]: lambda request: Response(500, {"error": {"code": "InternalServerError"}}),
        names[3500]: lambda request: Response(200, "not json, cut off"),
    }

    results = probe_remote(
        names,
        vantage=remote.vantage,
        function_key=FUNCTION_KEY,
        options=lab_options(estate_world, resolver=None, remote_timeout_s=60.0),
    )

    # Five requests, the fewest the limit allows, none over it, a few at a time.
    assert sorted(len(batch) for batch in remote.batches) == [MAX_VAULTS_PER_REQUEST] * 5
    assert sorted(name for batch in remote.batches for name in batch) == sorted(names)
    assert max(remote.body_sizes) <= MAX_REQUEST_BYTES
    assert 1 < remote.most_in_flight <= CONCURRENT_BATCHES

    # Every vault has its result, where it was asked.
    assert [result.hostname for result in results] == names
    assert all(result.vantage == "outside" for result in results)
    blind = {index for index, result in enumerate(results) if result.vantage_error is not None}
    assert blind == set(range(1000, 2000)) | set(range(3000, 4000))
    assert {results[index].vantage_error for index in range(1000, 2000)} == {
        "the probe endpoint answered HTTP 500 (request 2 of 5, 1000 vaults)"
    }
    assert {results[index].vantage_error for index in range(3000, 4000)} == {
        "the probe endpoint answered something that is not JSON (request 4 of 5, 1000 vaults)"
    }

    # The other batches carry what the remote saw: the lab's DNS knows no "kv-absent-" name, and
    # each real vault got the verdict a probe from the internet gets here.
    answered = [result for index, result in enumerate(results) if index not in blind]
    absent = [result for result in answered if result.vault_name.startswith("kv-absent-")]
    assert len(absent) == len(answered) - sum(1 for index in placed if index not in blind)
    assert all(
        result.dns is not None and (result.dns.error or "").startswith("NXDOMAIN") for result in absent
    )
    seen_remotely = {
        results[index].vault_name: (results[index].verdict, results[index].seen_address)
        for index in placed
        if index not in blind
    }
    internet = next(v for v in walkthrough_vantages(resolver=estate_world.resolver) if v.name == "internet")
    local = probe_vaults(
        list(seen_remotely), vantage=internet, options=lab_options(estate_world), credential=credential
    )
    assert seen_remotely == {result.vault_name: (result.verdict, result.seen_address) for result in local}
    assert len({verdict for verdict, _ in seen_remotely.values()}) > 1  # admitted and refused both seen


def test_batches_respect_the_byte_limit_as_well_as_the_count() -> None:
    # Names an emulator's long suffix makes long: 1,000 of them would not fit 64 KiB.
    suffix = "vault." + "very-long-emulator-suffix." * 3 + "test"
    hostnames = [f"kv-{index:05d}.{suffix}" for index in range(2500)]

    batches = list(request_batches(hostnames))

    assert [name for batch in batches for name in batch] == hostnames
    assert all(len(batch) <= MAX_VAULTS_PER_REQUEST for batch in batches)
    bodies = [json.dumps({"vaults": batch}, separators=(",", ":")).encode() for batch in batches]
    assert all(len(body) <= MAX_REQUEST_BYTES for body in bodies)
    # The fewest: every batch but the last is full, so one more name would not have fitted.
    for batch, body in zip(batches[:-1], bodies[:-1], strict=True):
        assert len(batch) == MAX_VAULTS_PER_REQUEST or len(body) + len(suffix) + 12 > MAX_REQUEST_BYTES
    assert len(batches) > len(hostnames) / MAX_VAULTS_PER_REQUEST


def test_a_run_that_fits_one_request_is_one_request(estate_world: LabWorld, remote: Remote) -> None:
    names, _ = _names(estate_world)
    results = probe_remote(
        names[:MAX_VAULTS_PER_REQUEST],
        vantage=remote.vantage,
        function_key=FUNCTION_KEY,
        options=lab_options(estate_world, resolver=None),
    )
    assert [len(batch) for batch in remote.batches] == [MAX_VAULTS_PER_REQUEST]
    assert all(result.vantage_error is None for result in results)
