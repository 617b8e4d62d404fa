"""Storage accounts' names in DNS: the account name rule, the clouds' DNS suffixes, each
sub-resource's endpoint host and private link zone.

An account has one endpoint per sub-resource, ``<account>.<sub>.<suffix>`` (``sa1.blob.core.windows.net``),
and a read-access secondary's ``<account>-secondary.<sub>.<suffix>``; a private endpoint serves one
sub-resource and registers in that sub-resource's zone, ``privatelink.<sub>.<suffix>`` (the
secondaries register in their primary's zone). The probes (``probes.storage``) build and check the
hosts they contact from these, as ``monitor.naming.keyvault`` does for vaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.model_storage import StorageSubresource

# Azure's, Azure China's and Azure Government's storage suffixes (the Key Vault suffixes' clouds).
PRODUCTION_SUFFIXES: tuple[str, ...] = ("core.windows.net", "core.chinacloudapi.cn", "core.usgovcloudapi.net")

# Microsoft.Storage/storageAccounts: 3-24 characters, lower-case letters and digits only.
ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_SECONDARY = "_secondary"


def checked_suffix(suffix: str) -> str:
    """``suffix`` in lower case without dots at its ends; ValueError unless it has the form of a
    storage DNS suffix, ``core.<domain>``."""
    cleaned = suffix.strip().strip(".").lower()
    labels = cleaned.split(".")
    if not cleaned.startswith("core.") or len(labels) < 3 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        raise ValueError(
            f"not a storage DNS suffix: {suffix!r} (expected the form core.<domain>, e.g. core.windows.net)"
        )
    return cleaned


def _service(subresource: StorageSubresource) -> str:
    """The DNS label of a sub-resource's service: ``blob_secondary`` -> ``blob``."""
    return subresource.value.removesuffix(_SECONDARY)


def endpoint_host(account: str, subresource: StorageSubresource, suffix: str) -> str:
    """``sa1``, blob, ``core.windows.net`` -> ``sa1.blob.core.windows.net``; a secondary's host is
    the account's name with ``-secondary``. ValueError for a name that is no account's."""
    name = account.strip().lower()
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"{account!r} is not a storage account name: 3-24 characters, lower-case letters and digits"
        )
    if subresource.value.endswith(_SECONDARY):
        name += "-secondary"
    return f"{name}.{_service(subresource)}.{checked_suffix(suffix)}"


def private_link_zone(subresource: StorageSubresource, suffix: str) -> str:
    """The private DNS zone a private endpoint for ``subresource`` registers in:
    blob, ``core.windows.net`` -> ``privatelink.blob.core.windows.net``."""
    return f"privatelink.{_service(subresource)}.{checked_suffix(suffix)}"


@dataclass(frozen=True)
class EndpointHost:
    """An endpoint host read back into its parts."""

    account: str
    subresource: StorageSubresource
    suffix: str

    @property
    def hostname(self) -> str:
        return endpoint_host(self.account, self.subresource, self.suffix)


def parse_endpoint_host(host: str, *, suffixes: tuple[str, ...]) -> EndpointHost:
    """``sa1.dfs.core.windows.net`` -> (sa1, dfs, core.windows.net) when the suffix is one of
    ``suffixes``; ValueError naming what is wrong otherwise (another suffix, another shape)."""
    text = host.strip().rstrip(".").lower()
    for suffix in sorted((checked_suffix(s) for s in suffixes), key=len, reverse=True):
        if not text.endswith("." + suffix):
            continue
        name, _, service = text[: -len(suffix) - 1].partition(".")
        secondary = name.endswith("-secondary")
        value = service + (_SECONDARY if secondary else "")
        try:
            subresource = StorageSubresource(value)
        except ValueError:
            raise ValueError(f"{host!r}: {service!r} is not a storage sub-resource") from None
        account = name.removesuffix("-secondary")
        endpoint = EndpointHost(account=account, subresource=subresource, suffix=suffix)
        endpoint_host(account, subresource, suffix)  # its ValueError names a bad account name
        return endpoint
    raise ValueError(f"{host!r} is not under a storage DNS suffix kvmon accepts ({', '.join(suffixes)})")
