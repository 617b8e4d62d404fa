"""The lab's data plane writes the ``NSPAccessLogs`` row a perimeter writes for each request it
governs, into the workspace the perimeter's diagnostic setting names: probed through
azure-keyvault-secrets, read back by ``LogsReader.read_perimeter_workspace`` through the real
``LogsQueryClient``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, Estate, utcnow, walkthrough_estate
from lab.loganalytics import LogAnalyticsEmulator
from lab.services import walkthrough_vantages
from lab.tls import LabPki
from lab.world import LabWorld
from monitor.config.policy import Vantage
from monitor.model import PerimeterAccess, PerimeterLogCategory, Verdict
from monitor.sources.logs import NSP_TABLE_MISSING, LogsReader
from tests.logs.conftest import LAB_SPACE
from tests.perimeters.test_dataplane import PL_VAULT, SE_VAULT, configure, probe

WORKSPACE = "4f0c4a1e-0000-4000-8000-0000000a5e17"
Category = PerimeterLogCategory


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[LabWorld, LogAnalyticsEmulator]]:
    with LabWorld(walkthrough_estate()) as world, LogAnalyticsEmulator(walkthrough_estate()) as logs:
        world.keyvault.perimeter_logs = logs.perimeter_decided
        yield world, logs


@pytest.fixture
def estate() -> Estate:
    return walkthrough_estate()


@pytest.fixture
def world(started: tuple[LabWorld, LogAnalyticsEmulator], estate: Estate) -> LabWorld:
    return started[0].use(estate)


@pytest.fixture
def logs(started: tuple[LabWorld, LogAnalyticsEmulator], estate: Estate) -> LogAnalyticsEmulator:
    started[1].reset(estate)
    return started[1]


@pytest.fixture
def vantages(world: LabWorld) -> dict[str, Vantage]:
    return {v.name: v for v in walkthrough_vantages(resolver=world.resolver)}


def perimeter_of(estate: Estate, vault: str) -> str:
    """The perimeter ``configure`` made for ``vault``."""
    found = estate.vault_by_name(vault)
    assert found is not None
    governing = estate.perimeters.governing(found["id"])
    assert governing is not None
    return governing.perimeter_id


def read_back(logs: LogAnalyticsEmulator, pki: LabPki, estate: Estate, vault: str):
    found = estate.vault_by_name(vault)
    assert found is not None
    reader = LogsReader(
        LabCredential(), endpoint=logs.endpoint, connection_verify=pki.ca_path, address_space=LAB_SPACE
    )
    now = utcnow()
    result = reader.read_perimeter_workspace(
        WORKSPACE,
        [found["id"]],
        window_start=now - dt.timedelta(hours=1),
        window_end=now + dt.timedelta(minutes=1),
    )
    return result, result.evidence[found["id"].lower()]


def only_row(logs: LogAnalyticsEmulator, pki: LabPki, estate: Estate, vault: str) -> PerimeterAccess:
    result, evidence = read_back(logs, pki, estate, vault)
    assert result.errors == [] and evidence.complete
    (row,) = evidence.access
    return row


def test_an_internet_probe_to_a_vault_the_perimeter_reopens_is_a_perimeter_rules_allowed_row(
    world: LabWorld, logs: LogAnalyticsEmulator, pki: LabPki, vantages: dict[str, Vantage]
) -> None:
    # The case: publicNetworkAccess Disabled, re-opened by a Learning perimeter admitting everyone.
    configure(
        world.estate,
        SE_VAULT,
        access="Disabled",
        firewall_open=False,
        mode="Learning",
        prefixes=["0.0.0.0/0"],
    )
    logs.send_perimeter_logs(perimeter_of(world.estate, SE_VAULT), WORKSPACE)
    assert probe(world, vantages["internet"]).verdict is Verdict.ADMITTED

    row = only_row(logs, pki, world.estate, SE_VAULT)
    assert (row.category, row.source_address, row.matched_rule) == (
        Category.PUBLIC_PERIMETER_RULES_ALLOWED,
        INTERNET_CLIENT,
        "inbound",
    )
    assert (row.traffic_type, row.profile, row.access_rules_version, row.count) == (
        "Public",
        "default",
        "1",
        1,
    )
    assert not row.address_private and row.source_app_id


@pytest.mark.parametrize(
    ("mode", "firewall_open", "verdict", "category"),
    [
        ("Learning", True, Verdict.ADMITTED, Category.PUBLIC_RESOURCE_RULES_ALLOWED),
        ("Learning", False, Verdict.REFUSED_FIREWALL, Category.PUBLIC_RESOURCE_RULES_DENIED),
        ("Enforced", True, Verdict.REFUSED_FIREWALL, Category.PUBLIC_PERIMETER_RULES_DENIED),
    ],
)
def test_the_category_says_which_layer_decided(
    world: LabWorld,
    logs: LogAnalyticsEmulator,
    pki: LabPki,
    vantages: dict[str, Vantage],
    mode: str,
    firewall_open: bool,
    verdict: Verdict,
    category: PerimeterLogCategory,
) -> None:
    # The perimeter's rule admits another range: the vault's own firewall decides in Learning mode.
    configure(
        world.estate,
        SE_VAULT,
        access="Enabled",
        firewall_open=firewall_open,
        mode=mode,
        prefixes=["203.0.113.0/24"],
    )
    logs.send_perimeter_logs(perimeter_of(world.estate, SE_VAULT), WORKSPACE)
    assert probe(world, vantages["internet"]).verdict is verdict

    row = only_row(logs, pki, world.estate, SE_VAULT)
    assert (row.category, row.source_address, row.matched_rule) == (category, INTERNET_CLIENT, None)


def test_a_private_endpoint_request_is_a_private_inbound_row(
    world: LabWorld, logs: LogAnalyticsEmulator, pki: LabPki, vantages: dict[str, Vantage]
) -> None:
    configure(
        world.estate, PL_VAULT, access="SecuredByPerimeter", firewall_open=False, mode="Enforced", prefixes=[]
    )
    logs.send_perimeter_logs(perimeter_of(world.estate, PL_VAULT), WORKSPACE)
    assert probe(world, vantages["pl-subnet"], PL_VAULT).verdict is Verdict.ADMITTED

    row = only_row(logs, pki, world.estate, PL_VAULT)
    assert (row.category, row.traffic_type) == (Category.PRIVATE_INBOUND_ALLOWED, "Private")


@pytest.mark.parametrize("mode", [None, "Audit"])
def test_no_row_without_a_diagnostic_setting_or_a_perimeter_in_force(
    world: LabWorld, logs: LogAnalyticsEmulator, pki: LabPki, vantages: dict[str, Vantage], mode: str | None
) -> None:
    configure(
        world.estate, SE_VAULT, access="Enabled", firewall_open=True, mode="Learning", prefixes=["0.0.0.0/0"]
    )
    if mode == "Audit":
        # A diagnostic setting, but an association that does not enforce: what Azure logs for it is unknown.
        configure(
            world.estate, PL_VAULT, access="Enabled", firewall_open=True, mode="Audit", prefixes=["0.0.0.0/0"]
        )
        logs.send_perimeter_logs(perimeter_of(world.estate, PL_VAULT), WORKSPACE)
    assert probe(world, vantages["internet"]).verdict is Verdict.ADMITTED
    assert probe(world, vantages["internet"], PL_VAULT).verdict is Verdict.ADMITTED

    result, evidence = read_back(logs, pki, world.estate, SE_VAULT)
    # No row ever reached the workspace: it has no NSPAccessLogs table, an error, never "no access".
    assert [error.code for error in result.errors] == [NSP_TABLE_MISSING]
    assert evidence.access == () and not evidence.complete
