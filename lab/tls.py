"""Certificates for the lab's HTTPS servers, from a throw-away CA (trustme).

One CA per process (or one shared by a benchmark's processes, ``adopt_lab_ca``): every lab server presents a certificate it signed, and every SDK client in a
test or the demo trusts it through ``ca_path``.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

# Names every lab server certificate covers. The vault names live under the lab's emulated Key
# Vault suffix (see lab.estate.LAB_VAULT_SUFFIX).
LAB_HOSTNAMES = ("localhost", "127.0.0.1", "*.vault.lab.test", "*.privatelink.vaultcore.lab.test")


@dataclass(frozen=True)
class LabPki:
    ca: trustme.CA
    directory: Path

    @property
    def ca_path(self) -> str:
        return str(self.directory / "lab-ca.pem")

    def server_context(self, *hostnames: str) -> ssl.SSLContext:
        """A server-side TLS context whose certificate covers ``hostnames`` (default: LAB_HOSTNAMES)."""
        cert = self.ca.issue_cert(*(hostnames or LAB_HOSTNAMES))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        # No TLS 1.3 session tickets: kvmon's probe never resumes a session (it must see the
        # certificate every time), and issuing two tickets after every handshake costs the lab
        # CPU on every connection. What a client verifies is unchanged.
        ctx.num_tickets = 0
        return ctx


_PKI: LabPki | None = None
_PKI_LOCK = threading.Lock()


def lab_pki() -> LabPki:
    global _PKI
    with _PKI_LOCK:
        if _PKI is None:
            _PKI = _written(trustme.CA(organization_name="kvmon lab CA"))
        return _PKI


def adopt_lab_ca(cert_pem: bytes, private_key_pem: bytes) -> LabPki:
    """Make another process's lab CA this process's (a benchmark whose lab runs in a process of
    its own and whose webhook sinks run in another): every server then presents a certificate of
    one CA, and every client trusts one bundle. Before any server of this process starts."""
    global _PKI
    with _PKI_LOCK:
        if _PKI is not None:
            raise RuntimeError("this process's lab CA is in use already")
        _PKI = _written(trustme.CA.from_pem(cert_pem, private_key_pem))
        return _PKI


def _written(ca: trustme.CA) -> LabPki:
    directory = Path(tempfile.mkdtemp(prefix="kvmon-lab-pki-"))
    ca.cert_pem.write_to_path(str(directory / "lab-ca.pem"))
    return LabPki(ca=ca, directory=directory)
