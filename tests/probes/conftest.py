"""The probes' lab: split-horizon DNS and the Key Vault data plane over a walkthrough estate."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import LAB_PRIVATE_RANGES, LAB_VAULT_SUFFIX, Estate, walkthrough_estate
from lab.services import walkthrough_vantages
from lab.world import LabWorld
from monitor.config.policy import Vantage
from monitor.netaddr import AddressSpace
from probes.options import ProbeOptions
from probes.scope import ProbeScope

LAB_SPACE = AddressSpace.with_extra(LAB_PRIVATE_RANGES)
LAB_SCOPE = ProbeScope.with_emulator(LAB_VAULT_SUFFIX)


class SocketAudit:
    """Every socket connect/sendto/getaddrinfo any thread makes while ``watch()`` is active.

    Python's audit hooks see these calls in the C socket module itself, so "no packet was sent"
    is observed, not assumed. A hook cannot be removed, so one is installed per session.
    """

    EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self.events: list[tuple[str, Any]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self._active and event in self.EVENTS:
            with self._lock:
                self.events.append((event, args[1] if len(args) > 1 else args))

    @contextmanager
    def watch(self) -> Iterator[list[tuple[str, Any]]]:
        with self._lock:
            self.events = []
            self._active = True
        try:
            yield self.events
        finally:
            self._active = False

    def connects_to(self, address: str, port: int) -> int:
        return sum(
            1 for event, target in self.events if event == "socket.connect" and target == (address, port)
        )


_AUDIT: SocketAudit | None = None


@pytest.fixture(scope="session")
def socket_audit() -> SocketAudit:
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = SocketAudit()
    return _AUDIT


@pytest.fixture
def credential() -> LabCredential:
    return LabCredential()


@pytest.fixture
def start_world() -> Iterator[Callable[..., LabWorld]]:
    """Start a LabWorld over any estate; stopped after the test."""
    started: list[LabWorld] = []

    def start(estate: Estate | None = None, **kwargs: Any) -> LabWorld:
        world = LabWorld(estate or walkthrough_estate(), **kwargs).start()
        started.append(world)
        return world

    yield start
    for world in started:
        world.stop()


@pytest.fixture(scope="session")
def shared_world() -> Iterator[LabWorld]:
    """One set of servers for the tests that need only the walkthrough's addresses."""
    world = LabWorld(walkthrough_estate()).start()
    yield world
    world.stop()


@pytest.fixture
def world(shared_world: LabWorld) -> LabWorld:
    """The shared servers serving a fresh walkthrough estate: tests may change it freely."""
    return shared_world.use(walkthrough_estate())


def lab_options(world: LabWorld, **overrides: Any) -> ProbeOptions:
    values: dict[str, Any] = {
        "port": world.port,
        "scope": LAB_SCOPE,
        "address_space": LAB_SPACE,
        "ca_bundle": world.ca_path,
        "resolver": world.resolver,
        "dns_timeout_s": 2.0,
        "connect_timeout_s": 2.0,
        "tls_timeout_s": 2.0,
        "http_timeout_s": 5.0,
        "concurrency": 8,
    }
    values.update(overrides)
    return ProbeOptions(**values)


@pytest.fixture
def options(world: LabWorld) -> ProbeOptions:
    return lab_options(world)


@pytest.fixture
def vantages(world: LabWorld) -> dict[str, Vantage]:
    return {v.name: v for v in walkthrough_vantages(resolver=world.resolver)}
