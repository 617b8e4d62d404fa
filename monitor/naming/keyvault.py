"""Key Vault's names in DNS: the vault name rule, the clouds' DNS suffixes, the private link zone.

``probes.scope`` builds the hosts a probe may contact from these; the probe rules
(``monitor.judge.rules.keyvault.probes``) name the private DNS zone a finding is about. Both import
this module, so the judge needs nothing of the probes package.
"""

from __future__ import annotations

import re

PRODUCTION_SUFFIXES: tuple[str, ...] = ("vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net")

# Key Vault's naming rule (Microsoft.KeyVault/vaults): 3-24 characters, alphanumerics and hyphens,
# start with a letter, end with a letter or digit, no consecutive hyphens.
VAULT_NAME = re.compile(r"(?!.*--)[a-z][a-z0-9-]{1,22}[a-z0-9]")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def private_link_zone(suffix: str) -> str:
    """The private DNS zone Private Endpoints of vaults under ``suffix`` register in:
    ``vault.azure.net`` -> ``privatelink.vaultcore.azure.net`` (and alike for every cloud)."""
    suffix = suffix.strip().strip(".").lower()
    return "privatelink.vaultcore." + suffix.removeprefix("vault.")


def checked_suffix(suffix: str) -> str:
    """``suffix`` in lower case without dots at its ends; ValueError unless it has the form of a
    Key Vault DNS suffix, ``vault.<domain>``."""
    cleaned = suffix.strip().strip(".").lower()
    labels = cleaned.split(".")
    if (
        not cleaned.startswith("vault.")
        or len(labels) < 3
        or not all(_DNS_LABEL.fullmatch(x) for x in labels)
    ):
        raise ValueError(
            f"not a Key Vault DNS suffix: {suffix!r} (expected the form vault.<domain>, e.g. vault.azure.net)"
        )
    return cleaned
