"""The lab's network for probes in one object: split-horizon DNS plus the Key Vault and Storage data planes.

``with LabWorld(estate) as world:`` gives ``world.resolver`` ("127.0.0.1:<port>") and
``world.port`` (the data planes' port on every listening address: Storage listens on its own
addresses, ``lab.storage.listening_addresses``, on Key Vault's port). Addresses listed in
``blackholed`` get a ``Blackhole`` instead of the data plane: a listener that never completes
another TCP handshake, so connecting to it times out as to a dropped route.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping, Sequence

from lab.dns import LabDns
from lab.estate import Estate
from lab.keyvault import KeyVaultDataPlane
from lab.storage import StorageDataPlane
from lab.storage import listening_addresses as storage_addresses
from lab.tls import lab_pki


class Blackhole:
    """A socket listening at (address, port) with a backlog of zero, already filled by one
    connection it never accepts: the kernel drops further SYNs, so clients wait for their timeout."""

    def __init__(self, address: str, port: int) -> None:
        if not address.startswith("127."):
            raise ValueError(f"lab blackholes live on loopback only, not {address}")
        self.address = address
        self.port = port
        self._sockets: list[socket.socket] = []

    def start(self) -> Blackhole:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.address, self.port))
        listener.listen(0)
        self.port = listener.getsockname()[1]
        filler = socket.create_connection((self.address, self.port), timeout=2)
        self._sockets = [listener, filler]
        return self

    def stop(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets = []

    def __enter__(self) -> Blackhole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LabWorld:
    def __init__(
        self,
        estate: Estate,
        *,
        blackholed: Sequence[str] = (),
        certificates: Mapping[str, tuple[str, ...]] | None = None,
        dns_mode: str = "answer",
    ) -> None:
        self.estate = estate
        self.dns = LabDns(estate, mode=dns_mode)
        listening = [a for a in estate.listening_addresses() if a not in set(blackholed)]
        self.keyvault = KeyVaultDataPlane(estate, addresses=listening, certificates=certificates)
        self.storage = StorageDataPlane(
            estate, addresses=[a for a in storage_addresses(estate) if a not in set(blackholed)]
        )
        self._blackholed = tuple(blackholed)
        self.blackholes: list[Blackhole] = []

    @property
    def resolver(self) -> str:
        return self.dns.resolver

    @property
    def port(self) -> int:
        return self.keyvault.port

    @property
    def ca_path(self) -> str:
        return lab_pki().ca_path

    def use(self, estate: Estate) -> LabWorld:
        """Serve another estate from the running servers (tests start the servers once), with
        every DNS name answered again.

        The data plane keeps listening where it listens: ``estate`` must need no other address.
        """
        missing = set(estate.listening_addresses()) - set(self.keyvault.servers) - set(self._blackholed)
        missing |= set(storage_addresses(estate)) - set(self.storage.servers) - set(self._blackholed)
        if self.keyvault.servers and missing:
            raise ValueError(f"the running data plane does not listen on {', '.join(sorted(missing))}")
        self.estate = self.dns.estate = self.keyvault.estate = self.storage.estate = estate
        self.dns.clear_faults()
        return self

    def start(self) -> LabWorld:
        self.keyvault.start()
        try:
            self.storage.port = self.keyvault.port
            self.storage.start()
            self.blackholes = [Blackhole(a, self.keyvault.port).start() for a in self._blackholed]
            self.dns.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for blackhole in self.blackholes:
            blackhole.stop()
        self.blackholes = []
        # Both wait for their servers' poll interval: wait once, not twice.
        dns_stop = threading.Thread(target=self.dns.stop)
        dns_stop.start()
        self.storage.stop()
        self.keyvault.stop()
        dns_stop.join()

    def __enter__(self) -> LabWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
