"""The lab's ARM over HTTPS with perimeters in its estate, and the real azure-mgmt-network client
(through ``ArmPerimeterReader`` and directly, for writes) pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.mgmt.network import NetworkManagementClient

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.tls import LabPki
from monitor.sources.arm import ArmConnection
from monitor.sources.perimeters import ArmPerimeterReader

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b2"
SUB_NETWORK = "00000000-0000-0000-0000-0000000000c3"  # holds perimeters only
PERIMETER_GROUP = "rg-nsp"


def add_vaults(estate: Estate, subscription_id: str, count: int, *, prefix: str = "kv") -> list[str]:
    """``count`` vaults with public access Disabled; returns their ids."""
    return [
        estate.add_vault(
            subscription_id=subscription_id,
            resource_group="rg-app",
            name=f"{prefix}-{subscription_id[-2:]}-{index:03d}",
            public_network_access="Disabled",
        )["id"]
        for index in range(count)
    ]


def perimeter(estate: Estate, subscription_id: str = SUB_A, name: str = "nsp-app") -> str:
    """A perimeter with one profile, ``default``; returns its id."""
    perimeter_id = estate.add_perimeter(
        subscription_id=subscription_id, resource_group=PERIMETER_GROUP, name=name
    )
    estate.perimeters.add_profile(perimeter_id, "default")
    return perimeter_id


@pytest.fixture
def estate() -> Estate:
    estate = Estate()
    estate.add_subscription(SUB_A)
    estate.add_subscription(SUB_B)
    return estate


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate()) as emulator:
        yield emulator


@pytest.fixture
def arm(_arm_server: ArmEmulator, estate: Estate) -> Iterator[ArmEmulator]:
    """One server per module, a fresh world per test."""
    _arm_server.estate = estate
    _arm_server.server.request_counts.clear()
    yield _arm_server
    _arm_server.server.clear_faults()


@pytest.fixture
def connection(arm: ArmEmulator, pki: LabPki) -> ArmConnection:
    return ArmConnection(
        arm_endpoint=arm.url,
        connection_verify=pki.ca_path,
        timeout_s=10,
        retry_total=1,
        retry_backoff_factor=0.0,
    )


@pytest.fixture
def reader(connection: ArmConnection) -> ArmPerimeterReader:
    return ArmPerimeterReader(LabCredential(), connection=connection)


@pytest.fixture
def network(connection: ArmConnection) -> Iterator[NetworkManagementClient]:
    """azure-mgmt-network for the perimeter owner's writes in SUB_A."""
    with NetworkManagementClient(LabCredential(), SUB_A, **connection.client_options()) as client:
        yield client
