"""What the access-log rules of every service share (Key Vault's KV2xx, storage's ST2xx): callers
summed by address, the window an evidence record covers, the baseline's allowed ranges, times.

A caller's activity is any record with the fields ``Activity`` names (Key Vault's
``CallerActivity``, storage's ``StorageRequestActivity``); what else a caller is grouped by (Key
Vault's address authorisation type, Storage's authentication type) is the caller's ``kinds``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from monitor.config.policy import VaultPolicy
from monitor.judge.rules.base import Hit
from monitor.model import IPNetwork, Outcome

TOP = 5  # how many identities / addresses an evidence list names


class Activity(Protocol):
    @property
    def caller_address(self) -> str: ...
    @property
    def address_private(self) -> bool: ...
    @property
    def identity(self) -> str | None: ...
    @property
    def identity_object_id(self) -> str | None: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def count(self) -> int: ...
    @property
    def first_seen(self) -> dt.datetime | None: ...
    @property
    def last_seen(self) -> dt.datetime | None: ...


class Window(Protocol):
    @property
    def workspace_id(self) -> str: ...
    @property
    def window_start(self) -> dt.datetime: ...
    @property
    def window_end(self) -> dt.datetime: ...


A = TypeVar("A", bound=Activity)


@dataclass
class Caller:
    """One caller address's activity on one resource, over every identity (and kind)."""

    address: str
    private: bool
    requests: int = 0
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    identities: Counter[str] = field(default_factory=Counter)
    kinds: set[str] = field(default_factory=set)

    def add(self, activity: Activity, kind: str | None) -> None:
        self.requests += activity.count
        self.first_seen = earliest(self.first_seen, activity.first_seen)
        self.last_seen = latest(self.last_seen, activity.last_seen)
        self.identities[activity.identity or "(none)"] += activity.count
        if kind:
            self.kinds.add(kind)

    def evidence(self, kinds_key: str) -> dict[str, object]:
        return {
            "caller_address": self.address,
            "address_private": self.private,
            "requests": self.requests,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "identities": [{"identity": i, "requests": n} for i, n in self.identities.most_common(TOP)],
            kinds_key: sorted(self.kinds),
        }


def by_address(activity: Iterable[A], kind: Callable[[A], str | None]) -> list[Caller]:
    """Callers busiest first, then by address."""
    callers: dict[str, Caller] = {}
    for item in activity:
        caller = callers.setdefault(item.caller_address, Caller(item.caller_address, item.address_private))
        caller.add(item, kind(item))
    return sorted(callers.values(), key=lambda c: (-c.requests, c.address))


def window(evidence: Window) -> dict[str, object]:
    return {
        "workspace_id": evidence.workspace_id,
        "window_start": iso(evidence.window_start),
        "window_end": iso(evidence.window_end),
    }


def public(activity: Activity) -> bool:
    """An address that is empty (events without one) is never judged public."""
    return bool(activity.caller_address) and not activity.address_private


def allowed_by_baseline(address: str, policy: VaultPolicy) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    ranges: tuple[IPNetwork, ...] = policy.allowed_ip_ranges
    return any(ip.version == network.version and ip in network for network in ranges)


def ranges(policy: VaultPolicy) -> str:
    if not policy.allowed_ip_ranges:
        return "no public address"
    return "only " + ", ".join(str(r) for r in policy.allowed_ip_ranges)


def earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def private_path_identity_hits(
    activity: Sequence[A],
    *,
    identities: Iterable[str],
    evidence: Window,
    callers_of: Callable[[Iterable[A]], list[Caller]],
    kinds_key: str,
    extra: Callable[[list[A]], Mapping[str, object]] = lambda seen: {},
) -> Iterator[Hit]:
    """KV203's and ST203's decision: each identity the baseline says arrives privately, seen from a
    public address, is one hit naming the addresses (busiest first); ``extra`` adds a service's own
    evidence (storage: the log tables the rows came from)."""
    for expected in identities:
        wanted = expected.strip().lower()
        seen = [
            a
            for a in activity
            if public(a) and wanted in {(a.identity or "").lower(), (a.identity_object_id or "").lower()}
        ]
        if not seen:
            continue
        callers = callers_of(seen)
        outcomes = Counter[str]()
        for a in seen:
            outcomes[a.outcome.value] += a.count
        total = sum(c.requests for c in callers)
        addresses = ", ".join(c.address for c in callers[:TOP])
        yield Hit(
            summary=(
                f"identity {expected}, which the baseline says arrives through a private path, made "
                f"{total} request(s) from public address(es) {addresses}"
            ),
            subject=expected,
            evidence={
                "identity": expected,
                "requests": total,
                "outcomes": dict(sorted(outcomes.items())),
                **extra(seen),
                "public_callers": [c.evidence(kinds_key) for c in callers[:TOP]],
                **window(evidence),
            },
        )


def admitted_public_hits(
    admitted: Sequence[A],
    *,
    evidence: Window,
    policy: VaultPolicy,
    callers_of: Callable[[Iterable[A]], list[Caller]],
    kinds_key: str,
    extra: Callable[[list[A]], Mapping[str, object]] = lambda mine: {},
) -> Iterator[Hit]:
    """KV201's and ST201's hits, once each service has picked the admitted public requests the
    baseline does not allow: one per caller address, busiest first; ``extra`` adds a service's own
    evidence from that address's rows (storage: the log tables)."""
    callers = callers_of(admitted)
    top = [{"caller_address": c.address, "requests": c.requests} for c in callers[:TOP]]
    for caller in callers:
        yield Hit(
            summary=(
                f"{caller.requests} request(s) from public address {caller.address} were admitted "
                f"between {iso(caller.first_seen)} and {iso(caller.last_seen)}; the baseline allows "
                f"{ranges(policy)}"
            ),
            subject=caller.address,
            evidence={
                **caller.evidence(kinds_key),
                **window(evidence),
                **extra([a for a in admitted if a.caller_address == caller.address]),
                "allowed_ip_ranges": [str(r) for r in policy.allowed_ip_ranges],
                "top_public_callers": top,
            },
        )
