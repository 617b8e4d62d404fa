"""What a vault or a storage account admits from the public side once Network Security Perimeter is
in play.

``effective_exposure`` decides, from publicNetworkAccess and the association as read, which set of
rules admits public callers (Microsoft's documentation; the Audit column is inferred and says so):

====================  ==========  ====================  ==========  =========================
publicNetworkAccess   none        Learning (Transition) Enforced    Audit (inferred)
====================  ==========  ====================  ==========  =========================
Enabled               firewall    rules or firewall     rules       firewall
Disabled              closed      rules (re-opens it)   rules       closed
SecuredByPerimeter    closed      rules                 rules       unknown: the probes decide
====================  ==========  ====================  ==========  =========================

Private endpoints always pass; Service Endpoint traffic is not supported under a perimeter in
Learning or Enforced mode; the trusted-services bypass does not apply where only perimeter rules
do. An association that could not be read, an access mode kvmon does not know, and
SecuredByPerimeter on a vault whose association was not looked up are unknown, never closed.

The table is the perimeter documentation's for every associated PaaS resource, so a storage account
(``NetworkPosture``) is read with it too; for storage, Microsoft documents that trusted-service access
and resource instance rules stay in effect after publicNetworkAccess is Disabled, which is the table's
Disabled row (the bypass applies, the firewall does not), and that an account with Disabled and a
defaultAction left at Allow is closed: the firewall's default no longer applies. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from monitor.config.policy import VaultPolicy
from monitor.model import (
    IPNetwork,
    PerimeterAccessMode,
    PerimeterAssociation,
    PerimeterLookup,
    PerimeterReading,
)


class NetworkPosture(Protocol):
    """What the table reads of a resource: a vault's ``VaultPosture`` and a storage account's
    ``StorageAccountPosture`` both answer it (publicNetworkAccess in Azure's spelling; kvmon's own
    "absent" counts as Enabled, as any value the table does not know)."""

    @property
    def public_network_access(self) -> str: ...

    @property
    def network_acls_present(self) -> bool: ...

    @property
    def default_action(self) -> str: ...

    @property
    def trusted_services_bypass(self) -> bool: ...

    @property
    def perimeter(self) -> PerimeterReading: ...


class InboundSet(StrEnum):
    """Which rules admit public callers."""

    FIREWALL = "firewall"  # the vault's own networkAcls
    RULES = "rules"  # the perimeter profile's inbound rules only
    RULES_OR_FIREWALL = "rules-or-firewall"  # either admits (Learning with public access Enabled)
    CLOSED = "closed"  # nothing public: private endpoints (and, where it applies, the bypass) only
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OpenEntry:
    """One perimeter rule entry that admits the public (the issue's definition of "open")."""

    rule: str
    kind: str  # addressPrefix | subscription | serviceTag
    value: str
    reason: str

    def describe(self) -> str:
        return f"{self.kind} {self.value} in perimeter rule {self.rule} ({self.reason})"


@dataclass(frozen=True)
class EffectiveExposure:
    inbound: InboundSet
    firewall_applies: bool  # the vault's networkAcls admit anybody
    trusted_bypass_applies: bool  # networkAcls.bypass=AzureServices lets trusted services in
    service_endpoints_supported: bool  # virtual network rules can admit Service Endpoint traffic
    public: bool | None  # open to the public; None when the inbound set is unknown
    firewall_open: bool  # the firewall admits every address (today's KV001 condition), in force or not
    open_entries: tuple[OpenEntry, ...] = ()  # the perimeter entries that make it public, in force
    inferred: bool = False  # the Audit column: not documented for Key Vault
    reason: str = ""  # the decisive words: why this inbound set
    error: str | None = None  # why it is unknown, where it is

    # A perimeter in Learning or Enforced mode decides (part of) who gets in.
    perimeter_in_force: bool = False

    @property
    def firewall_dead(self) -> bool:
        """The perimeter's rules replaced the vault's networkAcls: those are dead configuration."""
        return self.perimeter_in_force and not self.firewall_applies

    def as_evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "effective_inbound": self.inbound.value,
            "firewall_applies": self.firewall_applies,
            "trusted_bypass_applies": self.trusted_bypass_applies,
            "service_endpoints_supported": self.service_endpoints_supported,
            "open_to_public": self.public,
            "open_entries": [entry.describe() for entry in self.open_entries],
            "reason": self.reason,
        }
        if self.inferred:
            evidence["inferred"] = (
                "Audit mode is not documented for Key Vault: kvmon infers that it admits as if "
                "there were no association"
            )
        if self.error is not None:
            evidence["error"] = self.error
        return evidence


class _Access(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    SECURED_BY_PERIMETER = "securedbyperimeter"


def _public_access(posture: NetworkPosture) -> _Access:
    # Unknown values count as Enabled: Azure admits public traffic unless told otherwise.
    folded = posture.public_network_access.strip().lower()
    return _Access(folded) if folded in {access.value for access in _Access} else _Access.ENABLED


def perimeter_may_govern(posture: NetworkPosture) -> bool:
    """A perimeter governs the resource, or may: it is associated (in any access mode), its association
    could not be read, or it is SecuredByPerimeter and nobody looked. Such a vault's logs reach only
    workspaces inside its perimeter (Microsoft: "the log destinations must be within the same network
    security perimeter as the PaaS resource"), so an empty log of it is no evidence of anything."""
    lookup = posture.perimeter.lookup
    if lookup in (PerimeterLookup.ASSOCIATED, PerimeterLookup.UNREADABLE):
        return True
    return lookup == PerimeterLookup.NOT_LOOKED_UP and _public_access(posture) == _Access.SECURED_BY_PERIMETER


def firewall_open(posture: NetworkPosture) -> bool:
    """No networkAcls, or a defaultAction other than Deny: the firewall admits every address."""
    return not posture.network_acls_present or posture.default_action.lower() != "deny"


def within_any(network: IPNetwork, ranges: Iterable[IPNetwork]) -> bool:
    return any(
        network.version == allowed.version and network.subnet_of(allowed)  # type: ignore[arg-type]
        for allowed in ranges
    )


def broad_prefix_reasons(network: IPNetwork, policy: VaultPolicy) -> list[str]:
    """Why a range admits more than the baseline allows (empty: it does not). A minimum prefix
    length is in IPv4 bits and means nothing for IPv6."""
    reasons: list[str] = []
    if network.version == 4 and network.prefixlen < policy.min_prefix_length:
        reasons.append(f"broader than /{policy.min_prefix_length}")
    if policy.allowed_ip_ranges and not within_any(network, policy.allowed_ip_ranges):
        allowed = ", ".join(str(r) for r in policy.allowed_ip_ranges)
        reasons.append(f"outside the baseline's allowed ranges ({allowed})")
    return reasons


def open_entries(association: PerimeterAssociation, policy: VaultPolicy) -> Iterator[OpenEntry]:
    """The inbound rule entries that open the vault to the public: an everything range (0.0.0.0/0,
    ::/0), a prefix broader than the baseline allows, any service tag, any subscription (identity
    scoped: from any source address). Linked perimeters admit that perimeter's resources only."""
    for access_rule in association.inbound_rules:
        for prefix in access_rule.address_prefixes:
            network = prefix.network
            if network is None:
                continue
            reasons = ["every address"] if network.prefixlen == 0 else broad_prefix_reasons(network, policy)
            if reasons:
                yield OpenEntry(access_rule.name, "addressPrefix", prefix.raw, " and ".join(reasons))
        for subscription in access_rule.subscriptions:
            yield OpenEntry(
                access_rule.name,
                "subscription",
                subscription,
                "any caller from that subscription, any address",
            )
        for tag in access_rule.service_tags:
            yield OpenEntry(access_rule.name, "serviceTag", tag, "every address of the service tag")


def effective_exposure(*, posture: NetworkPosture, policy: VaultPolicy) -> EffectiveExposure:
    access = _public_access(posture)
    reading = posture.perimeter
    firewall = firewall_open(posture)
    bypass = posture.trusted_services_bypass
    if reading.lookup == PerimeterLookup.UNREADABLE:
        return _unknown(posture, f"the perimeter association could not be read: {reading.error}")
    association = reading.association
    if association is None:
        if access == _Access.SECURED_BY_PERIMETER and reading.lookup == PerimeterLookup.NOT_LOOKED_UP:
            return _unknown(
                posture,
                "publicNetworkAccess is SecuredByPerimeter and the perimeter association was not "
                "looked up: a perimeter may admit anyone; let the probes decide",
            )
        return _without_perimeter(access, firewall=firewall, bypass=bypass)
    mode = association.access_mode
    where = f"perimeter {association.perimeter_name} (profile {association.profile_name}, {mode.value} mode)"
    entries = tuple(open_entries(association, policy))
    if mode == PerimeterAccessMode.UNKNOWN:
        return _unknown(
            posture, f"{where}: access mode {association.access_mode_text!r} is not one kvmon knows"
        )
    if mode == PerimeterAccessMode.AUDIT:
        if access == _Access.SECURED_BY_PERIMETER:
            return EffectiveExposure(
                inbound=InboundSet.UNKNOWN,
                firewall_applies=False,
                trusted_bypass_applies=False,
                service_endpoints_supported=False,
                public=None,
                firewall_open=firewall,
                inferred=True,
                reason=f"{where}: what SecuredByPerimeter admits in Audit mode is undocumented",
                error=f"{where}: Audit mode under SecuredByPerimeter is undocumented; let the probes decide",
            )
        audited = _without_perimeter(access, firewall=firewall, bypass=bypass)
        return EffectiveExposure(
            inbound=audited.inbound,
            firewall_applies=audited.firewall_applies,
            trusted_bypass_applies=audited.trusted_bypass_applies,
            service_endpoints_supported=audited.service_endpoints_supported,
            public=audited.public,
            firewall_open=firewall,
            inferred=True,
            reason=f"{where}: Audit mode logs but does not enforce (inferred); {audited.reason}",
        )
    if mode == PerimeterAccessMode.LEARNING and access == _Access.ENABLED:
        return EffectiveExposure(
            inbound=InboundSet.RULES_OR_FIREWALL,
            firewall_applies=True,
            trusted_bypass_applies=bypass,
            service_endpoints_supported=False,
            public=firewall or bool(entries),
            firewall_open=firewall,
            open_entries=entries,
            reason=f"{where}: the perimeter's rules admit, and so does the vault's firewall",
            perimeter_in_force=True,
        )
    if mode == PerimeterAccessMode.LEARNING and access == _Access.DISABLED:
        reason = f"{where}: the perimeter's rules re-open a vault whose publicNetworkAccess is Disabled"
    else:
        reason = f"{where}: only the perimeter's rules admit"
    return EffectiveExposure(
        inbound=InboundSet.RULES,
        firewall_applies=False,
        trusted_bypass_applies=False,
        service_endpoints_supported=False,
        public=bool(entries),
        firewall_open=firewall,
        open_entries=entries,
        reason=reason,
        perimeter_in_force=True,
    )


def _without_perimeter(access: _Access, *, firewall: bool, bypass: bool) -> EffectiveExposure:
    if access == _Access.ENABLED:
        return EffectiveExposure(
            inbound=InboundSet.FIREWALL,
            firewall_applies=True,
            trusted_bypass_applies=bypass,
            service_endpoints_supported=True,
            public=firewall,
            firewall_open=firewall,
            reason="no perimeter: the vault's firewall admits",
        )
    if access == _Access.DISABLED:
        # Key Vault's refusal names the exception: "not from a trusted service nor via an approved
        # private link", so the bypass still lets trusted services in.
        return EffectiveExposure(
            inbound=InboundSet.CLOSED,
            firewall_applies=False,
            trusted_bypass_applies=bypass,
            service_endpoints_supported=False,
            public=False,
            firewall_open=firewall,
            reason="no perimeter: publicNetworkAccess is Disabled, private endpoints only",
        )
    return EffectiveExposure(
        inbound=InboundSet.CLOSED,
        firewall_applies=False,
        trusted_bypass_applies=False,
        service_endpoints_supported=False,
        public=False,
        firewall_open=firewall,
        reason="no perimeter: SecuredByPerimeter admits private endpoints only, no trusted-service bypass",
    )


def _unknown(posture: NetworkPosture, error: str) -> EffectiveExposure:
    return EffectiveExposure(
        inbound=InboundSet.UNKNOWN,
        firewall_applies=False,
        trusted_bypass_applies=False,
        service_endpoints_supported=False,
        public=None,
        firewall_open=firewall_open(posture),
        reason=error,
        error=error,
    )
