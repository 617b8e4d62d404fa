"""What the baseline expects of one vault, resolved: the input every rule reads besides the facts.

The baseline loader (``monitor.config.baseline``) turns YAML into one ``VaultPolicy`` per vault; rules
read only this plain value, never the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitor.model import IPNetwork, Severity, Suppression
from monitor.model_storage import StorageBypass, StorageSubresource


class Mode(StrEnum):
    """How a vault is meant to be reached: the baseline's ``mode``."""

    PRIVATE_LINK = "private-link"
    SERVICE_ENDPOINT = "service-endpoint"
    IP_FIREWALL = "ip-firewall"
    PUBLIC = "public"


class Reach(StrEnum):
    """What the data plane should do with a probe from a vantage point."""

    ADMITTED = "admitted"
    REFUSED = "refused"


class DnsAnswer(StrEnum):
    """What the vault's name should resolve to from a vantage point."""

    PRIVATE = "private"
    PUBLIC = "public"


PLACE_NOT_STATED = (
    "place not stated: the rules that depend on inside or outside the VNet (KV103, KV104, KV105, "
    "and KV101/KV102 for Private Link vaults) do not judge it; state it with an entry "
    '{"name": ..., "inside": true|false} in KVMON_VANTAGES (kvmon probe: --vantages FILE)'
)


@dataclass(frozen=True)
class Vantage:
    """A place probes run from. ``endpoint`` None means this process."""

    name: str
    # Inside the VNet (True), on the internet (False), or not stated (None): no rule that depends
    # on the place fires from a vantage point whose place nobody stated.
    inside: bool | None
    subnet_id: str | None = None
    endpoint: str | None = None  # https://<app>/api/probe of a remote deployment
    key_setting: str | None = None  # app setting that holds that endpoint's function key
    source_address: str | None = None  # bind here (tests and lab: several loopback addresses)
    resolver: str | None = None  # "IP[:PORT]"; None = the system's
    # The Azure region it runs in (None: not stated, or outside Azure). Storage's IP rules do not
    # apply to callers in the account's region, so such a probe cannot test them (probes.storage).
    region: str | None = None


@dataclass(frozen=True)
class VantageExpectation:
    reach: Reach | None = None  # None: no expectation
    dns: DnsAnswer | None = None


@dataclass(frozen=True)
class VaultPolicy:
    """The baseline's verdict on what one vault (or, from an entry with ``service: storage``, one
    storage account) should look like. ``entry`` None: no entry matched."""

    entry: str | None = None
    mode: Mode | None = None
    justification: str | None = None
    allowed_subnets: tuple[str, ...] = ()  # lower-cased subnet ids
    allowed_ip_ranges: tuple[IPNetwork, ...] = ()
    min_prefix_length: int = 24
    bypass: str | None = None  # only checked when stated
    default_action: str | None = None  # expected, for KV011
    public_network_access: str | None = None  # expected, for KV011
    drift_severity: Severity = Severity.MEDIUM  # KV011's severity
    vantages: dict[str, VantageExpectation] = field(default_factory=dict)  # explicit, by vantage name
    private_path_identities: tuple[str, ...] = ()  # app/object ids that must arrive privately (KV203)
    suppressions: tuple[Suppression, ...] = ()
    baseline_given: bool = False  # a baseline file was given at all (KV013 only fires then)
    # Storage accounts only (an entry with ``service: storage``): the bypass set expected (ST008),
    # whether shared-key authorisation may be allowed (ST014: False forbids it), and the
    # sub-resources workloads use (ST011; empty: those the account's primaryEndpoints list).
    storage_bypass: frozenset[StorageBypass] | None = None
    allow_shared_key_access: bool | None = None
    subresources: tuple[StorageSubresource, ...] = ()

    def expectation_for(self, vantage: Vantage, *, vault_subnets: tuple[str, ...] = ()) -> VantageExpectation:
        """Explicit expectations win; otherwise the walkthrough's defaults for the mode.

        service-endpoint: public DNS everywhere; admitted from the allowed (or the vault's rule)
        subnets, refused elsewhere. private-link: private DNS and admitted inside, public DNS and
        refused outside. public: admitted everywhere. ip-firewall: public DNS; reach
        depends on addresses the baseline cannot tie to a vantage, so no default.
        """
        explicit = self.vantages.get(vantage.name)
        default = self._mode_default(vantage, vault_subnets)
        if explicit is None:
            return default
        return VantageExpectation(reach=explicit.reach or default.reach, dns=explicit.dns or default.dns)

    def _mode_default(self, vantage: Vantage, vault_subnets: tuple[str, ...]) -> VantageExpectation:
        if self.mode == Mode.PUBLIC:
            return VantageExpectation(reach=Reach.ADMITTED, dns=DnsAnswer.PUBLIC)
        if self.mode == Mode.PRIVATE_LINK:
            if vantage.inside is None:
                return VantageExpectation()  # what to expect depends on the place, not stated
            if vantage.inside:
                return VantageExpectation(reach=Reach.ADMITTED, dns=DnsAnswer.PRIVATE)
            return VantageExpectation(reach=Reach.REFUSED, dns=DnsAnswer.PUBLIC)
        if self.mode == Mode.SERVICE_ENDPOINT:
            subnets = set(self.allowed_subnets or tuple(s.lower() for s in vault_subnets))
            allowed = vantage.subnet_id is not None and vantage.subnet_id.lower() in subnets
            return VantageExpectation(
                reach=Reach.ADMITTED if allowed else Reach.REFUSED, dns=DnsAnswer.PUBLIC
            )
        if self.mode == Mode.IP_FIREWALL:
            return VantageExpectation(dns=DnsAnswer.PUBLIC)
        return VantageExpectation()
