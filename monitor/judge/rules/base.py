"""What a rule is: ``Rule`` (its metadata and its check), ``Hit``, the facts a check reads
(``VaultFacts`` for Key Vault, ``StorageFacts`` for storage accounts), and ``rule``, the decorator
that makes a check a ``Rule``.

To add a rule, in the family module for its service and what it reads (Key Vault's:
``keyvault/config.py`` KV0xx, ``probes.py`` KV1xx, ``logs.py`` KV2xx, ``drift.py`` KV3xx; storage's:
``storage/config.py`` ST0xx, ``storage/logs.py`` ST2xx, ``storage/drift.py`` ST3xx):

1. write the check, a pure function of its service's facts that yields ``Hit``s, with the rationale
   (why the finding matters, one paragraph) as its docstring;
2. put ``@rule(id=..., severity=..., title=..., source=..., category=..., remediation_cli=...,
   remediation_bicep=..., references=(...), baseline_keys=(...), exposure=..., service=...)`` on it:
   ``source`` is the evidence that must have answered before its findings may resolve, ``exposure``
   whether its finding claims or proves that the resource admits too much (``Exposure``),
   ``service`` the service it judges (Key Vault unless stated; its id then starts with that
   service's prefix, KV or ST);
3. add it to the module's ``RULES``;
4. give it a case where it fires and one where it stays quiet in ``tests/rules/test_catalog.py``
   (that test fails until it has them), and tests of its own beside its family's.

``catalog.build_catalog`` validates every rule when the catalog is built; ``kvmon rules`` lists it.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from monitor.config.policy import Vantage, VaultPolicy
from monitor.model import (
    ChangeActor,
    EvidenceSource,
    LogEvidence,
    PerimeterLogEvidence,
    ProbeResult,
    Service,
    Severity,
    VaultPosture,
)
from monitor.model_storage import StorageAccountPosture, StorageLogEvidence, StorageProbeResult
from monitor.netaddr import AddressSpace


@dataclass(frozen=True)
class VaultFacts:
    """Everything known about one vault in one scan; rules read nothing else."""

    service: ClassVar[Service] = Service.KEYVAULT

    posture: VaultPosture
    policy: VaultPolicy
    probes: tuple[ProbeResult, ...] = ()
    vantages: tuple[Vantage, ...] = ()  # the vantage points configured (probes name them)
    evidence: LogEvidence | None = None  # None: no workspace covers this vault
    # The perimeter's access log (NSPAccessLogs); None: no perimeter workspace was read.
    perimeter_evidence: PerimeterLogEvidence | None = None
    previous: VaultPosture | None = None  # the stored posture of the last scan (drift)
    # True when the store knew nothing of this vault's scope before this scan: a vault without a
    # ``previous`` is then not "new" (KV302 says "appeared" only when this is False).
    first_scan_of_scope: bool = True
    logs_refused_threshold: int = 10  # KV202
    # Who made the change this scan is judging, where Azure said (an event's claims, Resource Graph's
    # change history); None: only the vault's systemData names its last modifier (KV301).
    actor: ChangeActor | None = None
    # True when an event subscription is meant to announce every ARM write of the vault and this
    # scan is not itself an event's: a change it finds first was never announced (KV303).
    event_feed: bool = False
    # The scan's clock, passed in (rules never read one): KV106 judges a remote result's age.
    scan_started_at: dt.datetime | None = None
    scan_interval: dt.timedelta = dt.timedelta(minutes=15)
    # The private address space (probe rules classify the addresses vantage points saw).
    address_space: AddressSpace = field(default_factory=AddressSpace)


@dataclass(frozen=True)
class StorageFacts:
    """Everything known about one storage account in one scan; storage rules read nothing else.

    Beside ``VaultFacts`` rather than a generalisation of it: storage is judged on its configuration,
    its probes and its access logs, its posture, probe results and log evidence are other records, and
    Key Vault's rules keep the facts they were written against. The fields mean what ``VaultFacts``'s of
    the same name mean.
    """

    service: ClassVar[Service] = Service.STORAGE

    posture: StorageAccountPosture
    policy: VaultPolicy
    # What each vantage point's probe of each endpoint saw (``probes.storage``), and the vantage
    # points configured, which the results name (ST1xx).
    probes: tuple[StorageProbeResult, ...] = ()
    vantages: tuple[Vantage, ...] = ()
    previous: StorageAccountPosture | None = None  # the stored posture of the last scan (drift)
    evidence: StorageLogEvidence | None = None  # None: no workspace covers this account (ST2xx)
    logs_refused_threshold: int = 10  # ST202
    first_scan_of_scope: bool = True
    actor: ChangeActor | None = None
    event_feed: bool = False
    scan_started_at: dt.datetime | None = None


Facts = VaultFacts | StorageFacts
F = TypeVar("F", VaultFacts, StorageFacts)


@dataclass(frozen=True)
class Hit:
    """One occurrence of a rule on a vault. ``subject`` tells occurrences apart (and keys the
    finding), ``summary`` is the decisive evidence in one line."""

    summary: str
    subject: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None  # overrides the rule's default


class Resource(Protocol):
    """What a remediation names of the resource it fixes."""

    @property
    def name(self) -> str: ...

    @property
    def resource_group(self) -> str: ...

    @property
    def subscription_id(self) -> str: ...


# What ``Rule.remediation_for`` fills into a remediation command.
REMEDIATION_PLACEHOLDERS = frozenset({"name", "resource_group", "subscription", "subject"})


class RuleCategory(StrEnum):
    """How a rule is listed (``kvmon rules`` shows it as "reads", SARIF as a tag). What decides
    whether its findings may resolve is the rule's ``source``, not this."""

    CONFIGURATION = "configuration"
    BASELINE = "baseline"  # the configuration against what the baseline states
    PROBES = "probes"
    LOGS = "logs"
    DRIFT = "drift"  # the configuration against the stored one


class Exposure(StrEnum):
    """What a rule's finding says about who can reach the vault. A finding of a ``PROVEN`` rule
    (a vantage point was admitted where it must be refused) confirms the open ``CLAIMED`` findings
    of the same vault (the configuration says it admits too much): the lifecycle records it and
    tells it once (``ChangeKind.CONFIRMED``)."""

    NONE = "none"
    CLAIMED = "claimed"
    PROVEN = "proven"


@dataclass(frozen=True)
class Rule(Generic[F]):
    """A check and its metadata; ``service`` is the service whose facts ``check`` judges."""

    id: str
    severity: Severity
    title: str
    source: EvidenceSource  # a finding resolves only in a scan in which this source answered
    category: RuleCategory
    rationale: str
    remediation_cli: str  # may use the REMEDIATION_PLACEHOLDERS, e.g. {name}
    remediation_bicep: str
    references: tuple[str, ...]
    check: Callable[[F], Iterable[Hit]]
    baseline_keys: tuple[str, ...] = ()  # the baseline keys the check reads, e.g. "expect.default_action"
    exposure: Exposure = Exposure.NONE
    service: Service = Service.KEYVAULT

    def remediation_for(self, posture: Resource, subject: str = "") -> str:
        return self.remediation_cli.format(
            name=posture.name,
            resource_group=posture.resource_group,
            subscription=posture.subscription_id,
            subject=subject,
        )

    @property
    def remediation_shown(self) -> str:
        """The CLI remediation as a reader sees it in the catalog: placeholders kept as ``{name}``,
        the template's escaped braces (``{{``) shown as the single braces a shell needs."""
        return self.remediation_cli.format(
            **{placeholder: f"{{{placeholder}}}" for placeholder in REMEDIATION_PLACEHOLDERS}
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "title": self.title,
            "reads": self.category.value,
            "rationale": self.rationale,
            "remediation": self.remediation_shown,
            "remediation_bicep": self.remediation_bicep,
            "references": list(self.references),
            "source": self.source.value,
            "baseline_keys": list(self.baseline_keys),
            "exposure": self.exposure.value,
            "service": self.service.value,
        }


def rule(
    *,
    id: str,
    severity: Severity,
    title: str,
    source: EvidenceSource,
    category: RuleCategory,
    remediation_cli: str,
    remediation_bicep: str,
    references: tuple[str, ...],
    baseline_keys: tuple[str, ...] = (),
    exposure: Exposure = Exposure.NONE,
    service: Service = Service.KEYVAULT,
) -> Callable[[Callable[[F], Iterable[Hit]]], Rule[F]]:
    """Make the decorated check a ``Rule`` of ``service`` (whose facts it takes: ``VaultFacts`` for
    Key Vault, ``StorageFacts`` for storage); its docstring is the rationale (one paragraph: the
    lines are joined with single spaces, as ``kvmon rules`` and SARIF show it)."""

    def build(check: Callable[[F], Iterable[Hit]]) -> Rule[F]:
        return Rule(
            id=id,
            severity=severity,
            title=title,
            source=source,
            category=category,
            rationale=" ".join(inspect.cleandoc(check.__doc__ or "").split()),
            remediation_cli=remediation_cli,
            remediation_bicep=remediation_bicep,
            references=references,
            check=check,
            baseline_keys=baseline_keys,
            exposure=exposure,
            service=service,
        )

    return build
