"""The lab's ARM with Resource Graph on its endpoint (as in Azure), a change-history reader with
short timeouts pointed at it, and a second identity that changes vaults through ARM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import NetworkRuleSet, VaultPatchParameters, VaultPatchProperties

from lab.arm import ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.resourcegraph import ResourceGraphEmulator
from lab.tls import LabPki
from monitor.sources.arm import ArmConnection
from monitor.sources.change_history import ResourceGraphChangeHistory

# The one who changes vaults in these tests: not the monitor (LabCredential's default identity).
CHANGER_OBJECT_ID = "0c4a6e11-0000-4000-8000-0000000b0b01"
CHANGER_APP_ID = "9e7d3c55-0000-4000-8000-0000000b0b02"


def subscription(index: int) -> str:
    return f"00000000-0000-0000-0000-0000000c{index:04d}"


def add_firewalled_vaults(estate: Estate, subscription_id: str, count: int) -> list[str]:
    """``count`` vaults that deny by default; returns their ids."""
    ids = []
    for index in range(count):
        vault = estate.add_vault(
            subscription_id=subscription_id,
            resource_group="rg-app",
            name=f"kv-{subscription_id[-4:]}-{index:03d}",
            network_acls={
                "bypass": "AzureServices",
                "defaultAction": "Deny",
                "ipRules": [{"value": "203.0.113.0/24"}],
                "virtualNetworkRules": [],
            },
        )
        ids.append(vault["id"])
    return ids


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator]]:
    with ArmEmulator(Estate()) as arm:
        yield arm, ResourceGraphEmulator(Estate(), quota=1000, server=arm.server).start()


@pytest.fixture
def estate() -> Estate:
    return Estate()


@pytest.fixture
def graph(
    _servers: tuple[ArmEmulator, ResourceGraphEmulator], estate: Estate
) -> Iterator[ResourceGraphEmulator]:
    """One server per module, a fresh world per test."""
    arm, emulator = _servers
    arm.estate = estate
    emulator.reset(estate)
    arm.server.request_counts.clear()
    yield emulator
    arm.server.clear_faults()


@pytest.fixture
def arm(_servers: tuple[ArmEmulator, ResourceGraphEmulator], graph: ResourceGraphEmulator) -> ArmEmulator:
    return _servers[0]


def fast_history(
    url: str, pki: LabPki, *, timeout_s: float = 1.0, retry_total: int = 1
) -> ResourceGraphChangeHistory:
    connection = ArmConnection(
        arm_endpoint=url,
        connection_verify=pki.ca_path,
        timeout_s=timeout_s,
        retry_total=retry_total,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.05,
    )
    return ResourceGraphChangeHistory(LabCredential(), connection=connection)


@pytest.fixture
def history(graph: ResourceGraphEmulator, pki: LabPki) -> ResourceGraphChangeHistory:
    return fast_history(graph.url, pki)


def changer_client(url: str, pki: LabPki, subscription_id: str) -> KeyVaultManagementClient:
    """azure-mgmt-keyvault as the second identity (an application: ARM stamps its app id)."""
    return KeyVaultManagementClient(
        LabCredential(object_id=CHANGER_OBJECT_ID, app_id=CHANGER_APP_ID),
        subscription_id,
        base_url=url,
        credential_scopes=[f"{url}/.default"],
        connection_verify=pki.ca_path,
        retry_total=0,
    )


def open_firewall(url: str, pki: LabPki, vault_id: str) -> None:
    """The second identity PATCHes the vault's default action to Allow through ARM."""
    parts = vault_id.split("/")
    with changer_client(url, pki, parts[2]) as client:
        client.vaults.update(
            parts[4],
            parts[8],
            VaultPatchParameters(
                properties=VaultPatchProperties(
                    network_acls=NetworkRuleSet(default_action="Allow", bypass="AzureServices")
                )
            ),
        )
