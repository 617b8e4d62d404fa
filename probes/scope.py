"""Which hosts a probe may contact: Key Vault names under Key Vault DNS suffixes, nothing else.

The probe endpoint (``POST /api/probe``) takes vault names from the network, so this check is
what keeps the app from becoming a way to make it connect to arbitrary hosts. It runs before any
packet is sent, and everything after it works on the hostname it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.errors import InputError
from monitor.naming.keyvault import PRODUCTION_SUFFIXES, VAULT_NAME, checked_suffix, private_link_zone


class OutOfScope(InputError):
    """A name the probes refuse to contact; the message says why."""


@dataclass(frozen=True)
class ProbeScope:
    """The suffixes probes accept. A bare vault name gets ``default_suffix`` (the first suffix
    unless set)."""

    suffixes: tuple[str, ...] = PRODUCTION_SUFFIXES
    default_suffix: str | None = None

    def __post_init__(self) -> None:
        suffixes = tuple(dict.fromkeys(checked_suffix(s) for s in self.suffixes))
        if not suffixes:
            raise ValueError("a probe scope needs at least one Key Vault DNS suffix")
        default = checked_suffix(self.default_suffix) if self.default_suffix else suffixes[0]
        if default not in suffixes:
            raise ValueError(f"default suffix {default!r} is not one of the scope's suffixes")
        object.__setattr__(self, "suffixes", suffixes)
        object.__setattr__(self, "default_suffix", default)

    @classmethod
    def with_emulator(cls, suffix: str, *, production: Iterable[str] = PRODUCTION_SUFFIXES) -> ProbeScope:
        """Production suffixes plus an emulator's, which bare names then default to."""
        emulator = checked_suffix(suffix)
        return cls(suffixes=(*production, emulator), default_suffix=emulator)

    def hostname_for(self, name_or_host: str) -> str:
        """``kv-demo``, ``kv-demo.vault.azure.net`` or ``https://kv-demo.vault.azure.net/`` ->
        ``kv-demo.vault.azure.net``; OutOfScope for anything else."""
        if not isinstance(name_or_host, str):
            raise OutOfScope(f"a vault name must be a string, not {type(name_or_host).__name__}")
        text = name_or_host.strip()
        shown = text if len(text) <= 80 else text[:77] + "..."
        if not text:
            raise OutOfScope("empty vault name")
        if "://" in text:
            text = self._host_of_uri(text, shown)
        host = text.rstrip(".").lower()
        if "." not in host:
            return self._checked(host, self.default_suffix or self.suffixes[0], shown)
        for suffix in sorted(self.suffixes, key=len, reverse=True):
            if host.endswith("." + suffix):
                return self._checked(host[: -len(suffix) - 1], suffix, shown)
        raise OutOfScope(
            f"{shown!r} is not under a Key Vault DNS suffix this probe accepts ({', '.join(self.suffixes)})"
        )

    def vault_name_of(self, hostname: str) -> str:
        """The vault name (first label) of an in-scope hostname."""
        return self.hostname_for(hostname).split(".", 1)[0]

    def suffix_of(self, hostname: str) -> str:
        return self.hostname_for(hostname).split(".", 1)[1]

    def private_link_zone_for(self, hostname: str) -> str:
        return private_link_zone(self.suffix_of(hostname))

    @staticmethod
    def _host_of_uri(text: str, shown: str) -> str:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise OutOfScope(f"{shown!r} is not a vault URI") from None
        if parts.scheme.lower() != "https" or parts.username or parts.password or port is not None:
            raise OutOfScope(
                f"{shown!r}: a vault URI is https://<name>.<suffix>/ without port or credentials"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise OutOfScope(f"{shown!r}: a vault URI has no path, query or fragment")
        return parts.hostname or ""

    @staticmethod
    def _checked(name: str, suffix: str, shown: str) -> str:
        if not VAULT_NAME.fullmatch(name):
            raise OutOfScope(
                f"{shown!r} is not a Key Vault name: 3-24 characters, letters, digits and hyphens, "
                "starting with a letter, ending with a letter or digit, no consecutive hyphens"
            )
        return f"{name}.{suffix}"
