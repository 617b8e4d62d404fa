"""Storage probes through the lab: the real azure-storage-blob client over the pinned connection,
the lab's split-horizon DNS per sub-resource and its Storage data plane enforcing each account's
network rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, Estate, walkthrough_network
from lab.http import Fault, Response
from lab.services import walkthrough_vantages
from lab.storage import STORAGE_INGRESS
from lab.world import LabWorld
from monitor.config.policy import Mode, Vantage, VaultPolicy
from monitor.config.vantages import VantageConfigError, parse_vantages
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import StorageFacts
from monitor.model_storage import (
    PRIMARY_SUBRESOURCES,
    StorageAccountPosture,
    StorageProbeResult,
    StorageSubresource,
    StorageVerdict,
)
from monitor.sources.storage.normalise import normalise_storage_account
from probes.options import ProbeOptions
from probes.storage import probe_accounts
from tests.probes.conftest import lab_options

SUB = "00000000-0000-0000-0000-00000000a001"
BLOB_ENDPOINT = "127.10.2.60"
DENY = {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [], "virtualNetworkRules": []}


def _estate() -> Estate:
    estate = Estate()
    hub, spoke = walkthrough_network()
    subnets = [
        dataclasses.replace(s, service_endpoint_storage=s.name == "serviceEndpoint") for s in hub.subnets
    ]
    # The hub links blob's zone only: dfs's would answer the private address if it were linked.
    hub = dataclasses.replace(hub, subnets=subnets, storage_zones=("privatelink.blob.core.lab.test",))
    estate.vnets = [hub, spoke]

    def add(name: str, **properties: object) -> None:
        estate.add_storage_account(
            subscription_id=SUB, resource_group="rg-data", name=name, properties=properties
        )

    add("stallow")
    add("stdeny", networkAcls=DENY)
    add("stdisabled", publicNetworkAccess="Disabled")
    add(
        "strules",
        networkAcls={
            **DENY,
            "ipRules": [{"value": "127.30.0.0/24", "action": "Allow"}],
            "virtualNetworkRules": [{"id": hub.subnets[0].id, "action": "Allow", "state": "Succeeded"}],
        },
    )
    add("stprivate", publicNetworkAccess="Disabled")
    estate.add_storage_private_endpoint(
        _id("stprivate"),
        subresource="blob",
        address=BLOB_ENDPOINT,
        subnet_id=estate.subnet_named("privateLink").id,
        name="pe-stprivate-blob",
    )
    add("stodd")
    return estate


def _id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/{name}"


@pytest.fixture(scope="module")
def storage_world() -> Iterator[LabWorld]:
    world = LabWorld(_estate()).start()
    yield world
    world.stop()


@pytest.fixture
def world(storage_world: LabWorld) -> Iterator[LabWorld]:
    yield storage_world
    storage_world.estate.caller_regions.clear()
    storage_world.storage.authenticated_answers.clear()
    storage_world.storage.readers.clear()


@pytest.fixture
def options(world: LabWorld) -> ProbeOptions:
    return lab_options(world, storage_suffixes=("core.lab.test",))


@pytest.fixture
def vantages(world: LabWorld) -> dict[str, Vantage]:
    return {v.name: v for v in walkthrough_vantages(resolver=world.resolver)}


def _posture(world: LabWorld, name: str) -> StorageAccountPosture:
    raw = world.estate.storage_account(_id(name))
    assert raw is not None
    return normalise_storage_account(raw)


def _probe(
    world: LabWorld, name: str, vantage: Vantage, options: ProbeOptions, *subs: StorageSubresource
) -> dict[StorageSubresource, StorageProbeResult]:
    return {
        r.subresource: r
        for r in probe_accounts(
            [_posture(world, name)],
            vantage=vantage,
            options=options,
            credential=LabCredential(),
            subresources={_id(name): subs} if subs else None,
        )
    }


def test_an_open_account_admits_on_every_endpoint_and_each_probe_has_its_own_request_id(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    before = len(world.storage.requests)
    results = _probe(world, "stallow", vantages["internet"], options)
    assert tuple(results) == PRIMARY_SUBRESOURCES  # every endpoint primaryEndpoints lists, in its order
    for sub, result in results.items():
        assert result.verdict is StorageVerdict.ADMITTED, result
        assert result.data_plane.error_code == "AuthorizationPermissionMismatch"
        assert result.data_plane.status_code == 403
        assert result.hostname == f"stallow.{sub.value}.core.lab.test"
        assert result.dns is not None and result.dns.addresses == (STORAGE_INGRESS,)
        assert result.dns.chain[-1] == f"{sub.value}.lab-prod.store.core.lab.test"
        assert not result.dns.private_link_in_chain
        assert result.tls is not None and result.tls.handshake_ok
        assert result.data_plane.request_id
        assert result.ip_rules_untested is None
    seen = world.storage.requests[before:]
    # One authenticated request per endpoint, each carrying the id its result records.
    assert sorted(r.client_request_id or "" for r in seen) == sorted(
        r.client_request_id for r in results.values()
    )
    assert len({r.client_request_id for r in results.values()}) == len(results)
    assert {(r.subresource, r.client_address) for r in seen} == {(s.value, INTERNET_CLIENT) for s in results}


def test_a_reader_gets_the_list_which_is_admitted_too(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    world.storage.readers.add(LabCredential().object_id)
    result = _probe(world, "stallow", vantages["internet"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert result.verdict is StorageVerdict.ADMITTED
    assert result.data_plane.status_code == 200
    assert result.data_plane.error_code is None
    [answered] = [r for r in world.storage.requests if r.client_request_id == result.client_request_id]
    assert (answered.status, answered.error_code) == (200, None)


def test_default_deny_refuses_with_authorization_failure(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    for name in ("internet", "se-subnet", "default-subnet"):
        result = _probe(world, "stdeny", vantages[name], options, StorageSubresource.BLOB)[
            StorageSubresource.BLOB
        ]
        assert result.verdict is StorageVerdict.REFUSED, (name, result)
        assert result.data_plane.error_code == "AuthorizationFailure"
        assert "some other authorisation failures" in (result.data_plane.message or "")
        assert result.ip_rules_untested is None  # no IP rules to test


def test_ip_and_virtual_network_rules_admit_their_callers_only(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    region_stated = dataclasses.replace(vantages["internet"], region="northeurope")
    verdicts = {
        name: _probe(world, "strules", vantage, options, StorageSubresource.QUEUE)[
            StorageSubresource.QUEUE
        ].verdict
        for name, vantage in {
            "internet": region_stated,  # 127.30.0.5 in the IP rule
            "se-subnet": vantages["se-subnet"],  # service endpoint, the virtual network rule
            "default-subnet": vantages["default-subnet"],  # leaves by 127.20.0.3: no rule
        }.items()
    }
    assert verdicts == {
        "internet": StorageVerdict.ADMITTED,
        "se-subnet": StorageVerdict.ADMITTED,
        "default-subnet": StorageVerdict.REFUSED,
    }


def test_public_access_disabled_refuses_everyone_on_the_public_path(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    for name in ("internet", "se-subnet", "pl-subnet"):
        results = _probe(world, "stdisabled", vantages[name], options)
        assert {r.verdict for r in results.values()} == {StorageVerdict.REFUSED}, name
        assert {r.data_plane.error_code for r in results.values()} == {"AuthorizationFailure"}


def test_blob_private_while_dfs_public(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    inside = _probe(
        world, "stprivate", vantages["pl-subnet"], options, StorageSubresource.BLOB, StorageSubresource.DFS
    )
    blob, dfs = inside[StorageSubresource.BLOB], inside[StorageSubresource.DFS]
    assert blob.dns is not None and blob.dns.addresses == (BLOB_ENDPOINT,) and blob.dns.resolves_private
    assert blob.dns.chain == ("stprivate.blob.core.lab.test", "stprivate.privatelink.blob.core.lab.test")
    assert blob.dns.private_link_in_chain
    assert blob.verdict is StorageVerdict.ADMITTED
    assert (
        dfs.dns is not None and dfs.dns.addresses == (STORAGE_INGRESS,) and not dfs.dns.private_link_in_chain
    )
    assert dfs.verdict is StorageVerdict.REFUSED  # public access Disabled, and dfs has no endpoint

    outside = _probe(world, "stprivate", vantages["internet"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert outside.dns is not None and outside.dns.private_link_in_chain and not outside.dns.resolves_private
    assert outside.verdict is StorageVerdict.REFUSED
    # The spoke has no link to blob's zone: the public answer, refused, though inside a VNet.
    spoke = _probe(world, "stprivate", vantages["spoke"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert spoke.dns is not None and spoke.dns.addresses == (STORAGE_INGRESS,)
    assert spoke.verdict is StorageVerdict.REFUSED


def test_an_outside_vantage_in_the_accounts_region_cannot_test_ip_rules(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    world.estate.caller_regions["127.30.0.0/16"] = "westeurope"  # the internet client runs in Azure
    same_region = dataclasses.replace(vantages["internet"], region="westeurope")
    result = _probe(world, "strules", same_region, options, StorageSubresource.BLOB)[StorageSubresource.BLOB]
    # The IP rule holds its address, but Storage does not apply IP rules to its region's callers.
    assert result.verdict is StorageVerdict.REFUSED
    assert result.ip_rules_untested is not None
    assert "westeurope, the account's region" in result.ip_rules_untested

    unstated = _probe(world, "strules", vantages["internet"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert unstated.ip_rules_untested is not None and "is not stated" in unstated.ip_rules_untested
    # An inside vantage point does not test IP rules at all: nothing to say.
    inside = _probe(world, "strules", vantages["se-subnet"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert inside.ip_rules_untested is None


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (
            Response(403, b"<html><body>Forbidden</body></html>", {"Content-Type": "text/html"}),
            "without a Storage error code",
        ),
        (Response(403, b"", {}), "without a Storage error code"),
        (
            Response(
                403,
                b"<?xml version='1.0'?><Error><Code>AuthenticationFailed</Code><Message>bad</Message></Error>",
                {"x-ms-error-code": "AuthorizationFailure"},
            ),
            "x-ms-error-code AuthorizationFailure but the document says AuthenticationFailed",
        ),
        (
            Response(403, b"", {"x-ms-error-code": "KeyBasedAuthenticationNotPermitted"}),
            "403 KeyBasedAuthenticationNotPermitted proves nothing",
        ),
        (Response(502, b"Bad Gateway", {}), "502 without a Storage error code"),
    ],
)
def test_an_answer_without_the_expected_error_code_is_unknown(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions, answer: Response, why: str
) -> None:
    world.storage.authenticated_answers["stodd"] = answer
    result = _probe(world, "stodd", vantages["internet"], options, StorageSubresource.BLOB)[
        StorageSubresource.BLOB
    ]
    assert result.verdict is StorageVerdict.UNKNOWN
    assert why in (result.data_plane.message or "")


def test_an_endpoint_outside_the_storage_suffixes_is_not_contacted(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    posture = dataclasses.replace(
        _posture(world, "stallow"),
        primary_endpoints={
            StorageSubresource.BLOB: "https://stallow.blob.example.org/",
            StorageSubresource.DFS: "https://other.dfs.core.lab.test/",
        },
    )
    before = (world.dns.total_queries, len(world.storage.requests))
    results = probe_accounts(
        [posture], vantage=vantages["internet"], options=options, credential=LabCredential()
    )
    assert [r.verdict for r in results] == [StorageVerdict.UNKNOWN, StorageVerdict.UNKNOWN]
    assert "not under a storage DNS suffix" in (results[0].data_plane.message or "")
    assert "is not the dfs endpoint of stallow" in (results[1].data_plane.message or "")
    assert (world.dns.total_queries, len(world.storage.requests)) == before


def test_a_vantage_region_is_validated() -> None:
    [vantage] = parse_vantages(
        [{"name": "fn-weu", "inside": False, "region": "westeurope"}], source="KVMON_VANTAGES"
    )
    assert vantage.region == "westeurope"
    with pytest.raises(
        VantageConfigError, match=r"vantages\[0\]\.region: 'West Europe' is not an Azure region name"
    ):
        parse_vantages([{"name": "fn", "inside": False, "region": "West Europe"}], source="KVMON_VANTAGES")


def test_an_account_dns_does_not_know_is_unreachable_and_sends_nothing(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    gone = dataclasses.replace(
        _posture(world, "stallow"),
        name="stgone",
        primary_endpoints={StorageSubresource.BLOB: "https://stgone.blob.core.lab.test/"},
    )
    before = len(world.storage.requests)
    [result] = probe_accounts(
        [gone], vantage=vantages["internet"], options=options, credential=LabCredential()
    )
    assert result.verdict is StorageVerdict.UNREACHABLE
    assert "NXDOMAIN" in (result.data_plane.message or "")
    assert len(world.storage.requests) == before


def test_a_connection_dropped_before_the_answer_is_unknown(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    world.storage.servers[STORAGE_INGRESS].inject(r"/", Fault(reset=True))
    try:
        result = _probe(world, "stallow", vantages["internet"], options, StorageSubresource.BLOB)[
            StorageSubresource.BLOB
        ]
    finally:
        world.storage.servers[STORAGE_INGRESS].clear_faults()
    assert result.verdict is StorageVerdict.UNKNOWN
    assert "dropped before an answer" in (result.data_plane.message or "")


def test_many_accounts_at_once_keep_their_order_and_their_own_subresources(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    postures = [_posture(world, "stdeny"), _posture(world, "stallow")]
    results = probe_accounts(
        postures,
        vantage=vantages["internet"],
        options=options,
        credential=LabCredential(),
        subresources={_id("stdeny").upper(): (StorageSubresource.TABLE,)},
    )
    assert [(r.account_name, r.subresource.value, r.verdict) for r in results] == [
        ("stdeny", "table", StorageVerdict.REFUSED),
        *(
            ("stallow", sub, StorageVerdict.ADMITTED)
            for sub in ("blob", "dfs", "file", "queue", "table", "web")
        ),
    ]


def test_probe_results_through_the_rules(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    """From the lab to the findings: a Private Link account whose blob endpoint works inside while
    dfs has no endpoint."""
    posture = _posture(world, "stprivate")
    places = (vantages["internet"], vantages["pl-subnet"])
    results = [
        r
        for vantage in places
        for r in probe_accounts(
            [posture],
            vantage=vantage,
            options=options,
            credential=LabCredential(),
            subresources={posture.id: (StorageSubresource.BLOB, StorageSubresource.DFS)},
        )
    ]
    facts = StorageFacts(
        posture=posture,
        policy=VaultPolicy(entry="pl", mode=Mode.PRIVATE_LINK),
        probes=tuple(results),
        vantages=places,
    )
    found = sorted(
        (f.rule_id, f.subject)
        for f in evaluate([facts], today=dt.date.today()).findings
        if f.rule_id.startswith("ST1")
    )
    assert found == [("ST102", "pl-subnet/dfs"), ("ST103", "pl-subnet/dfs")]


def test_a_remote_vantage_point_is_refused_before_anything_is_sent(
    world: LabWorld, vantages: dict[str, Vantage], options: ProbeOptions
) -> None:
    remote = dataclasses.replace(vantages["internet"], endpoint="https://kvmon-probe.example/api/probe")
    before = (world.dns.total_queries, len(world.storage.requests))
    with pytest.raises(ValueError, match="takes vault names only"):
        probe_accounts(
            [_posture(world, "stallow")], vantage=remote, options=options, credential=LabCredential()
        )
    assert (world.dns.total_queries, len(world.storage.requests)) == before
