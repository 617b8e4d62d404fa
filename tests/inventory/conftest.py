"""Fixtures for the inventory tests: the lab's ARM over HTTPS on loopback and an ``ArmInventory``
(the real azure-mgmt-keyvault client) pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.tls import LabPki
from monitor.sources.arm import ArmInventory

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b2"
SUB_FORBIDDEN = "00000000-0000-0000-0000-0000000000f3"


def add_vaults(estate: Estate, subscription_id: str, count: int, *, prefix: str = "kv") -> list[str]:
    """``count`` vaults with a firewall; returns their names."""
    names = [f"{prefix}-{subscription_id[-2:]}-{index:03d}" for index in range(count)]
    for name in names:
        estate.add_vault(
            subscription_id=subscription_id,
            resource_group="rg-app",
            name=name,
            network_acls={
                "bypass": "AzureServices",
                "defaultAction": "Deny",
                "ipRules": [{"value": "203.0.113.0/24"}],
                "virtualNetworkRules": [],
            },
        )
    return names


@pytest.fixture
def estate() -> Estate:
    estate = Estate()
    estate.add_subscription(SUB_A)
    estate.add_subscription(SUB_B)
    estate.add_subscription(SUB_FORBIDDEN, forbidden=True)
    return estate


@pytest.fixture(scope="module")
def _arm_server() -> Iterator[ArmEmulator]:
    with ArmEmulator(Estate(), page_size=4) as emulator:
        yield emulator


@pytest.fixture
def arm(_arm_server: ArmEmulator, estate: Estate) -> Iterator[ArmEmulator]:
    """One server per module (stopping one takes half a second), a fresh world per test."""
    _arm_server.estate = estate
    _arm_server.server.request_counts.clear()
    yield _arm_server
    _arm_server.server.clear_faults()


@pytest.fixture
def inventory(arm: ArmEmulator, pki: LabPki) -> ArmInventory:
    # No backoff between retries without Retry-After, so fault tests stay fast; Retry-After
    # itself is still honoured by the retry policy.
    return ArmInventory(
        LabCredential(),
        arm_endpoint=arm.url,
        connection_verify=pki.ca_path,
        timeout_s=10,
        retry_total=3,
        retry_backoff_factor=0.0,
    )
