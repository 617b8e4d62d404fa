"""``run_scan``: the one place that wires kvmon's stages together.

inventory -> perimeters -> probes -> logs -> evaluate -> drift -> coverage -> lifecycle (store) -> notify.

The CLI and the Functions app build a ``ScanRuntime`` (``monitor.app.runtime``) and call
``run_scan``; nothing else calls one stage after another. Stages are adapters behind small
protocols, so tests can drive this with the lab's real services and the real SDK clients.

Three scopes: whole subscriptions (a listing each), an on-demand check of one vault by name, and
one vault by resource id (``ScanRequest.vault_id``: the event path). The last is one GET
(``VaultReader.get_vault``): a 404 makes the stored vault disappear (KV302), and the fresh posture
becomes the vault's stored posture, because it is a whole, fresh read of that vault. That is safe
beside the timer's listing of the same subscription: postures are stored per vault, each write
replaces exactly the version it read, and the store never goes back in time (a snapshot older than
the stored one, by its scan's start, is dropped), so whichever scan started later keeps the vault.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from monitor.app.collector import scan_collector
from monitor.app.deadline import Deadline
from monitor.config.policy import Vantage, VaultPolicy
from monitor.errors import InputError
from monitor.judge.coverage import Coverage, assess_coverage, probes_by_vault
from monitor.judge.drift import network_diff
from monitor.judge.evaluate import ExpiredSuppression, evaluate
from monitor.judge.rules.base import Facts, StorageFacts, VaultFacts
from monitor.judge.rules.keyvault.drift import disappeared_vault_findings, network_changed
from monitor.judge.rules.storage.drift import disappeared_account_findings
from monitor.model import (
    ChangeActor,
    ErrorSource,
    Finding,
    FindingRecord,
    FindingStatus,
    LogEvidence,
    PerimeterLogEvidence,
    PerimeterLookup,
    PerimeterReading,
    ProbeResult,
    ScanError,
    ScanTrigger,
    Service,
    VaultPosture,
)
from monitor.model_storage import StorageAccountPosture
from monitor.netaddr import AddressSpace
from monitor.outputs.report import build_report_document
from monitor.scan_report import ScanReport
from monitor.sources.arm import VaultRead, vault_id_parts
from monitor.sources.change_history import ChangeHistory
from monitor.sources.inventory import (
    InventoryResultLike,
    InventorySource,
    StorageInventorySource,
    VaultReader,
)
from monitor.sources.keyvault.kql import normalise_vault_ids
from monitor.sources.logs import LogsReadResult, PerimeterLogsReadResult, logs_window
from monitor.sources.perimeters import PerimeterRead, PerimeterSource
from monitor.sources.storage.arm import StorageInventoryResult
from monitor.store.base import PostureSnapshot, ScanRun, Store
from monitor.store.reconcile import apply_reconciliation
from probes.vault import not_probed


class ProbeRunner(Protocol):
    """Probes vault names from one vantage point (locally or through a remote endpoint)."""

    def __call__(self, names: Sequence[str], vantage: Vantage) -> list[ProbeResult]: ...


class LogsReader(Protocol):
    def read_workspace(
        self,
        workspace_id: str,
        vault_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> LogsReadResult: ...

    def read_perimeter_workspace(
        self,
        workspace_id: str,
        vault_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> PerimeterLogsReadResult: ...


class Notifier(Protocol):
    def notify(self, report: ScanReport, *, now: dt.datetime) -> list[ScanError]: ...


@dataclass(frozen=True)
class ScanRequest:
    """``subscriptions``: the configured scope. ``vault_name``: an on-demand check of one vault;
    ``vault_id``: one vault by resource id, read with one GET, which must lie in ``subscriptions``
    (``InputError`` otherwise: kvmon never reads outside its scope). ``services``: the services
    whose resources are read (``kvmon scan --service``); None: every service the runtime can read.
    A one-vault scan reads Key Vault only."""

    subscriptions: tuple[str, ...]
    vault_name: str | None = None  # an on-demand check of one vault
    vault_id: str | None = None  # one vault by resource id (an event), judged and stored
    probe: bool = True
    logs: bool = True
    notify: bool = True
    trigger: ScanTrigger = ScanTrigger.CLI
    # Who changed which vault (vault key -> actor), where the trigger knows: an event's claims.
    actors: Mapping[str, ChangeActor] = field(default_factory=dict)
    services: frozenset[Service] | None = None

    def __post_init__(self) -> None:
        if self.services is not None and not self.services:
            raise InputError("a scan reads at least one service")
        if self.one_vault is not None and self.services is not None and Service.KEYVAULT not in self.services:
            raise InputError("a scan of one vault reads Key Vault: it cannot leave the service out")
        if self.vault_id is None:
            return
        if self.vault_name is not None:
            raise InputError("a scan names one vault by name or by resource id, not both")
        try:
            subscription, _, _ = vault_id_parts(self.vault_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if subscription not in {s.strip().lower() for s in self.subscriptions}:
            raise InputError(
                f"vault {self.vault_id} is in subscription {subscription}, outside the configured scope"
            )

    @property
    def scope(self) -> tuple[str, ...]:
        """The subscriptions this scan reads: the vault's own for a scan by id."""
        if self.vault_id is not None:
            return (vault_id_parts(self.vault_id)[0],)
        return self.subscriptions

    @property
    def one_vault(self) -> str | None:
        """The vault a one-vault scan names (id or name), None for whole subscriptions."""
        return self.vault_id or self.vault_name

    def services_read(self, *, storage_readable: bool) -> frozenset[Service]:
        """The services this scan reads: those asked for, of a runtime that can read storage
        (``storage_readable``) or not; a one-vault scan reads its vault only."""
        if self.one_vault is not None:
            return frozenset({Service.KEYVAULT})
        if self.services is None:
            return frozenset(Service) if storage_readable else frozenset({Service.KEYVAULT})
        if Service.STORAGE in self.services and not storage_readable:
            raise InputError("this runtime has no way to read storage accounts (no storage inventory)")
        return self.services


@dataclass
class ScanRuntime:
    """The adapters and knobs a scan runs with; built from settings by ``monitor.app.runtime``."""

    inventory: InventorySource
    # The baseline's policy for a vault or a storage account (``Baseline.policy_for``).
    policy_for: Callable[[VaultPosture | StorageAccountPosture], VaultPolicy]
    # The storage accounts (None: this runtime reads Key Vault only).
    storage_inventory: StorageInventorySource | None = None
    vault_reader: VaultReader | None = None  # one vault by id (``ScanRequest.vault_id``)
    # The vaults' Network Security Perimeter associations (None: not looked up, as offline).
    perimeters: PerimeterSource | None = None
    vantages: tuple[Vantage, ...] = ()
    prober: ProbeRunner | None = None
    evidence: LogsReader | None = None
    workspaces: tuple[str, ...] = ()  # the vaults' audit logs
    perimeter_workspaces: tuple[str, ...] = ()  # the perimeters' access logs (NSPAccessLogs)
    store: Store | None = None
    notifier: Notifier | None = None
    # Who changed a vault where its posture does not say (Resource Graph's rows carry no systemData).
    change_history: ChangeHistory | None = None
    address_space: AddressSpace = field(default_factory=AddressSpace)
    refused_threshold: int = 10
    scan_interval: dt.timedelta = dt.timedelta(minutes=15)
    event_feed: bool = False  # an Event Grid subscription announces ARM writes (KV303)
    logs_first_window: dt.timedelta = dt.timedelta(hours=24)
    # How long reading the sources may take (KVMON_SCAN_DEADLINE); None: as long as they take.
    deadline: dt.timedelta | None = None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


@dataclass
class ScanOutcome:
    report: ScanReport
    expired_suppressions: list[ExpiredSuppression]
    policies: Mapping[str, VaultPolicy]
    # The baseline's policy of each storage account judged, by account key.
    account_policies: Mapping[str, VaultPolicy] = field(default_factory=dict)


def run_scan(
    request: ScanRequest, runtime: ScanRuntime, *, progress: Callable[[str], None] | None = None
) -> ScanOutcome:
    """Scan the requested scope. Faults of the outside world land in ``report.errors``; a store
    that cannot be written raises ``StoreUnavailable`` (the scan must fail loudly).
    ``progress`` hears each stage as it starts (a terminal shows it)."""
    with scan_collector():
        return _scan(request, runtime, progress or (lambda stage: None))


def _scan(request: ScanRequest, runtime: ScanRuntime, tell: Callable[[str], None]) -> ScanOutcome:
    started = runtime.clock()
    deadline = Deadline(runtime.deadline)
    report = ScanReport(scan_id=_scan_id(started), started_at=started, scope=request.scope)

    services = request.services_read(storage_readable=runtime.storage_inventory is not None)

    # 1. What is configured. Each service's listing answers for its own resources only: a
    # subscription whose accounts could not be listed still has its vaults read, and the reverse.
    # The two listings run at once, so a scan of both services takes as long as the slower one.
    inventory: InventoryResultLike = _Listing(postures=[], errors=[], subscriptions_complete=set())
    vault_read: VaultRead | None = None
    accounts = StorageInventoryResult()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvmon-accounts") as pool:
        pending = (
            pool.submit(_list_accounts, request, runtime, deadline) if Service.STORAGE in services else None
        )
        if Service.KEYVAULT in services:
            tell("reading vault configuration from ARM")
            inventory, vault_read = _read_inventory(request, runtime, report, deadline)
        # The vaults' perimeters while the accounts may still be listed: they wait for no account.
        vaults_unread = _unread(request.scope, report.postures, inventory.subscriptions_complete)
        if runtime.perimeters is not None and report.postures:
            tell("reading network security perimeters from ARM")
            report.postures = _read_perimeters(runtime.perimeters, request, report, vaults_unread, deadline)
        if pending is not None:
            tell("reading storage account configuration from ARM")
            accounts = pending.result()
    report.accounts = list(accounts.postures)
    report.errors.extend(accounts.errors)
    report.errors.extend(_problems(report.accounts))
    _mark_subscriptions(
        request,
        report,
        unread=(vaults_unread if Service.KEYVAULT in services else set())
        | (
            _unread(request.scope, report.accounts, accounts.subscriptions_complete)
            if Service.STORAGE in services
            else set()
        ),
        listed=[
            listed.subscriptions_complete
            for service, listed in ((Service.KEYVAULT, inventory), (Service.STORAGE, accounts))
            if service in services
        ],
    )
    policies = {posture.key: runtime.policy_for(posture) for posture in report.postures}
    account_policies = {account.key: runtime.policy_for(account) for account in report.accounts}

    # 2. What actually happens, from every vantage point at once.
    probed = request.probe and runtime.prober is not None and bool(runtime.vantages)
    if probed and report.postures:
        tell(f"probing {len(report.postures)} vault(s) from {len(runtime.vantages)} vantage point(s)")
        report.probes = _probe_all(runtime, [p.name for p in report.postures], deadline)
        report.errors.extend(_probe_errors(report.postures, report.probes))

    # 3. What has happened: one query per workspace for all its vaults, per log (the vaults' own,
    # the perimeters').
    logs_read = request.logs and runtime.evidence is not None and bool(runtime.workspaces)
    perimeter_logs_read = request.logs and runtime.evidence is not None and bool(runtime.perimeter_workspaces)
    evidence: dict[str, LogEvidence] = {}
    perimeter_evidence: dict[str, PerimeterLogEvidence] = {}
    logs_until: dt.datetime | None = None
    if (logs_read or perimeter_logs_read) and report.postures:
        workspaces = {*runtime.workspaces, *runtime.perimeter_workspaces}
        tell(f"reading access logs from {len(workspaces)} workspace(s)")
        evidence, perimeter_evidence, logs_until = _read_logs(
            runtime, report, request.scope, deadline, audit=logs_read, perimeter=perimeter_logs_read
        )
    report.evidence = list(evidence.values())
    report.perimeter_evidence = list(perimeter_evidence.values())
    complete = [found.complete for found in evidence.values()]
    complete.extend(found.complete for found in perimeter_evidence.values())
    if not all(complete):
        logs_until = None  # the next scan reads this window again

    # 4. Judge, against the stored past.
    tell("evaluating")
    stored = _stored_postures(runtime.store, request) if runtime.store else {}
    previous = {key: snapshot.posture for key, snapshot in stored.items()}
    stored_accounts: Mapping[str, PostureSnapshot[StorageAccountPosture]] = (
        runtime.store.load_postures(subscriptions=request.scope, service=Service.STORAGE)
        if runtime.store is not None and Service.STORAGE in services
        else {}
    )
    previous_accounts = {key: snapshot.posture for key, snapshot in stored_accounts.items()}
    actors = _change_actors(request, runtime, report, stored, deadline)
    facts: list[Facts] = [
        *_vault_facts(
            report,
            runtime,
            policies=policies,
            evidence=evidence,
            perimeter_evidence=perimeter_evidence,
            previous=previous,
            actors=actors,
            request=request,
        ),
        *_account_facts(report, policies=account_policies, previous=previous_accounts, request=request),
    ]
    evaluation = evaluate(facts, today=started.date())
    report.findings = list(evaluation.findings)
    gone: list[Finding] = []
    vault_findings: Mapping[str, FindingRecord] | None = None  # a one-vault read's stored findings
    if runtime.store is not None and vault_read is not None:
        # Only ARM's 404 makes a vault gone; an error says nothing about it.
        key = vault_read.vault_id.lower()
        if vault_read.gone and key in previous:
            gone = disappeared_vault_findings(
                previous={key: previous[key]}, current_keys=(), complete_subscriptions=request.scope
            )
        vault_findings = runtime.store.load_findings(vault_keys=[key])
        report.findings.extend(_drift_kept_open(vault_findings, report))
    elif runtime.store is not None and request.vault_name is None:
        gone = disappeared_vault_findings(
            previous=previous,
            current_keys={p.key for p in report.postures},
            complete_subscriptions=inventory.subscriptions_complete,
        )
    report.findings.extend(gone)
    # An account missing from its subscription's complete account listing is gone (ST302).
    accounts_gone = (
        disappeared_account_findings(
            previous=previous_accounts,
            current_keys={account.key for account in report.accounts},
            complete_subscriptions=accounts.subscriptions_complete,
        )
        if runtime.store is not None and Service.STORAGE in services
        else []
    )
    report.findings.extend(accounts_gone)
    coverage = assess_coverage(
        postures=report.postures,
        probes=report.probes,
        evidence=evidence,
        probed=probed,
        vantages=[vantage.name for vantage in runtime.vantages] if probed else (),
        logs_read=logs_read,
        subscriptions_complete=inventory.subscriptions_complete,
        disappeared={f.vault_id.lower() for f in gone},
        perimeter_evidence=perimeter_evidence,
        perimeter_logs_read=perimeter_logs_read,
        accounts=report.accounts,
        account_subscriptions_complete=accounts.subscriptions_complete,
        accounts_disappeared={f.vault_id.lower() for f in accounts_gone},
    )
    report.incomplete = dict(coverage.fell_short)
    report.skipped_sources = coverage.skipped

    # 5. Remember, then tell.
    tell("storing findings")
    if runtime.store is not None:
        _remember(runtime.store, request, report, coverage, stored_findings=vault_findings)
    report.finished_at = runtime.clock()
    if request.notify and runtime.notifier is not None and runtime.store is not None:
        tell("notifying")
        report.errors.extend(runtime.notifier.notify(report, now=report.finished_at))
    if runtime.store is not None:
        _record_scan(runtime.store, request, report, runtime.vantages, policies, logs_until=logs_until)
    return ScanOutcome(
        report=report,
        expired_suppressions=evaluation.expired_suppressions,
        policies=policies,
        account_policies=account_policies,
    )


@dataclass
class _Listing:
    """An inventory result the scan made itself: a one-vault GET, whose subscription counts as
    read completely for that vault only when ARM answered (the posture, or 404; coverage then makes
    that vault complete), or a listing the deadline cut off, which read nothing."""

    postures: list[VaultPosture]
    errors: list[ScanError]
    subscriptions_complete: set[str]

    @classmethod
    def of(cls, read: VaultRead, subscription: str) -> _Listing:
        return cls(
            postures=[read.posture] if read.posture is not None else [],
            errors=list(read.errors),
            subscriptions_complete={subscription} if read.answered else set(),
        )


def _read_inventory(
    request: ScanRequest, runtime: ScanRuntime, report: ScanReport, deadline: Deadline
) -> tuple[InventoryResultLike, VaultRead | None]:
    vault_read: VaultRead | None = None
    inventory: InventoryResultLike | None
    if request.vault_id is not None:
        reader, vault_id = runtime.vault_reader, request.vault_id
        if reader is None:
            raise InputError("this runtime has no way to read one vault by id (no ARM vault reader)")
        vault_read = deadline.within(lambda: reader.get_vault(vault_id))
        if vault_read is None:
            vault_read = VaultRead(
                vault_id=vault_id, errors=[deadline.error(ErrorSource.ARM, vault_id, "the vault")]
            )
        inventory = _Listing.of(vault_read, request.scope[0])
    else:
        name, source = request.vault_name, runtime.inventory
        inventory = deadline.within(
            (lambda: source.list_vaults(request.subscriptions))
            if name is None
            else (lambda: source.find_vault(name, request.subscriptions))
        )
        if inventory is None:
            inventory = _Listing(
                postures=[],
                errors=[deadline.error(ErrorSource.ARM, s, "the vault listing") for s in request.scope],
                subscriptions_complete=set(),
            )
    report.postures = list(inventory.postures)
    report.errors.extend(inventory.errors)
    report.errors.extend(_problems(report.postures))
    return inventory, vault_read


def _list_accounts(request: ScanRequest, runtime: ScanRuntime, deadline: Deadline) -> StorageInventoryResult:
    """The storage accounts of the scope, under the deadline like the vaults' listing; one the
    deadline cut off read nothing, and names each subscription."""
    source = runtime.storage_inventory
    assert source is not None
    result = deadline.within(lambda: source.list_accounts(request.scope))
    if result is None:
        result = StorageInventoryResult(
            errors=[deadline.error(ErrorSource.ARM, s, "the storage account listing") for s in request.scope]
        )
    return result


def _problems(postures: Sequence[VaultPosture | StorageAccountPosture]) -> list[ScanError]:
    """Fields ARM returned that could not be read were judged on Azure's defaults: the report says
    so, resource by resource, as the offline evaluator does."""
    return [
        ScanError(ErrorSource.ARM, posture.id, problem)
        for posture in postures
        for problem in posture.problems
    ]


def _unread(
    scope: Sequence[str], postures: Sequence[VaultPosture | StorageAccountPosture], complete: AbstractSet[str]
) -> set[str]:
    """The subscriptions (lower-cased) of which one service's listing read nothing: no resource,
    and not listed completely (a complete listing of nothing read the subscription)."""
    read = {p.subscription_id.lower() for p in postures} | {s.lower() for s in complete}
    return {s.lower() for s in scope if s.lower() not in read}


def _mark_subscriptions(
    request: ScanRequest, report: ScanReport, *, unread: AbstractSet[str], listed: Sequence[AbstractSet[str]]
) -> None:
    """A subscription is unread when a service the scan reads read nothing of it (the scan says
    nothing of that service's resources there: ``kvmon scan`` exits 3), and listed when every
    service listed it completely."""
    report.unread_subscriptions = tuple(s for s in request.scope if s.lower() in unread)
    report.listed_subscriptions = tuple(
        s for s in request.scope if all(s.lower() in {c.lower() for c in complete} for complete in listed)
    )


def _stored_postures(store: Store, request: ScanRequest) -> Mapping[str, PostureSnapshot]:
    """What the store knows of the scope: one partition read per subscription. A one-vault read
    (an event) needs only that vault's posture, one point read, unless the store has none: then
    the subscription's tell whether the vault is new to a scanned subscription (KV302) or the
    subscription was never scanned."""
    if request.vault_id is not None:
        one = store.load_postures(vault_keys=[request.vault_id.lower()])
        if one:
            return one
    return store.load_postures(subscriptions=request.scope)


def _drift_kept_open(stored: Mapping[str, FindingRecord], report: ScanReport) -> list[Finding]:
    """The open KV301 of the vaults a one-vault read saw, when this read found no change of its
    own. KV301 says the configuration changed since the last scan of the subscription; a second
    event for the vault, a late or reordered one, or the probes' follow-up reads the vault again
    and finds it as the first read stored it, which is no reason to announce the drift resolved.
    The next scan of the subscription resolves it, as it always did."""
    seen = {finding.id for finding in report.findings}
    keys = {posture.key for posture in report.postures}
    return [
        record.finding
        for record in stored.values()
        if record.status is FindingStatus.OPEN
        and record.finding.rule_id == network_changed.id
        and record.finding.vault_id.lower() in keys
        and record.finding.id not in seen
    ]


def _change_actors(
    request: ScanRequest,
    runtime: ScanRuntime,
    report: ScanReport,
    stored: Mapping[str, PostureSnapshot],
    deadline: Deadline,
) -> Mapping[str, ChangeActor]:
    """Who changed each vault: the request's actors (an event's claims), and, for a vault whose
    network configuration moved since it was stored while its posture names no modifier, the
    change history's newest network change since then. The request's actor wins: it is the write
    itself, the history trails it by minutes."""
    history_source = runtime.change_history
    if history_source is None:
        return request.actors
    unnamed = {
        posture.id: stored[posture.key].seen_at
        for posture in report.postures
        if posture.last_modified_by is None
        and posture.key not in request.actors
        and posture.key in stored
        and network_diff(stored[posture.key].posture, posture).changes
    }
    if not unnamed:
        return request.actors
    history = deadline.within(lambda: history_source.network_actors(unnamed))
    if history is None:
        report.errors.extend(
            deadline.error(ErrorSource.RESOURCE_GRAPH, vault_id, "who changed the vault (change history)")
            for vault_id in unnamed
        )
        return request.actors
    report.errors.extend(history.errors)
    return {**history.actors, **request.actors}


def _vault_facts(
    report: ScanReport,
    runtime: ScanRuntime,
    *,
    policies: Mapping[str, VaultPolicy],
    evidence: Mapping[str, LogEvidence],
    perimeter_evidence: Mapping[str, PerimeterLogEvidence],
    previous: Mapping[str, VaultPosture],
    actors: Mapping[str, ChangeActor],
    request: ScanRequest,
) -> list[VaultFacts]:
    # A subscription with no stored vault is scanned for the first time, so its vaults did not
    # "appear" (KV302).
    known_subscriptions = {posture.subscription_id.lower() for posture in previous.values()}
    by_vault = probes_by_vault(report.probes)
    return [
        VaultFacts(
            posture=posture,
            policy=policies[posture.key],
            probes=tuple(by_vault.get(posture.name.lower(), ())),
            vantages=runtime.vantages,
            evidence=evidence.get(posture.key),
            perimeter_evidence=perimeter_evidence.get(posture.key),
            previous=previous.get(posture.key),
            actor=actors.get(posture.key),
            event_feed=runtime.event_feed and request.trigger is not ScanTrigger.EVENT,
            first_scan_of_scope=posture.subscription_id.lower() not in known_subscriptions,
            logs_refused_threshold=runtime.refused_threshold,
            scan_started_at=report.started_at,
            scan_interval=runtime.scan_interval,
            address_space=runtime.address_space,
        )
        for posture in report.postures
    ]


def _account_facts(
    report: ScanReport,
    *,
    policies: Mapping[str, VaultPolicy],
    previous: Mapping[str, StorageAccountPosture],
    request: ScanRequest,
) -> list[StorageFacts]:
    """The accounts' facts: their configuration and its stored past. A subscription with no stored
    account is scanned for storage for the first time, so its accounts did not "appear" (ST302),
    whatever the store knows of its vaults. ``event_feed`` stays off: the event subscription
    announces Key Vault's writes only."""
    known_subscriptions = {posture.subscription_id.lower() for posture in previous.values()}
    return [
        StorageFacts(
            posture=account,
            policy=policies[account.key],
            previous=previous.get(account.key),
            first_scan_of_scope=account.subscription_id.lower() not in known_subscriptions,
            actor=request.actors.get(account.key),
            scan_started_at=report.started_at,
        )
        for account in report.accounts
    ]


def _remember(
    store: Store,
    request: ScanRequest,
    report: ScanReport,
    coverage: Coverage,
    *,
    stored_findings: Mapping[str, FindingRecord] | None,
) -> None:
    """``stored_findings``: what the scan read of its vaults' findings already, if it did."""
    report.changes = apply_reconciliation(
        store,
        current=report.findings,
        assessed_vaults=coverage.assessed,
        complete_vaults=coverage.complete,
        incomplete_sources=coverage.incomplete_sources,
        now=report.started_at,
        scan_id=report.scan_id,
        previous=stored_findings,
    )
    # A whole listing, or a whole GET of one vault by id, becomes the stored state (postures are
    # per vault: see the module's docstring). A check by name is judged against the last scan of
    # its subscription and stores nothing: it may be a name matched in a partial listing.
    if request.vault_name is None:
        store.save_postures(
            PostureSnapshot(posture=p, scan_id=report.scan_id, seen_at=report.started_at)
            for p in [*report.postures, *report.accounts]
        )


def _record_scan(
    store: Store,
    request: ScanRequest,
    report: ScanReport,
    vantages: Sequence[Vantage],
    policies: Mapping[str, VaultPolicy],
    *,
    logs_until: dt.datetime | None,
) -> None:
    assert report.finished_at is not None
    # The report first: a scan whose report could not be kept (ReportNotStored) is not recorded
    # either, so the next scan reads its logs window again, and the last report stays the latest.
    store.save_report(
        report.scan_id,
        build_report_document(report, vantages=vantages, policies=policies, generated_at=report.finished_at),
        started_at=report.started_at,
    )
    store.record_scan(
        ScanRun(
            scan_id=report.scan_id,
            scope=report.scope,
            started_at=report.started_at,
            finished_at=report.finished_at,
            counts=_counts(report),
            errors=tuple(report.errors),
            trigger=request.trigger,
            vault=request.one_vault,
            logs_until=logs_until,
        )
    )


def _scan_id(started: dt.datetime) -> str:
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def _probe_all(runtime: ScanRuntime, names: list[str], deadline: Deadline) -> list[ProbeResult]:
    """Every vantage point at once; one the deadline cut off gives each vault a result that
    proved nothing (named in the errors, holding its probe findings open)."""
    assert runtime.prober is not None
    prober = runtime.prober
    batches = deadline.within_all([functools.partial(prober, names, vantage) for vantage in runtime.vantages])
    results: list[ProbeResult] = []
    for vantage, batch in zip(runtime.vantages, batches, strict=True):
        if batch is None:
            reason = deadline.reason(f"the probes from {vantage.name}")
            batch = [not_probed(name, vantage, reason) for name in names]
        results.extend(batch)
    return results


def _probe_errors(postures: Sequence[VaultPosture], probes: Sequence[ProbeResult]) -> list[ScanError]:
    """A probe that proved nothing (DNS failed, nothing answered, the data plane erred) is named
    in the errors: its vault's probe findings stay open unseen, and a pipeline reading only the
    findings would take the vault for clean."""
    ids = {posture.name.lower(): posture.id for posture in postures}
    return [
        ScanError(
            ErrorSource.PROBE,
            ids.get(result.vault_name.lower(), result.vault_name),
            f"{result.hostname or result.vault_name} from {result.vantage}: {result.verdict.value}, "
            f"{result.failure}",
        )
        for result in probes
        if not result.conclusive
    ]


def _read_logs(
    runtime: ScanRuntime,
    report: ScanReport,
    subscriptions: Sequence[str],
    deadline: Deadline,
    *,
    audit: bool,
    perimeter: bool,
) -> tuple[dict[str, LogEvidence], dict[str, PerimeterLogEvidence], dt.datetime]:
    """Evidence per vault key from the vaults' audit logs (``audit``) and the perimeters' access
    logs (``perimeter``), and where the window ended. It ends now, not at the scan's start: this
    scan's own probes are evidence too. It starts where the last scan of these subscriptions that
    read logs stopped, whatever other subscriptions' workers recorded since."""
    reader = runtime.evidence
    assert reader is not None
    previous_end = _logs_read_until(runtime.store, subscriptions) if runtime.store is not None else None
    window_start, window_end = logs_window(
        now=runtime.clock(), previous_scan_end=previous_end, first_run=runtime.logs_first_window
    )
    vault_ids = [p.id for p in report.postures]
    merged: dict[str, LogEvidence] = {}
    for workspace in runtime.workspaces if audit else ():
        result = deadline.within(
            functools.partial(
                reader.read_workspace, workspace, vault_ids, window_start=window_start, window_end=window_end
            )
        )
        if result is None:
            result = _logs_not_read(workspace, vault_ids, window_start, window_end, deadline)
        report.errors.extend(result.errors)
        for key, found in result.evidence.items():
            merged[key] = _merge_evidence(merged.get(key), found)
    merged_perimeter: dict[str, PerimeterLogEvidence] = {}
    for workspace in runtime.perimeter_workspaces if perimeter else ():
        seen = deadline.within(
            functools.partial(
                reader.read_perimeter_workspace,
                workspace,
                vault_ids,
                window_start=window_start,
                window_end=window_end,
            )
        )
        if seen is None:
            seen = _perimeter_logs_not_read(workspace, vault_ids, window_start, window_end, deadline)
        report.errors.extend(seen.errors)
        for key, found_perimeter in seen.evidence.items():
            merged_perimeter[key] = _merge_evidence(merged_perimeter.get(key), found_perimeter)
    return merged, merged_perimeter, window_end


def _read_perimeters(
    reader: PerimeterSource,
    request: ScanRequest,
    report: ScanReport,
    vaults_unread: AbstractSet[str],
    deadline: Deadline,
) -> list[VaultPosture]:
    """The postures with their perimeter association. A subscription of which no vault could be
    read is an error already; its perimeters are not asked for (nothing read there could be judged
    on them). Cut off by the deadline, every association is unreadable: unknown, never "none"."""
    subscriptions = [s for s in request.scope if s.lower() not in vaults_unread]
    postures = report.postures
    perimeters = deadline.within(lambda: reader.read_perimeters(postures, subscriptions=subscriptions))
    if perimeters is None:
        errors = [
            deadline.error(ErrorSource.ARM, s, "the network security perimeters") for s in subscriptions
        ]
        unknown = PerimeterReading(
            lookup=PerimeterLookup.UNREADABLE, error=errors[0].message if errors else ""
        )
        perimeters = PerimeterRead(readings={p.key: unknown for p in postures}, errors=errors)
    report.errors.extend(perimeters.errors)
    return perimeters.apply(postures)


def _logs_not_read(
    workspace: str, vault_ids: Sequence[str], start: dt.datetime, end: dt.datetime, deadline: Deadline
) -> LogsReadResult:
    """A workspace the deadline cut off: every vault's evidence incomplete, saying why."""
    error = deadline.error(ErrorSource.LOGS, workspace, "the access logs")
    note = (f"evidence incomplete: {error.message}",)
    return LogsReadResult(
        workspace_id=workspace,
        query="",
        evidence={
            key: LogEvidence(
                vault_id=key,
                workspace_id=workspace,
                window_start=start,
                window_end=end,
                complete=False,
                notes=note,
            )
            for key in normalise_vault_ids(vault_ids)
        },
        errors=[error],
    )


def _perimeter_logs_not_read(
    workspace: str, vault_ids: Sequence[str], start: dt.datetime, end: dt.datetime, deadline: Deadline
) -> PerimeterLogsReadResult:
    """A perimeter log workspace the deadline cut off: every vault's evidence incomplete."""
    error = deadline.error(ErrorSource.LOGS, workspace, "the perimeter access logs")
    return PerimeterLogsReadResult(
        workspace_id=workspace,
        query="",
        evidence={
            key: PerimeterLogEvidence(
                vault_id=key,
                workspace_id=workspace,
                window_start=start,
                window_end=end,
                complete=False,
                notes=(f"evidence incomplete: {error.message}",),
            )
            for key in normalise_vault_ids(vault_ids)
        },
        errors=[error],
    )


# Recent scan records searched for the last logs read of a subscription: one per subscription per
# scheduled scan, so this covers a few rounds of a large fan-out.
_RUNS_SEARCHED = 500


def _logs_read_until(store: Store, subscriptions: Sequence[str]) -> dt.datetime | None:
    wanted = {s.lower() for s in subscriptions}
    for run in store.scan_runs(limit=_RUNS_SEARCHED):
        if run.vault is None and run.logs_until is not None and wanted <= {s.lower() for s in run.scope}:
            return run.logs_until
    return None


_Evidence = TypeVar("_Evidence", LogEvidence, PerimeterLogEvidence)


def _merge_evidence(first: _Evidence | None, second: _Evidence) -> _Evidence:
    """One vault's evidence from two workspaces: every row of both, complete only if both are."""
    if first is None:
        return second
    rows = "activity" if isinstance(second, LogEvidence) else "access"
    return replace(
        first,
        workspace_id=f"{first.workspace_id},{second.workspace_id}",
        window_start=min(first.window_start, second.window_start),
        window_end=max(first.window_end, second.window_end),
        complete=first.complete and second.complete,
        notes=first.notes + second.notes,
        **{rows: getattr(first, rows) + getattr(second, rows)},
    )


def _counts(report: ScanReport) -> dict[str, int]:
    counts: dict[str, int] = {
        "vaults": len(report.postures),
        "accounts": len(report.accounts),
        "findings": len(report.findings),
        "errors": len(report.errors),
    }
    for change in report.changes:
        counts[change.kind.value] = counts.get(change.kind.value, 0) + 1
    for finding in report.findings:
        if not finding.suppressed:
            counts[f"severity_{finding.severity.value}"] = (
                counts.get(f"severity_{finding.severity.value}", 0) + 1
            )
    return counts


__all__ = ["ScanOutcome", "ScanRequest", "ScanRuntime", "run_scan"]
