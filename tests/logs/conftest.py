"""Fixtures for the access-log tests: the walkthrough estate, the Log Analytics emulator on
HTTPS, and a reader that talks to it through the real ``LogsQueryClient``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import (
    INTERNET_CLIENT,
    LAB_PRIVATE_RANGES,
    WALKTHROUGH_WORKSPACE,
    AccessRecord,
    Estate,
    walkthrough_estate,
)
from lab.loganalytics import LogAnalyticsEmulator
from lab.tls import LabPki
from monitor.netaddr import AddressSpace
from monitor.sources.logs import LogsReader

NOW = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
WINDOW = (NOW - dt.timedelta(hours=1), NOW)
WORKSPACE = WALKTHROUGH_WORKSPACE
LAB_SPACE = AddressSpace.with_extra(LAB_PRIVATE_RANGES)
SE_CLIENT = "127.10.1.4"  # a VM in the serviceEndpoint subnet
APP_ID = "0f1e2d3c-0000-4000-8000-00000000a991"
OBJECT_ID = "9a8b7c6d-0000-4000-8000-00000000b772"


@pytest.fixture
def estate() -> Estate:
    return walkthrough_estate()


@pytest.fixture
def se_vault(estate: Estate) -> dict[str, Any]:
    vault = estate.vault_by_name("kv-se-demo")
    assert vault is not None
    return vault


@pytest.fixture
def pl_vault(estate: Estate) -> dict[str, Any]:
    vault = estate.vault_by_name("kv-pl-demo")
    assert vault is not None
    return vault


@pytest.fixture(scope="session")
def running_emulator() -> Iterator[LogAnalyticsEmulator]:
    with LogAnalyticsEmulator(walkthrough_estate()) as running:
        yield running


@pytest.fixture
def emulator(running_emulator: LogAnalyticsEmulator, estate: Estate) -> LogAnalyticsEmulator:
    running_emulator.reset(estate)
    return running_emulator


@pytest.fixture
def make_reader(emulator: LogAnalyticsEmulator, pki: LabPki) -> Iterator[Callable[..., LogsReader]]:
    readers: list[LogsReader] = []

    def make(**options: Any) -> LogsReader:
        settings: dict[str, Any] = {
            "endpoint": emulator.endpoint,
            "connection_verify": pki.ca_path,
            "address_space": LAB_SPACE,
            "retry_backoff_factor": 0.01,
        }
        settings.update(options)
        reader = LogsReader(LabCredential(), **settings)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


def record(
    vault: dict[str, Any],
    *,
    caller: str = INTERNET_CLIENT,
    status: int = 200,
    authorized: bool = True,
    auth_type: str = "",
    subnet_id: str = "",
    minutes_ago: float = 10,
    app_id: str = APP_ID,
    object_id: str = OBJECT_ID,
) -> AccessRecord:
    """One request the vault logged, as the data plane records it."""
    signature = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(status, str(status))
    return AccessRecord(
        time=NOW - dt.timedelta(minutes=minutes_ago),
        vault_id=vault["id"],
        vault_name=vault["name"],
        operation="SecretGet",
        request_uri=f"https://{vault['name']}.vault.lab.test/secrets/probe",
        caller_address=caller,
        http_status=status,
        result_signature=signature,
        result_type=signature,
        result_description="",
        is_address_authorized=authorized,
        address_auth_type=auth_type,
        subnet_id=subnet_id,
        private_endpoint_id="",
        identity_oid=object_id,
        identity_appid=app_id,
    )
