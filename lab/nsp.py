"""Network Security Perimeters in the lab: perimeters, their profiles, inbound access rules,
resource associations and links, as ARM serves them (the shapes of Azure's published REST
examples for Microsoft.Network 2024-07-01 and later: ``NetworkSecurityPerimeterListAll``,
``NspProfileList``, ``NspAccessRuleList``, ``NspAssociationList``, ``NspLinkList``).

``Perimeters`` is held by the ``Estate`` (``estate.perimeters``) and shares its lock: the ARM
emulator serves it and the Key Vault data plane asks it which perimeter governs a vault
(``governing``). Every access rule written or deleted bumps its profile's ``accessRulesVersion``,
as Azure does. Associations and access rules carry ARM's ``systemData`` (who created and last
modified them, when, on the estate's clock). ``forbid`` makes reads under a perimeter or a profile
answer 403, as a reader without permission there gets.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PERIMETER_TYPE = "Microsoft.Network/networkSecurityPerimeters"
LAB_MODIFIER = "alice@contoso.example"  # who a write through the lab's Python API is stamped with
ACCESS_MODES = ("Learning", "Enforced", "Audit")
LINK_STATES = ("Approved", "Pending", "Rejected", "Disconnected")


@dataclass
class _Perimeter:
    resource: dict[str, Any]
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower name -> JSON
    rules: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # profile -> name -> JSON
    associations: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Governing:
    """The perimeter a resource is associated with, as the data plane enforces it."""

    perimeter_id: str
    association: str
    profile: str
    access_mode: str  # Learning | Enforced | Audit
    inbound_rules: tuple[dict[str, Any], ...]  # the profile's Inbound access rules (ARM JSON)
    access_rules_version: str = "0"  # the profile's, as its access log rows carry it


class PerimeterError(ValueError):
    """A write the lab refuses as ARM would (unknown profile, bad access mode): the message says why."""


class Perimeters:
    def __init__(
        self,
        lock: threading.RLock | None = None,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._lock = lock or threading.RLock()
        self._clock = clock  # stamps systemData
        self._perimeters: dict[str, _Perimeter] = {}  # lower-cased id -> perimeter
        self.forbidden: set[str] = (
            set()
        )  # lower-cased ids (perimeter or profile) reads under which answer 403

    # -- building ------------------------------------------------------------------------------

    def add_perimeter(
        self, *, subscription_id: str, resource_group: str, name: str, location: str = "westeurope"
    ) -> str:
        perimeter_id = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{PERIMETER_TYPE}/{name}"
        resource = {
            "id": perimeter_id,
            "name": name,
            "type": PERIMETER_TYPE,
            "location": location,
            "tags": {},
            "properties": {"perimeterGuid": str(uuid.uuid4()), "provisioningState": "Succeeded"},
        }
        with self._lock:
            self._perimeters[perimeter_id.lower()] = _Perimeter(resource)
        return perimeter_id

    def add_profile(self, perimeter_id: str, name: str) -> str:
        with self._lock:
            perimeter = self._get(perimeter_id)
            profile_id = f"{perimeter.resource['id']}/profiles/{name}"
            perimeter.profiles[name.lower()] = {
                "id": profile_id,
                "name": name,
                "type": f"{PERIMETER_TYPE}/profiles",
                "location": perimeter.resource["location"],
                "properties": {"accessRulesVersion": "0", "diagnosticSettingsVersion": "0"},
            }
            perimeter.rules.setdefault(name.lower(), {})
            return profile_id

    def put_access_rule(
        self,
        perimeter_id: str,
        profile: str,
        name: str,
        *,
        direction: str = "Inbound",
        address_prefixes: Iterable[str] = (),
        subscriptions: Iterable[str] = (),
        service_tags: Iterable[str] = (),
        fully_qualified_domain_names: Iterable[str] = (),
        modified_by: str = LAB_MODIFIER,
        modified_by_type: str = "User",
    ) -> dict[str, Any]:
        """Create or replace an access rule (``subscriptions``: subscription resource ids,
        ``/subscriptions/{id}``), stamped as ``modified_by`` did it, and bump the profile's
        accessRulesVersion."""
        if direction not in ("Inbound", "Outbound"):
            raise PerimeterError(f"direction must be Inbound or Outbound, not {direction!r}")
        with self._lock:
            perimeter = self._get(perimeter_id)
            found = self._profile(perimeter, profile)
            rule = {
                "id": f"{found['id']}/accessRules/{name}",
                "name": name,
                "type": f"{PERIMETER_TYPE}/profiles/accessRules",
                "properties": {
                    "provisioningState": "Succeeded",
                    "direction": direction,
                    "addressPrefixes": list(address_prefixes),
                    "fullyQualifiedDomainNames": list(fully_qualified_domain_names),
                    "subscriptions": [{"id": subscription} for subscription in subscriptions],
                    "networkSecurityPerimeters": [],
                    "emailAddresses": [],
                    "phoneNumbers": [],
                    "serviceTags": list(service_tags),
                },
            }
            rules = perimeter.rules[profile.lower()]
            rule["systemData"] = self._stamp(rules.get(name.lower()), modified_by, modified_by_type)
            rules[name.lower()] = rule
            _bump(found)
            return copy.deepcopy(rule)

    def delete_access_rule(self, perimeter_id: str, profile: str, name: str) -> bool:
        with self._lock:
            perimeter = self._get(perimeter_id)
            found = self._profile(perimeter, profile)
            removed = perimeter.rules[profile.lower()].pop(name.lower(), None) is not None
            if removed:
                _bump(found)
            return removed

    def associate(
        self,
        perimeter_id: str,
        name: str,
        *,
        resource_id: str,
        profile: str,
        access_mode: str,
        modified_by: str = LAB_MODIFIER,
        modified_by_type: str = "User",
    ) -> dict[str, Any]:
        """Create or replace the association ``name`` of ``resource_id`` with ``profile`` (a name or
        the profile's id), stamped as ``modified_by`` did it."""
        mode = next((m for m in ACCESS_MODES if m.lower() == access_mode.lower()), None)
        if mode is None:
            raise PerimeterError(f"accessMode must be one of {', '.join(ACCESS_MODES)}, not {access_mode!r}")
        with self._lock:
            perimeter = self._get(perimeter_id)
            found = self._profile(perimeter, profile.rsplit("/", 1)[-1])
            association = {
                "id": f"{perimeter.resource['id']}/resourceAssociations/{name}",
                "name": name,
                "type": f"{PERIMETER_TYPE}/resourceAssociations",
                "properties": {
                    "provisioningState": "Succeeded",
                    "privateLinkResource": {"id": resource_id},
                    "profile": {"id": found["id"]},
                    "accessMode": mode,
                    "hasProvisioningIssues": "no",
                },
            }
            association["systemData"] = self._stamp(
                perimeter.associations.get(name.lower()), modified_by, modified_by_type
            )
            perimeter.associations[name.lower()] = association
            return copy.deepcopy(association)

    def dissociate(self, perimeter_id: str, name: str) -> bool:
        with self._lock:
            return self._get(perimeter_id).associations.pop(name.lower(), None) is not None

    def add_link(
        self,
        perimeter_id: str,
        name: str,
        *,
        remote_perimeter_id: str,
        local_inbound_profiles: Iterable[str] = ("*",),
        status: str = "Approved",
    ) -> dict[str, Any]:
        """A link to another perimeter: its resources may reach the local profiles named (``*``: all)."""
        if status not in LINK_STATES:
            raise PerimeterError(f"status must be one of {', '.join(LINK_STATES)}, not {status!r}")
        with self._lock:
            perimeter = self._get(perimeter_id)
            link = {
                "id": f"{perimeter.resource['id']}/links/{name}",
                "name": name,
                "type": f"{PERIMETER_TYPE}/links",
                "properties": {
                    "provisioningState": "Succeeded",
                    "autoApprovedRemotePerimeterResourceId": remote_perimeter_id,
                    "remotePerimeterGuid": str(uuid.uuid4()),
                    "remotePerimeterLocation": perimeter.resource["location"],
                    "localInboundProfiles": list(local_inbound_profiles),
                    "localOutboundProfiles": ["*"],
                    "remoteInboundProfiles": ["*"],
                    "remoteOutboundProfiles": ["*"],
                    "description": "Auto Approved",
                    "status": status,
                },
            }
            perimeter.links[name.lower()] = link
            return copy.deepcopy(link)

    def set_provisioning_issues(self, perimeter_id: str, association: str, *, issues: bool) -> None:
        with self._lock:
            found = self._get(perimeter_id).associations[association.lower()]
            found["properties"]["hasProvisioningIssues"] = "yes" if issues else "no"

    def forbid(self, resource_id: str) -> None:
        """Reads of this perimeter's (or profile's) children answer 403 from now on."""
        with self._lock:
            self.forbidden.add(resource_id.lower().rstrip("/"))

    # -- ARM views (copies) --------------------------------------------------------------------

    def in_subscription(self, subscription_id: str) -> list[dict[str, Any]]:
        prefix = f"/subscriptions/{subscription_id.lower()}/"
        with self._lock:
            return [
                copy.deepcopy(p.resource) for key, p in self._perimeters.items() if key.startswith(prefix)
            ]

    def perimeter(self, perimeter_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._perimeters.get(perimeter_id.lower())
            return copy.deepcopy(found.resource) if found else None

    def profiles(self, perimeter_id: str) -> list[dict[str, Any]] | None:
        return self._children(perimeter_id, lambda p: list(p.profiles.values()))

    def profile(self, perimeter_id: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._perimeters.get(perimeter_id.lower())
            profile = found.profiles.get(name.lower()) if found else None
            return copy.deepcopy(profile) if profile else None

    def access_rules(self, perimeter_id: str, profile: str) -> list[dict[str, Any]] | None:
        return self._children(
            perimeter_id,
            lambda p: list(p.rules[profile.lower()].values()) if profile.lower() in p.rules else None,
        )

    def access_rule(self, perimeter_id: str, profile: str, name: str) -> dict[str, Any] | None:
        rules = self.access_rules(perimeter_id, profile) or []
        return next((rule for rule in rules if rule["name"].lower() == name.lower()), None)

    def associations(self, perimeter_id: str) -> list[dict[str, Any]] | None:
        return self._children(perimeter_id, lambda p: list(p.associations.values()))

    def association(self, perimeter_id: str, name: str) -> dict[str, Any] | None:
        found = self.associations(perimeter_id) or []
        return next((a for a in found if a["name"].lower() == name.lower()), None)

    def links(self, perimeter_id: str) -> list[dict[str, Any]] | None:
        return self._children(perimeter_id, lambda p: list(p.links.values()))

    def is_forbidden(self, path: str) -> bool:
        """A read at ``path`` lies under a forbidden perimeter or profile."""
        lowered = path.lower().rstrip("/")
        with self._lock:
            return any(lowered == gone or lowered.startswith(gone + "/") for gone in self.forbidden)

    # -- the data plane ------------------------------------------------------------------------

    def governing(self, resource_id: str) -> Governing | None:
        """The association of ``resource_id`` (matched case-insensitively) and its profile's inbound
        rules; None when no perimeter holds it. With several, the first one added (Azure allows a
        resource in one perimeter with enforcement)."""
        wanted = resource_id.lower()
        with self._lock:
            for perimeter in self._perimeters.values():
                for association in perimeter.associations.values():
                    properties = association["properties"]
                    if str(properties["privateLinkResource"]["id"]).lower() != wanted:
                        continue
                    profile = str(properties["profile"]["id"]).rsplit("/", 1)[-1].lower()
                    inbound = tuple(
                        copy.deepcopy(rule)
                        for rule in perimeter.rules.get(profile, {}).values()
                        if rule["properties"]["direction"] == "Inbound"
                    )
                    return Governing(
                        perimeter_id=perimeter.resource["id"],
                        association=association["name"],
                        profile=profile,
                        access_mode=properties["accessMode"],
                        inbound_rules=inbound,
                        access_rules_version=perimeter.profiles[profile]["properties"]["accessRulesVersion"],
                    )
        return None

    # -- internals -----------------------------------------------------------------------------

    def _stamp(
        self, replaced: dict[str, Any] | None, modified_by: str, modified_by_type: str
    ) -> dict[str, str]:
        """ARM's systemData for a write: a replacement keeps its creator."""
        now = self._clock().astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        created = (replaced or {}).get("systemData") or {
            "createdBy": modified_by,
            "createdByType": modified_by_type,
            "createdAt": now,
        }
        return {
            "createdBy": created["createdBy"],
            "createdByType": created["createdByType"],
            "createdAt": created["createdAt"],
            "lastModifiedBy": modified_by,
            "lastModifiedByType": modified_by_type,
            "lastModifiedAt": now,
        }

    def _get(self, perimeter_id: str) -> _Perimeter:
        found = self._perimeters.get(perimeter_id.lower())
        if found is None:
            raise PerimeterError(f"no perimeter {perimeter_id}")
        return found

    def _profile(self, perimeter: _Perimeter, name: str) -> dict[str, Any]:
        found = perimeter.profiles.get(name.lower())
        if found is None:
            raise PerimeterError(f"perimeter {perimeter.resource['name']} has no profile {name!r}")
        return found

    def _children(self, perimeter_id: str, pick: Any) -> list[dict[str, Any]] | None:
        with self._lock:
            found = self._perimeters.get(perimeter_id.lower())
            picked = pick(found) if found else None
            return [copy.deepcopy(item) for item in picked] if picked is not None else None


def _bump(profile: dict[str, Any]) -> None:
    properties = profile["properties"]
    properties["accessRulesVersion"] = str(int(properties["accessRulesVersion"]) + 1)
