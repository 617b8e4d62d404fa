"""The event path against the lab: ARM, DNS, Key Vault and the webhook sinks, with the real SDKs.

The lab runs once per session; each test gets a fresh walkthrough estate (``kv-se-demo`` closed:
default Deny) so an event that opens it is a loosening KV301. ARM is read with short timeouts and
one quick retry, as in tests/faults: the behaviour under a fault is production's, only shorter.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.credential import LabCredential
from lab.estate import walkthrough_estate
from lab.services import LabServices
from monitor.app.runtime import build_runtime
from monitor.app.scan import ScanRuntime
from monitor.config.settings import Settings
from monitor.model import ActorSource, ChangeActor, VaultChange, WriteKind
from monitor.sources.arm import ArmInventory
from monitor.store import Store, open_store
from monitor.store.entities import EntityStore

ARM_TIMEOUT_S = 0.75
OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000ff"
MALLORY = ChangeActor(
    source=ActorSource.EVENT,
    name="Mallory Example",
    upn="mallory@contoso.example",
    object_id="11111111-2222-3333-4444-555555555555",
    principal_type="User",
    client_ip="203.0.113.77",
)


@pytest.fixture(scope="session")
def services() -> Iterator[LabServices]:
    with LabServices(walkthrough_estate(fixed=True)) as lab:
        yield lab


@pytest.fixture
def lab(services: LabServices) -> LabServices:
    services.use(walkthrough_estate(fixed=True))
    return services


def fast_arm(settings: Settings) -> ArmInventory:
    return ArmInventory(
        LabCredential(),
        arm_endpoint=settings.arm_endpoint,
        connection_verify=settings.connection_verify,
        timeout_s=ARM_TIMEOUT_S,
        retry_total=1,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.1,
    )


def lab_runtime(lab: LabServices, store: Store | None, *, sqlite_path: Path | None = None) -> ScanRuntime:
    """``build_runtime`` as the CLI and the Functions app call it, with this suite's ARM timeouts."""
    environ = lab.environ(sqlite_path=sqlite_path)
    settings = Settings.from_environ(environ)
    runtime = build_runtime(
        settings, environ=environ, credential=LabCredential(), store=store, with_store=store is not None
    )
    runtime.inventory = runtime.vault_reader = fast_arm(settings)
    return runtime


@pytest.fixture(params=["sqlite", "tables"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EntityStore]:
    """Each store test runs on SQLite and on Table storage (Azurite)."""
    if request.param == "sqlite":
        opened = open_store(sqlite_path=tmp_path / "kvmon.db")
    else:
        azurite = request.getfixturevalue("azurite")
        opened = open_store(
            connection_string=azurite.connection_string, table_prefix=f"e{uuid.uuid4().hex[:12]}"
        )
    assert isinstance(opened, EntityStore)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(sqlite_path=tmp_path / "kvmon.db")
    yield opened
    opened.close()


def vault_id(lab: LabServices, name: str) -> str:
    found = lab.estate.vault_by_name(name)
    assert found is not None, name
    return str(found["id"])


def change(
    vault: str,
    *,
    event_id: str | None = None,
    kind: WriteKind = WriteKind.WRITE,
    actor: ChangeActor = MALLORY,
    resource_id: str | None = None,
) -> VaultChange:
    operation = (
        "Microsoft.KeyVault/vaults/delete" if kind is WriteKind.DELETE else "Microsoft.KeyVault/vaults/write"
    )
    return VaultChange(
        event_id=event_id or str(uuid.uuid4()),
        vault_id=vault,
        resource_id=resource_id or vault,
        operation_name=operation,
        kind=kind,
        actor=actor,
        event_time=dt.datetime.now(dt.UTC),
        correlation_id=str(uuid.uuid4()),
    )


def open_vault(lab: LabServices, name: str, *, by: str = "mallory@contoso.example") -> None:
    """Someone sets the vault's default action to Allow through ARM."""
    current = lab.estate.vault(vault_id(lab, name))
    assert current is not None
    acls = dict(current["properties"]["networkAcls"], defaultAction="Allow")
    lab.estate.update_vault(vault_id(lab, name), properties={"networkAcls": acls}, modified_by=by)
