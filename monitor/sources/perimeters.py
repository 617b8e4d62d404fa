"""The Network Security Perimeter association of every scanned vault, read from ARM.

Which API: Key Vault's own ``.../vaults/{name}/networkSecurityPerimeterConfigurations`` gives a
vault's association, access mode, profile rules and provisioning issues in one call, but exists
only in preview API versions (and azure-mgmt-keyvault pre-releases): kvmon reads generally
available APIs only. This module reads the GA path instead, azure-mgmt-network's
``network_security_perimeters``, ``network_security_perimeter_associations``,
``network_security_perimeter_profiles``, ``network_security_perimeter_access_rules`` and
``network_security_perimeter_links`` (api-version 2026-03-01 in azure-mgmt-network 33.1). Resource
Graph is not used: nothing shows it indexes associations or rules.

Read per perimeter, not per vault: per subscription one listing of its perimeters; per perimeter
one listing of its associations; and only for a perimeter holding a scanned vault, one listing of
its profiles, one of its links and one of the access rules of each profile a scanned vault uses.
An association's ``privateLinkResource.id`` is matched to the vaults' ids case-insensitively, enum
values (``accessMode``, ``direction``, a link's ``status``) are compared case-insensitively by
their ``.value``, and every field is read under ``.properties``. Only Inbound rules count; an
Approved link whose ``localInboundProfiles`` names the profile (or ``*``) admits the remote
perimeter's resources, as a rule naming that perimeter does.

The perimeters read are those of the scanned subscriptions and of ``perimeter_subscriptions``
(``KVMON_PERIMETER_SUBSCRIPTIONS``: a subscription that holds perimeters for others, such as a
central network subscription). Every vault gets a reading: ASSOCIATED, NONE, or UNREADABLE with
the reason, never NONE when a perimeter that may hold it could not be read: a subscription whose
perimeters could not be listed, or a perimeter whose associations could not be, makes the vaults
of that subscription (every vault, for a perimeter subscription) unreadable; an association whose
profile, rules or links could not be read makes its vault unreadable. Each fault is a
``ScanError`` (ARM) naming the subscription, perimeter or vault. Clients share the inventory's
``ArmConnection`` (endpoint, token scope, trust, timeouts, retries); ``requests`` counts what was
sent, retries included.

Not seen: an association in a perimeter of a subscription kvmon neither scans nor is told holds
perimeters (the vault reads as associated with none; name that subscription in
KVMON_PERIMETER_SUBSCRIPTIONS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network import NetworkManagementClient

from monitor.azure_errors import describe_exception, error_code
from monitor.model import (
    ArmStamp,
    ErrorSource,
    IpRule,
    PerimeterAccessRule,
    PerimeterAssociation,
    PerimeterLookup,
    PerimeterProvisioningIssue,
    PerimeterReading,
    ScanError,
    VaultPosture,
)
from monitor.netaddr import parse_network
from monitor.sources.arm import ArmConnection, RequestCounter, describe_arm_error, unique_subscriptions


@dataclass
class PerimeterRead:
    """A reading for every vault given (by vault key), the faults, and the requests sent."""

    readings: dict[str, PerimeterReading] = field(default_factory=dict)
    errors: list[ScanError] = field(default_factory=list)
    requests: int = 0  # HTTP requests sent to ARM, retries included

    def apply(self, postures: Iterable[VaultPosture]) -> list[VaultPosture]:
        """The postures with their perimeter reading (a vault not read keeps its own)."""
        return [
            dataclasses.replace(posture, perimeter=self.readings[posture.key])
            if posture.key in self.readings
            else posture
            for posture in postures
        ]


class PerimeterSource(Protocol):
    """What ``run_scan`` asks of a perimeter reader."""

    def read_perimeters(
        self, postures: Sequence[VaultPosture], *, subscriptions: Sequence[str]
    ) -> PerimeterRead: ...


@dataclass(frozen=True)
class _Perimeter:
    id: str
    name: str
    resource_group: str
    subscription_id: str


@dataclass
class _Found:
    """An association of a scanned vault, as far as it could be read."""

    vault_key: str
    perimeter: _Perimeter
    association: PerimeterAssociation | None = None
    error: str | None = None


@dataclass
class _SubscriptionRead:
    found: list[_Found] = field(default_factory=list)
    # Why perimeters of this subscription may hold vaults kvmon cannot name (listing or association
    # reads failed): empty when every perimeter's associations were read.
    blind: list[str] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)


class ArmPerimeterReader:
    """Reads vaults' perimeter associations with azure-mgmt-network.

    :param credential: a token credential (``DefaultAzureCredential`` in production).
    :keyword connection: the inventory's ``ArmConnection``: endpoint, scope, trust, timeouts, retries.
    :keyword perimeter_subscriptions: subscriptions whose perimeters are read beside the scanned ones.
    :keyword max_concurrency: subscriptions read at the same time.
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        connection: ArmConnection,
        perimeter_subscriptions: Sequence[str] = (),
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.credential = credential
        self.connection = connection
        self.perimeter_subscriptions = tuple(unique_subscriptions(perimeter_subscriptions))
        self.max_concurrency = max_concurrency

    def read_perimeters(
        self, postures: Sequence[VaultPosture], *, subscriptions: Sequence[str]
    ) -> PerimeterRead:
        """Each posture's association, reading the perimeters of ``subscriptions`` (the scan's),
        of the postures' own subscriptions and of ``perimeter_subscriptions``."""
        result = PerimeterRead()
        if not postures:
            return result
        vaults = {posture.key: posture for posture in postures}
        scanned = unique_subscriptions([*subscriptions, *(p.subscription_id for p in postures)])
        everywhere = unique_subscriptions([*scanned, *self.perimeter_subscriptions])
        counter = RequestCounter()
        workers = min(self.max_concurrency, len(everywhere))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmon-nsp") as pool:
            reads = list(pool.map(lambda s: self._read_subscription(s, set(vaults), counter), everywhere))
        found: dict[str, list[_Found]] = {}
        blind: dict[str, list[str]] = {}  # vault key -> why a perimeter may hold it unseen
        for subscription_id, read in zip(everywhere, reads, strict=True):
            result.errors.extend(read.errors)
            for item in read.found:
                found.setdefault(item.vault_key, []).append(item)
            if not read.blind:
                continue
            # A scanned subscription's perimeters are taken to hold its own vaults; a subscription
            # named only for its perimeters may hold any.
            covers = [
                key
                for key, posture in vaults.items()
                if subscription_id not in scanned or posture.subscription_id.lower() == subscription_id
            ]
            for key in covers:
                blind.setdefault(key, []).extend(read.blind)
        for key, posture in vaults.items():
            result.readings[key] = self._reading(
                posture, found.get(key, []), blind.get(key, []), result.errors
            )
        result.requests = counter.count
        return result

    # -- internals -----------------------------------------------------------------------------

    def _reading(
        self, posture: VaultPosture, found: list[_Found], blind: list[str], errors: list[ScanError]
    ) -> PerimeterReading:
        for item in found:
            if item.error is not None:
                errors.append(
                    ScanError(
                        ErrorSource.ARM,
                        posture.id,
                        f"the vault's association with perimeter {item.perimeter.id} could not be read: "
                        f"{item.error}",
                    )
                )
        if blind:
            return PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="; ".join(dict.fromkeys(blind)))
        unreadable = [item for item in found if item.association is None]
        if unreadable:
            return PerimeterReading(
                lookup=PerimeterLookup.UNREADABLE,
                error="; ".join(
                    f"association with perimeter {item.perimeter.name} ({item.perimeter.id}): {item.error}"
                    for item in unreadable
                ),
            )
        if len(found) > 1:
            names = ", ".join(item.perimeter.id for item in found)
            errors.append(
                ScanError(
                    ErrorSource.ARM,
                    posture.id,
                    f"the vault is associated with {len(found)} perimeters: {names}",
                )
            )
            return PerimeterReading(
                lookup=PerimeterLookup.UNREADABLE,
                error=f"associated with {len(found)} perimeters ({names}): kvmon judges one association per vault",
            )
        if found:
            assert found[0].association is not None
            return PerimeterReading(lookup=PerimeterLookup.ASSOCIATED, association=found[0].association)
        return PerimeterReading(lookup=PerimeterLookup.NONE)

    def _client(self, subscription_id: str, counter: RequestCounter) -> NetworkManagementClient:
        return NetworkManagementClient(
            self.credential,
            subscription_id,
            **self.connection.client_options(),
            raw_request_hook=counter,
        )

    def _read_subscription(
        self, subscription_id: str, vault_keys: set[str], counter: RequestCounter
    ) -> _SubscriptionRead:
        read = _SubscriptionRead()
        try:
            with self._client(subscription_id, counter) as client:
                try:
                    perimeters = [
                        _perimeter(item) for item in client.network_security_perimeters.list_by_subscription()
                    ]
                except Exception as exc:  # an ARM error, the network, or an answer the SDK choked on
                    reason = f"the perimeters of subscription {subscription_id} could not be listed: {_describe(exc)}"
                    read.blind.append(reason)
                    read.errors.append(ScanError(ErrorSource.ARM, subscription_id, reason, _code(exc)))
                    return read
                for perimeter in perimeters:
                    self._read_perimeter(client, perimeter, vault_keys, read)
        except Exception as exc:  # the client itself could not be built or closed
            reason = f"the perimeters of subscription {subscription_id} could not be read: {_describe(exc)}"
            read.blind.append(reason)
            read.errors.append(ScanError(ErrorSource.ARM, subscription_id, reason, _code(exc)))
        return read

    def _read_perimeter(
        self,
        client: NetworkManagementClient,
        perimeter: _Perimeter,
        vault_keys: set[str],
        read: _SubscriptionRead,
    ) -> None:
        operations = client.network_security_perimeter_associations
        try:
            associations = [
                _association_fields(item)
                for item in operations.list(perimeter.resource_group, perimeter.name)
            ]
        except Exception as exc:
            reason = f"the associations of perimeter {perimeter.id} could not be read: {_describe(exc)}"
            read.blind.append(reason)
            read.errors.append(ScanError(ErrorSource.ARM, perimeter.id, reason, _code(exc)))
            return
        ours = [fields for fields in associations if fields.resource_id.lower() in vault_keys]
        if not ours:
            return
        profiles, links, failure = self._profiles_and_links(client, perimeter)
        rules: dict[str, tuple[tuple[PerimeterAccessRule, ...], ArmStamp | None] | str] = {}
        for fields in ours:
            found = _Found(vault_key=fields.resource_id.lower(), perimeter=perimeter)
            read.found.append(found)
            profile_name = fields.profile_id.rstrip("/").rsplit("/", 1)[-1]
            profile = profiles.get(profile_name.lower())
            if failure is not None:
                found.error = failure
                continue
            if profile is None:
                found.error = f"association {fields.name} names profile {fields.profile_id!r}, which the perimeter does not list"
                continue
            if profile_name.lower() not in rules:
                rules[profile_name.lower()] = self._inbound_rules(client, perimeter, profile.name)
            read_rules = rules[profile_name.lower()]
            if isinstance(read_rules, str):
                found.error = read_rules
                continue
            inbound, rules_modified = read_rules
            found.association = PerimeterAssociation(
                perimeter_id=perimeter.id,
                perimeter_name=perimeter.name,
                profile_id=profile.id,
                profile_name=profile.name,
                access_mode_text=fields.access_mode,
                access_rules_version=profile.access_rules_version,
                inbound_rules=inbound + _linked(links, profile.name),
                provisioning_issues=fields.issues,
                created=fields.created,
                modified=fields.modified,
                rules_modified=rules_modified,
            )

    def _profiles_and_links(
        self, client: NetworkManagementClient, perimeter: _Perimeter
    ) -> tuple[dict[str, _Profile], list[Any], str | None]:
        try:
            profiles = [
                _profile(item)
                for item in client.network_security_perimeter_profiles.list(
                    perimeter.resource_group, perimeter.name
                )
            ]
        except Exception as exc:
            return {}, [], f"its profiles could not be read: {_describe(exc)}"
        try:
            links = list(
                client.network_security_perimeter_links.list(perimeter.resource_group, perimeter.name)
            )
        except Exception as exc:
            return {}, [], f"its links could not be read: {_describe(exc)}"
        return {profile.name.lower(): profile for profile in profiles}, links, None

    def _inbound_rules(
        self, client: NetworkManagementClient, perimeter: _Perimeter, profile: str
    ) -> tuple[tuple[PerimeterAccessRule, ...], ArmStamp | None] | str:
        """The profile's Inbound rules and the newest rule write (any direction: each moves
        accessRulesVersion), or why they could not be read."""
        try:
            items = list(
                client.network_security_perimeter_access_rules.list(
                    perimeter.resource_group, perimeter.name, profile
                )
            )
            inbound = tuple(rule for rule in (_inbound_rule(item) for item in items) if rule is not None)
            written = [
                stamp for stamp in (_modified(item.system_data) for item in items) if stamp is not None
            ]
            dated = [(stamp.at, stamp) for stamp in written if stamp.at is not None]
            return inbound, max(dated, key=lambda pair: pair[0])[1] if dated else None
        except Exception as exc:
            return f"the access rules of profile {profile} could not be read: {_describe(exc)}"


@dataclass(frozen=True)
class _Profile:
    id: str
    name: str
    access_rules_version: int | None


@dataclass(frozen=True)
class _AssociationFields:
    name: str
    resource_id: str
    profile_id: str
    access_mode: str
    issues: tuple[PerimeterProvisioningIssue, ...]
    created: ArmStamp | None = None
    modified: ArmStamp | None = None


def _value(value: Any) -> str:
    """An enum member's ``.value`` or a string as sent (the SDK gives unknown values as strings)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _created(system_data: Any) -> ArmStamp | None:
    """ARM's systemData creator (None: the service sent no systemData)."""
    if system_data is None:
        return None
    return ArmStamp(
        by=system_data.created_by,
        by_type=_value(system_data.created_by_type) or None,
        at=system_data.created_at,
    )


def _modified(system_data: Any) -> ArmStamp | None:
    """ARM's systemData last modifier (None: the service sent no systemData)."""
    if system_data is None:
        return None
    return ArmStamp(
        by=system_data.last_modified_by,
        by_type=_value(system_data.last_modified_by_type) or None,
        at=system_data.last_modified_at,
    )


def _is(value: Any, expected: str) -> bool:
    return _value(value).strip().lower() == expected.lower()


def _id_parts(resource_id: str) -> tuple[str, str]:
    """(subscription id lower-cased, resource group) of an ARM id; ValueError otherwise."""
    segments = resource_id.strip("/").split("/")
    folded = [segment.lower() for segment in segments]
    if len(segments) < 4 or folded[0] != "subscriptions" or folded[2] != "resourcegroups":
        raise ValueError(f"not a resource id: {resource_id[:200]!r}")
    return folded[1], segments[3]


def _perimeter(item: Any) -> _Perimeter:
    perimeter_id = _value(item.id)
    subscription_id, resource_group = _id_parts(perimeter_id)
    return _Perimeter(
        id=perimeter_id,
        name=_value(item.name),
        resource_group=resource_group,
        subscription_id=subscription_id,
    )


def _profile(item: Any) -> _Profile:
    properties = item.properties
    version = _value(properties.access_rules_version if properties is not None else None)
    return _Profile(
        id=_value(item.id),
        name=_value(item.name),
        access_rules_version=int(version) if version.strip().isdigit() else None,
    )


def _association_fields(item: Any) -> _AssociationFields:
    properties = item.properties
    if properties is None:
        raise ValueError(f"association {_value(item.id)} has no properties")
    resource = properties.private_link_resource
    profile = properties.profile
    issues: list[PerimeterProvisioningIssue] = []
    if _is(properties.has_provisioning_issues, "yes"):
        issues.append(
            PerimeterProvisioningIssue(
                name="hasProvisioningIssues",
                description=(
                    f"ARM reports provisioning issues on association {_value(item.name)}; the vault's "
                    "networkSecurityPerimeterConfigurations name them"
                ),
            )
        )
    if _is(properties.provisioning_state, "failed"):
        issues.append(
            PerimeterProvisioningIssue(
                name="provisioningState",
                issue_type="ProvisioningFailed",
                severity="Error",
                description=f"association {_value(item.name)} is in provisioning state Failed",
            )
        )
    return _AssociationFields(
        name=_value(item.name),
        resource_id=_value(resource.id if resource is not None else None),
        profile_id=_value(profile.id if profile is not None else None),
        access_mode=_value(properties.access_mode),
        created=_created(item.system_data),
        modified=_modified(item.system_data),
        issues=tuple(issues),
    )


def _inbound_rule(item: Any) -> PerimeterAccessRule | None:
    properties = item.properties
    if properties is None or not _is(properties.direction, "inbound"):
        return None
    return PerimeterAccessRule(
        name=_value(item.name),
        address_prefixes=tuple(_prefix(_value(prefix)) for prefix in properties.address_prefixes or ()),
        subscriptions=tuple(
            _value(entry.id).rstrip("/").rsplit("/", 1)[-1] for entry in properties.subscriptions or ()
        ),
        service_tags=tuple(_value(tag) for tag in properties.service_tags or ()),
        perimeters=tuple(_value(entry.id) for entry in properties.network_security_perimeters or ()),
    )


def _prefix(text: str) -> IpRule:
    try:
        return IpRule(text, parse_network(text))
    except ValueError:
        return IpRule(text, None)


def _linked(links: Sequence[Any], profile: str) -> tuple[PerimeterAccessRule, ...]:
    """An Approved link admits the remote perimeter's resources to the local profiles it names."""
    linked: list[PerimeterAccessRule] = []
    for link in links:
        properties = link.properties
        if properties is None or not _is(properties.status, "approved"):
            continue
        profiles = {_value(name).lower() for name in properties.local_inbound_profiles or ()}
        remote = _value(properties.auto_approved_remote_perimeter_resource_id)
        if remote and ("*" in profiles or profile.lower() in profiles):
            linked.append(PerimeterAccessRule(name=f"link {_value(link.name)}", perimeters=(remote,)))
    return tuple(linked)


def _describe(exc: BaseException) -> str:
    return describe_arm_error(exc) if isinstance(exc, HttpResponseError) else describe_exception(exc)


def _code(exc: BaseException) -> str | None:
    return error_code(exc) if isinstance(exc, HttpResponseError) else None
