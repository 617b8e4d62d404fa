"""What changed in a vault's network configuration between two scans, and whether it admits more.

``network_diff`` compares two postures field by field: public network access, the firewall's
default action and bypass, IP rules and subnets added or removed, private endpoint connections
added, removed or changing status, the Network Security Perimeter association (added or removed, its
profile, access mode, the profile's accessRulesVersion and its inbound entries) where both scans
read it; with who changed the vault and when (ARM's systemData).
Each change is judged:

- loosening (admits more): default action Deny -> Allow; public network access towards Enabled
  (Disabled < SecuredByPerimeter < Enabled); bypass None -> AzureServices; an IP rule added that
  the old rules did not already cover (a broader range counts, a narrower one inside an old rule
  does not); a subnet added; a private endpoint connection approved (added approved, or moved to
  Approved): one more network reaches the vault; an approved connection removed or no longer
  approved while public network access is enabled: its callers now reach the vault over the
  public endpoint;
- tightening: the reverse of each, and losing an approved connection while public access is
  disabled (its callers lose access, nobody gains it);
- perimeter: an association in Learning mode, or Enforced on a vault whose publicNetworkAccess is
  not Enabled, added (loosening) or removed (tightening); access mode Enforced -> Learning
  (loosening); an inbound entry added (loosening, a prefix inside an existing one neutral) or
  removed (tightening);
- neutral: changes that admit nobody new and shut nobody out (a Pending connection added, a
  rule rewritten to the same range, the ignore-missing-service-endpoint flag), and those kvmon
  cannot rank: another perimeter profile, Audit mode (its effect is inferred), an Enforced
  association replacing an Enabled vault's firewall, the accessRulesVersion itself.

KV301 (``monitor.judge.rules.keyvault.drift``) is high when anything loosens (mixed included), info when
it only tightens. ``storage_network_diff`` does the same for a storage account (ST301), with Storage's
own fields (its docstring lists them), sharing the judgement of each kind of change. Pure: no I/O, no
clock.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from monitor.judge.perimeter import NetworkPosture
from monitor.model import (
    ArmStamp,
    ChangeActor,
    Finding,
    IpRule,
    PerimeterAccessMode,
    PerimeterAssociation,
    PerimeterLookup,
    PrivateEndpointConnection,
    VaultPosture,
    VirtualNetworkRule,
)
from monitor.model_storage import StorageAccountPosture, StorageBypass, StorageVirtualNetworkRule

if TYPE_CHECKING:  # the rules import this module: only their types are needed here
    from monitor.judge.rules.base import Rule

_PUBLIC_ACCESS_RANK = {"disabled": 0, "securedbyperimeter": 1, "enabled": 2}
_SUMMARY_CHANGES = 4


class Direction(StrEnum):
    LOOSENING = "loosening"
    TIGHTENING = "tightening"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class FieldChange:
    field: str  # the ARM property, e.g. "networkAcls.defaultAction"
    change: str  # changed | added | removed
    before: str | None
    after: str | None
    direction: Direction
    note: str = ""

    def describe(self) -> str:
        if self.change == "added":
            text = f"{self.field} added {self.after}"
        elif self.change == "removed":
            text = f"{self.field} removed {self.before}"
        else:
            text = f"{self.field} {self.before} → {self.after}"
        return f"{text} ({self.direction.value})"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "field": self.field,
            "change": self.change,
            "before": self.before,
            "after": self.after,
            "direction": self.direction.value,
        }
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class NetworkDiff:
    changes: tuple[FieldChange, ...]
    last_modified_by: str | None = None
    last_modified_by_type: str | None = None
    last_modified_at: dt.datetime | None = None
    # Only the perimeter moved: who and when are the association's (or its rules') systemData, and an
    # actor named for the vault's own writes did not make this change.
    perimeter_only: bool = False

    @property
    def loosening(self) -> bool:
        return any(change.direction == Direction.LOOSENING for change in self.changes)

    @property
    def direction(self) -> str:
        """loosening, tightening, mixed or neutral: the whole change at a glance."""
        directions = {change.direction for change in self.changes} - {Direction.NEUTRAL}
        if len(directions) == 2:
            return "mixed"
        return directions.pop().value if directions else Direction.NEUTRAL.value

    def summary(self, *, actor: ChangeActor | None = None) -> str:
        """The changes in one line, and who made them: the ``actor`` where Azure named one (an
        event, the change history), else the vault's systemData."""
        parts = [change.describe() for change in self.changes[:_SUMMARY_CHANGES]]
        if len(self.changes) > _SUMMARY_CHANGES:
            parts.append(f"and {len(self.changes) - _SUMMARY_CHANGES} more")
        text = "; ".join(parts)
        actor = None if self.perimeter_only else actor
        if actor is not None:
            moment = actor.changed_at or self.last_modified_at
            when = _iso(moment) if moment else "an unknown time"
            return f"{text} (changed by {actor.describe()} at {when})"
        who = self.last_modified_by or "unknown"
        when = _iso(self.last_modified_at) if self.last_modified_at else "an unknown time"
        what = "the perimeter last modified" if self.perimeter_only else "last modified"
        return f"{text} ({what} by {who} at {when})"

    def as_evidence(self, *, actor: ChangeActor | None = None) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "direction": self.direction,
            "changes": [change.as_dict() for change in self.changes],
            "last_modified_by": self.last_modified_by,
            "last_modified_by_type": self.last_modified_by_type,
            "last_modified_at": _iso(self.last_modified_at) if self.last_modified_at else None,
        }
        if self.perimeter_only:
            evidence["last_modified_of"] = "networkSecurityPerimeter"
        elif actor is not None:
            evidence["actor"] = actor.as_evidence()
        return evidence


def network_diff(before: VaultPosture, after: VaultPosture) -> NetworkDiff:
    """Never from a field that could not be read on either side: its value is Azure's default,
    which nobody saw (the problem is reported with the posture instead)."""

    def readable(field: str) -> bool:
        path = f"properties.{field}"
        return not before.could_not_read(path) and not after.could_not_read(path)

    changes: list[FieldChange] = []
    if readable("publicNetworkAccess"):
        changes.extend(_public_network_access(before, after))
    if readable("networkAcls.defaultAction"):
        changes.extend(
            _ranked(
                "networkAcls.defaultAction",
                before.default_action,
                after.default_action,
                {"deny": 0, "allow": 1},
                unknown_rank=1,
            )
        )
    if readable("networkAcls.bypass"):
        changes.extend(
            _ranked(
                "networkAcls.bypass",
                before.bypass,
                after.bypass,
                {"none": 0, "azureservices": 1},
                unknown_rank=1,
            )
        )
    if readable("networkAcls.ipRules"):
        changes.extend(_ip_rules(before.ip_rules, after.ip_rules))
    if readable("networkAcls.virtualNetworkRules"):
        changes.extend(_subnets(before, after))
    if readable("privateEndpointConnections") and readable("publicNetworkAccess"):
        changes.extend(
            _private_endpoints(
                before.private_endpoint_connections,
                after.private_endpoint_connections,
                public_disabled=after.public_access_disabled,
            )
        )
    perimeter = _perimeter(before, after)
    if perimeter and not changes:
        stamp = _perimeter_stamp(before, after)
        return NetworkDiff(
            changes=tuple(perimeter),
            last_modified_by=stamp.by if stamp else None,
            last_modified_by_type=stamp.by_type if stamp else None,
            last_modified_at=stamp.at if stamp else None,
            perimeter_only=True,
        )
    changes.extend(perimeter)
    return NetworkDiff(
        changes=tuple(changes),
        last_modified_by=after.last_modified_by,
        last_modified_by_type=after.last_modified_by_type,
        last_modified_at=after.last_modified_at,
    )


def _public_network_access(before: NetworkPosture, after: NetworkPosture) -> list[FieldChange]:
    # Unknown values rank as Enabled: Azure admits public traffic unless told otherwise.
    return _ranked(
        "publicNetworkAccess",
        before.public_network_access,
        after.public_network_access,
        _PUBLIC_ACCESS_RANK,
        unknown_rank=2,
    )


def _ranked(
    field: str, old: str, new: str, ranks: Mapping[str, int], *, unknown_rank: int
) -> list[FieldChange]:
    if old.lower() == new.lower():
        return []
    old_rank, new_rank = ranks.get(old.lower(), unknown_rank), ranks.get(new.lower(), unknown_rank)
    if new_rank > old_rank:
        direction = Direction.LOOSENING
    elif new_rank < old_rank:
        direction = Direction.TIGHTENING
    else:
        direction = Direction.NEUTRAL
    return [FieldChange(field, "changed", old, new, direction)]


def _ip_key(rule: IpRule) -> str:
    return str(rule.network) if rule.network is not None else rule.raw.strip().lower()


def _covered(rule: IpRule, by: Iterable[IpRule]) -> bool:
    """Every address of ``rule`` is in the union of ``by`` (an unparsable rule is never covered)."""
    if rule.network is None:
        return False
    same_version: list[Any] = [
        r.network for r in by if r.network is not None and r.network.version == rule.network.version
    ]
    # collapse_addresses merges adjacent ranges, so a range covered by several rules is inside one block.
    return any(rule.network.subnet_of(block) for block in ipaddress.collapse_addresses(same_version))


def _ip_rules(
    old: tuple[IpRule, ...], new: tuple[IpRule, ...], *, field: str = "networkAcls.ipRules"
) -> list[FieldChange]:
    old_keys = {_ip_key(rule): rule for rule in old}
    new_keys = {_ip_key(rule): rule for rule in new}
    changes: list[FieldChange] = []
    for key in sorted(new_keys.keys() - old_keys.keys()):
        rule = new_keys[key]
        if _covered(rule, old):
            changes.append(
                FieldChange(field, "added", None, key, Direction.NEUTRAL, "inside an existing rule")
            )
        else:
            changes.append(FieldChange(field, "added", None, key, Direction.LOOSENING))
    for key in sorted(old_keys.keys() - new_keys.keys()):
        rule = old_keys[key]
        if _covered(rule, new):
            changes.append(
                FieldChange(field, "removed", key, None, Direction.NEUTRAL, "still covered by a rule")
            )
        else:
            changes.append(FieldChange(field, "removed", key, None, Direction.TIGHTENING))
    return changes


# Either service's virtual network rule: each names its subnet.
SubnetRule = VirtualNetworkRule | StorageVirtualNetworkRule


def _subnets_added_or_removed(
    field: str, old: Mapping[str, SubnetRule], new: Mapping[str, SubnetRule]
) -> list[FieldChange]:
    """Subnets a virtual network rule admits now and did not (loosening), and the reverse; by key."""
    changes = [
        FieldChange(field, "added", None, new[key].subnet_id, Direction.LOOSENING)
        for key in sorted(new.keys() - old.keys())
    ]
    changes += [
        FieldChange(field, "removed", old[key].subnet_id, None, Direction.TIGHTENING)
        for key in sorted(old.keys() - new.keys())
    ]
    return changes


def _subnets(before: VaultPosture, after: VaultPosture) -> list[FieldChange]:
    old = {rule.key: rule for rule in before.virtual_network_rules}
    new = {rule.key: rule for rule in after.virtual_network_rules}
    field = "networkAcls.virtualNetworkRules"
    changes = _subnets_added_or_removed(field, old, new)
    for key in sorted(old.keys() & new.keys()):
        if old[key].ignore_missing_service_endpoint != new[key].ignore_missing_service_endpoint:
            changes.append(
                FieldChange(
                    f"{field}.ignoreMissingVnetServiceEndpoint",
                    "changed",
                    f"{old[key].subnet_id}: {old[key].ignore_missing_service_endpoint}",
                    f"{new[key].subnet_id}: {new[key].ignore_missing_service_endpoint}",
                    Direction.NEUTRAL,
                )
            )
    return changes


def _private_endpoints(
    before: Iterable[PrivateEndpointConnection],
    after: Iterable[PrivateEndpointConnection],
    *,
    public_disabled: bool,
) -> list[FieldChange]:
    old = {pec.id.lower(): pec for pec in before}
    new = {pec.id.lower(): pec for pec in after}
    field = "privateEndpointConnections"
    lost = _lost_private_path(public_disabled)
    changes: list[FieldChange] = []
    for key in sorted(new.keys() - old.keys()):
        pec = new[key]
        direction = Direction.LOOSENING if pec.approved else Direction.NEUTRAL
        changes.append(FieldChange(field, "added", None, _describe_pec(pec), direction))
    for key in sorted(old.keys() - new.keys()):
        pec = old[key]
        direction, note = lost if pec.approved else (Direction.NEUTRAL, "")
        changes.append(FieldChange(field, "removed", _describe_pec(pec), None, direction, note))
    for key in sorted(old.keys() & new.keys()):
        was, now = old[key], new[key]
        if (was.status or "").lower() == (now.status or "").lower():
            continue
        if now.approved:
            direction, note = Direction.LOOSENING, ""
        elif was.approved:
            direction, note = lost
        else:
            direction, note = Direction.NEUTRAL, ""
        changes.append(
            FieldChange(f"{field}.status", "changed", _describe_pec(was), _describe_pec(now), direction, note)
        )
    return changes


def _lost_private_path(public_disabled: bool) -> tuple[Direction, str]:
    if public_disabled:
        return Direction.TIGHTENING, "its callers lose access (public network access is disabled)"
    return Direction.LOOSENING, "its callers now reach the vault over the public endpoint"


_PERIMETER = "networkSecurityPerimeter"
# Learning admits what Enforced does and the vault's firewall besides (or the same, where the
# firewall does not apply): towards Learning loosens. Audit enforces nothing (inferred), so a move
# to or from it is judged neutral and says so.
_ACCESS_MODE_RANK = {PerimeterAccessMode.ENFORCED: 0, PerimeterAccessMode.LEARNING: 1}


def _perimeter(before: NetworkPosture, after: NetworkPosture) -> list[FieldChange]:
    """Changes only where both scans read the association: one not looked up or unreadable is no
    evidence of a change."""
    read = (PerimeterLookup.NONE, PerimeterLookup.ASSOCIATED)
    if before.perimeter.lookup not in read or after.perimeter.lookup not in read:
        return []
    old, new = before.perimeter.association, after.perimeter.association
    if new is None:
        return [] if old is None else [_association_change(old, added=False, vault=before)]
    if old is None:
        return [_association_change(new, added=True, vault=after)]
    if old.profile_id.lower() != new.profile_id.lower():
        return [
            FieldChange(
                f"{_PERIMETER}.profile",
                "changed",
                _describe_association(old),
                _describe_association(new),
                Direction.NEUTRAL,
                "another profile's inbound rules now apply (see the perimeter findings)",
            )
        ]
    changes = _access_mode(old, new)
    if old.access_rules_version != new.access_rules_version:
        changes.append(
            FieldChange(
                f"{_PERIMETER}.accessRulesVersion",
                "changed",
                str(old.access_rules_version),
                str(new.access_rules_version),
                Direction.NEUTRAL,
                "the profile's access rules were edited",
            )
        )
    changes.extend(_inbound_entries(old, new))
    return changes


def _perimeter_stamp(before: NetworkPosture, after: NetworkPosture) -> ArmStamp | None:
    """Who made a perimeter change: the association's systemData when it was created, replaced
    (mode, profile) or re-created, else (only the profile's rules moved) the newest access rule's.
    None for a removed association: ARM keeps no systemData of a deleted resource."""
    old, new = before.perimeter.association, after.perimeter.association
    if new is None:
        return None
    association_written = (
        old is None
        or (old.modified is not None and old.modified != new.modified)
        or old.profile_id.lower() != new.profile_id.lower()
        or old.access_mode_text.strip().lower() != new.access_mode_text.strip().lower()
    )
    if association_written or new.rules_modified is None:
        return new.modified
    return new.rules_modified


def _association_change(
    association: PerimeterAssociation, *, added: bool, vault: NetworkPosture
) -> FieldChange:
    """An association added or removed. Learning, and Enforced where publicNetworkAccess is not
    Enabled, admit where the vault alone was closed (or admitted less); Enforced over an Enabled
    vault replaces its firewall (either way) and Audit enforces nothing (inferred)."""
    mode = association.access_mode
    enabled = vault.public_network_access.strip().lower() not in ("disabled", "securedbyperimeter")
    if mode == PerimeterAccessMode.LEARNING or (mode == PerimeterAccessMode.ENFORCED and not enabled):
        direction = Direction.LOOSENING if added else Direction.TIGHTENING
        note = ""
    elif mode == PerimeterAccessMode.ENFORCED:
        direction, note = Direction.NEUTRAL, "the perimeter's rules replace the vault's firewall"
    else:
        direction, note = (
            Direction.NEUTRAL,
            f"{association.access_mode_text} mode: its effect is not documented",
        )
    if added:
        return FieldChange(
            f"{_PERIMETER}.association", "added", None, _describe_association(association), direction, note
        )
    return FieldChange(
        f"{_PERIMETER}.association", "removed", _describe_association(association), None, direction, note
    )


def _access_mode(old: PerimeterAssociation, new: PerimeterAssociation) -> list[FieldChange]:
    if old.access_mode_text.strip().lower() == new.access_mode_text.strip().lower():
        return []
    old_rank, new_rank = _ACCESS_MODE_RANK.get(old.access_mode), _ACCESS_MODE_RANK.get(new.access_mode)
    note = ""
    if old_rank is None or new_rank is None:
        direction, note = Direction.NEUTRAL, "Audit or an unknown mode: the change cannot be ranked"
    elif new_rank > old_rank:
        direction = Direction.LOOSENING
    elif new_rank < old_rank:
        direction = Direction.TIGHTENING
    else:
        direction = Direction.NEUTRAL  # Learning renamed Transition
    return [
        FieldChange(
            f"{_PERIMETER}.accessMode", "changed", old.access_mode_text, new.access_mode_text, direction, note
        )
    ]


def _inbound_entries(old: PerimeterAssociation, new: PerimeterAssociation) -> list[FieldChange]:
    """Inbound entries added or removed across the profile's rules: address prefixes judged like IP
    rules (a range inside an existing one admits nobody new), subscriptions, service tags and linked
    perimeters as sets."""
    field = f"{_PERIMETER}.inboundRules"
    changes = _ip_rules(
        tuple(prefix for rule in old.inbound_rules for prefix in rule.address_prefixes),
        tuple(prefix for rule in new.inbound_rules for prefix in rule.address_prefixes),
        field=f"{field}.addressPrefixes",
    )
    for kind in ("subscriptions", "service_tags", "perimeters"):
        was = {value.lower(): value for rule in old.inbound_rules for value in getattr(rule, kind)}
        now = {value.lower(): value for rule in new.inbound_rules for value in getattr(rule, kind)}
        changes += [
            FieldChange(f"{field}.{kind}", "added", None, now[key], Direction.LOOSENING)
            for key in sorted(now.keys() - was.keys())
        ]
        changes += [
            FieldChange(f"{field}.{kind}", "removed", was[key], None, Direction.TIGHTENING)
            for key in sorted(was.keys() - now.keys())
        ]
    return changes


def _describe_association(association: PerimeterAssociation) -> str:
    return f"{association.perimeter_name}/{association.profile_name} [{association.access_mode_text}]"


def _describe_pec(pec: PrivateEndpointConnection) -> str:
    name = (pec.private_endpoint_id or pec.id).rstrip("/").rsplit("/", 1)[-1]
    return f"{name} [{pec.status or 'unknown'}]"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Storage accounts
# ---------------------------------------------------------------------------------------------


def storage_network_diff(before: StorageAccountPosture, after: StorageAccountPosture) -> NetworkDiff:
    """A storage account's network and access configuration, field by field, judged as a vault's
    is, with Storage's own fields: the bypass set (a member added loosens), IPv6 rules, resource
    instance rules (added loosens), a subnet rule's state (neutral: the rule itself did not change),
    anonymous blob access and shared-key access turned on (loosening), the minimum TLS version lowered
    and HTTP allowed (loosening), allowedCopyScope removed (loosening). Never from a field that could
    not be read on either side."""

    def readable(path: str) -> bool:
        return not before.could_not_read(f"properties.{path}") and not after.could_not_read(
            f"properties.{path}"
        )

    changes: list[FieldChange] = []
    if readable("publicNetworkAccess"):
        changes.extend(_public_network_access(before, after))
    if readable("networkAcls.defaultAction"):
        changes.extend(
            _ranked(
                "networkAcls.defaultAction",
                before.default_action,
                after.default_action,
                {"deny": 0, "allow": 1},
                unknown_rank=1,
            )
        )
    if readable("networkAcls.bypass"):
        changes.extend(_bypass_set(before, after))
    for key, field in (("ipRules", "ip_rules"), ("ipv6Rules", "ipv6_rules")):
        if readable(f"networkAcls.{key}"):
            changes.extend(
                _ip_rules(
                    tuple(rule.value for rule in getattr(before, field)),
                    tuple(rule.value for rule in getattr(after, field)),
                    field=f"networkAcls.{key}",
                )
            )
    if readable("networkAcls.virtualNetworkRules"):
        changes.extend(_storage_subnets(before, after))
    if readable("networkAcls.resourceAccessRules"):
        changes.extend(_resource_access_rules(before, after))
    if readable("privateEndpointConnections") and readable("publicNetworkAccess"):
        changes.extend(
            _private_endpoints(
                (c.connection for c in before.private_endpoint_connections),
                (c.connection for c in after.private_endpoint_connections),
                public_disabled=after.public_access_disabled,
            )
        )
    if readable("allowBlobPublicAccess"):
        changes.extend(
            _flag(
                "allowBlobPublicAccess", before.blob_public_access_allowed, after.blob_public_access_allowed
            )
        )
    if readable("allowSharedKeyAccess"):
        changes.extend(_flag("allowSharedKeyAccess", before.shared_key_allowed, after.shared_key_allowed))
    if readable("supportsHttpsTrafficOnly"):
        # HTTP allowed is what admits more: the flag's false loosens.
        shown = (str(before.https_only).lower(), str(after.https_only).lower())
        changes.extend(
            _flag("supportsHttpsTrafficOnly", not before.https_only, not after.https_only, shown=shown)
        )
    if readable("minimumTlsVersion"):
        old_tls, new_tls = before.effective_minimum_tls, after.effective_minimum_tls
        if old_tls is not new_tls:
            direction = Direction.LOOSENING if new_tls.rank < old_tls.rank else Direction.TIGHTENING
            changes.append(
                FieldChange("minimumTlsVersion", "changed", old_tls.value, new_tls.value, direction)
            )
    if readable("allowedCopyScope") and before.allowed_copy_scope is not after.allowed_copy_scope:
        old_scope, new_scope = before.allowed_copy_scope, after.allowed_copy_scope
        if new_scope is None:
            direction = Direction.LOOSENING  # copies to and from any account
        elif old_scope is None:
            direction = Direction.TIGHTENING
        else:
            direction = Direction.NEUTRAL
        changes.append(
            FieldChange(
                "allowedCopyScope",
                "changed",
                old_scope.value if old_scope else "absent",
                new_scope.value if new_scope else "absent",
                direction,
            )
        )
    perimeter = _perimeter(before, after)
    if perimeter and not changes:
        stamp = _perimeter_stamp(before, after)
        return NetworkDiff(
            changes=tuple(perimeter),
            last_modified_by=stamp.by if stamp else None,
            last_modified_by_type=stamp.by_type if stamp else None,
            last_modified_at=stamp.at if stamp else None,
            perimeter_only=True,
        )
    changes.extend(perimeter)
    return NetworkDiff(
        changes=tuple(changes),
        last_modified_by=after.last_modified_by,
        last_modified_by_type=after.last_modified_by_type,
        last_modified_at=after.last_modified_at,
    )


def _flag(field: str, old: bool, new: bool, *, shown: tuple[str, str] | None = None) -> list[FieldChange]:
    """A setting whose ``True`` admits more (as read with Azure's default for absent)."""
    if old == new:
        return []
    before_text, after_text = shown or (str(old).lower(), str(new).lower())
    direction = Direction.LOOSENING if new else Direction.TIGHTENING
    return [FieldChange(field, "changed", before_text, after_text, direction)]


def _bypass_set(before: StorageAccountPosture, after: StorageAccountPosture) -> list[FieldChange]:
    field = "networkAcls.bypass"
    old = before.bypass - {StorageBypass.NONE}
    new = after.bypass - {StorageBypass.NONE}
    changes = [
        FieldChange(field, "added", None, member.value, Direction.LOOSENING)
        for member in StorageBypass
        if member in new - old
    ]
    changes += [
        FieldChange(field, "removed", member.value, None, Direction.TIGHTENING)
        for member in StorageBypass
        if member in old - new
    ]
    return changes


def _storage_subnets(before: StorageAccountPosture, after: StorageAccountPosture) -> list[FieldChange]:
    old = {rule.key: rule for rule in before.virtual_network_rules}
    new = {rule.key: rule for rule in after.virtual_network_rules}
    field = "networkAcls.virtualNetworkRules"
    changes = _subnets_added_or_removed(field, old, new)
    for key in sorted(old.keys() & new.keys()):
        was, now = old[key].state, new[key].state
        if was is not now and was is not None and now is not None:
            changes.append(
                FieldChange(
                    f"{field}.state",
                    "changed",
                    f"{old[key].subnet_id}: {was.value}",
                    f"{new[key].subnet_id}: {now.value}",
                    Direction.NEUTRAL,
                    "the rule's state, not the rule, changed",
                )
            )
    return changes


def _resource_access_rules(before: StorageAccountPosture, after: StorageAccountPosture) -> list[FieldChange]:
    def keyed(posture: StorageAccountPosture) -> dict[tuple[str, str], str]:
        return {
            ((rule.tenant_id or "").lower(), rule.resource_id.lower()): rule.resource_id
            for rule in posture.resource_access_rules
        }

    old, new = keyed(before), keyed(after)
    field = "networkAcls.resourceAccessRules"
    changes = [
        FieldChange(field, "added", None, new[key], Direction.LOOSENING)
        for key in sorted(new.keys() - old.keys())
    ]
    changes += [
        FieldChange(field, "removed", old[key], None, Direction.TIGHTENING)
        for key in sorted(old.keys() - new.keys())
    ]
    return changes


def disappeared_findings(
    rule: Rule[Any],
    noun: str,
    *,
    previous: Mapping[str, VaultPosture | StorageAccountPosture],
    current_keys: Iterable[str],
    complete_subscriptions: Iterable[str],
) -> list[Finding]:
    """``rule``'s "disappeared" finding for each stored resource (key -> last posture) missing from
    this scan's listing of its service; ``noun`` names the resource ("vault", "storage account").

    Only subscriptions listed completely count: a resource is never declared gone because its
    subscription's listing failed."""
    present = {key.lower() for key in current_keys}
    listed = {subscription.lower() for subscription in complete_subscriptions}
    findings = []
    for key, posture in sorted(previous.items()):
        if key.lower() in present or posture.subscription_id.lower() not in listed:
            continue
        findings.append(
            Finding(
                rule_id=rule.id,
                severity=rule.severity,
                title=rule.title,
                vault_id=posture.id,
                vault_name=posture.name,
                subject="disappeared",
                evidence={
                    "event": "disappeared",
                    "subscription_id": posture.subscription_id,
                    "resource_group": posture.resource_group,
                },
                summary=f"{noun} {posture.name} is no longer listed in subscription {posture.subscription_id}",
                remediation=rule.remediation_for(posture, "disappeared"),
            )
        )
    return findings
