"""Builders for store, lifecycle and drift tests: realistic resource ids, postures and findings."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.model import (
    Finding,
    IpRule,
    PrivateEndpointConnection,
    Severity,
    VaultPosture,
    VirtualNetworkRule,
)
from monitor.store.entities import Entity, EntityBackend, Operation

SUB_A = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SUB_B = "0a9b8c7d-6e5f-4d3c-2b1a-0f9e8d7c6b5a"
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def vault_id(name: str, *, subscription: str = SUB_A, resource_group: str = "RG-Security") -> str:
    # Mixed case as ARM returns it; stores must key case-insensitively and keep the original.
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}"


def subnet_id(name: str, *, vnet: str = "hub-vnet") -> str:
    return f"/subscriptions/{SUB_A}/resourceGroups/RG-Network/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{name}"


def ip_rule(text: str) -> IpRule:
    try:
        return IpRule(raw=text, network=ipaddress.ip_network(text, strict=False))
    except ValueError:
        return IpRule(raw=text, network=None)


def pec(name: str, status: str = "Approved", *, vault: str = "kv-app") -> PrivateEndpointConnection:
    return PrivateEndpointConnection(
        id=f"{vault_id(vault)}/privateEndpointConnections/{name}",
        private_endpoint_id=f"/subscriptions/{SUB_A}/resourceGroups/RG-Network/providers/Microsoft.Network/privateEndpoints/{name}",
        status=status,
        provisioning_state="Succeeded",
    )


def posture(name: str = "kv-app", *, subscription: str = SUB_A, **changes: Any) -> VaultPosture:
    values: dict[str, Any] = {
        "id": vault_id(name, subscription=subscription),
        "name": name,
        "subscription_id": subscription,
        "resource_group": "RG-Security",
        "location": "westeurope",
        "vault_uri": f"https://{name}.vault.azure.net/",
        "public_network_access": "Enabled",
        "network_acls_present": True,
        "default_action": "Deny",
        "bypass": "AzureServices",
        "ip_rules": (ip_rule("203.0.113.10/32"),),
        "virtual_network_rules": (VirtualNetworkRule(subnet_id("serviceEndpoint")),),
        "private_endpoint_connections": (),
        "tags": {"owner": "platform"},
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "last_modified_by": "alice@contoso.com",
        "last_modified_by_type": "User",
        "last_modified_at": dt.datetime(2026, 3, 1, 17, 30, tzinfo=dt.UTC),
    }
    values.update(changes)
    return VaultPosture(**values)


def finding(
    name: str = "kv-app",
    rule: str = "KV001",
    *,
    subject: str = "",
    severity: Severity = Severity.HIGH,
    summary: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    subscription: str = SUB_A,
    **changes: Any,
) -> Finding:
    return Finding(
        rule_id=rule,
        severity=severity,
        title=f"{rule} title",
        vault_id=vault_id(name, subscription=subscription),
        vault_name=name,
        subject=subject,
        evidence=dict(evidence if evidence is not None else {"default_action": "Allow"}),
        summary=summary if summary is not None else f"{rule} on {name} {subject}".strip(),
        remediation=f"az keyvault update --name {name}",
        **changes,
    )


@dataclass
class PassThroughBackend:
    """Passes everything to the real backend; the wrappers below change what they need."""

    inner: EntityBackend

    @property
    def concurrent_requests(self) -> int:
        return self.inner.concurrent_requests

    def get(self, table: str, partition: str, row: str) -> Entity | None:
        return self.inner.get(table, partition, row)

    def query(
        self, table: str, *, partition: str | None = None, equals: Mapping[str, str] | None = None
    ) -> Iterator[Entity]:
        return self.inner.query(table, partition=partition, equals=equals)

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        return self.inner.submit(table, operations)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


@dataclass
class CountingBackend(PassThroughBackend):
    """Counts the entities each table was sent, and in how many requests (batches)."""

    written: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        etags = self.inner.submit(table, operations)
        with self._lock:  # the store writes partitions from several threads
            self.written[table] += len(operations)
            self.requests[table] += 1
        return etags

    def total(self) -> int:
        return sum(self.written.values())


@dataclass
class InterruptingBackend(PassThroughBackend):
    """Runs ``before`` once, just before the first write to ``table``: another scan's write, or a
    failure (``before`` raising) between two writes."""

    table: str
    before: Callable[[], None]
    done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, table: str, operations: Sequence[Operation]) -> list[str | None]:
        with self._lock:  # once, even when partitions are written from several threads
            first = table == self.table and not self.done
            self.done = self.done or first
            if first:
                self.before()
        return self.inner.submit(table, operations)
