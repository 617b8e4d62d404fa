"""The event path: vault changes Event Grid announced, each read again and judged through ``run_scan``.

For each ``VaultChange`` (``monitor.sources.events`` makes them from Event Grid payloads): fold it
if its event id was handled already in this batch, else claim the id in the store (one create of
a record that holds it for ``CLAIM_LEASE``; a live record of the id, recorded within the last
``retention`` or being handled, makes it a duplicate or in progress instead), scan
that one vault by id (``ScanRequest.vault_id``: one GET, judged against the stored posture with the
event's actor, stored, notified on a finding's state transition) and record the event as
processed. Two deliveries of one id at the same instant: the one that lost the claim reads no
vault and asks Event Grid to deliver again (``IN_PROGRESS``), by which time the event is a
duplicate, or its claim lapsed because the first handler died. The GET is trusted, never the
event: two events for one vault, or events delivered out of order, each read the vault as it is
now, so the last read wins and a reordered or repeated delivery cannot reopen what a later read
closed. Notification happens only on a lifecycle transition, so nothing is announced twice.

Failure policy. Event Grid retries a delivery the function fails (10 s, 30 s, 1 min, ... for up to
24 hours) and puts an endpoint that keeps failing on probation, which delays *every* delivery, so
raising is kept for what a retry can fix:

- a transient fault of ARM (throttled past azure-core's retries, a 5xx, a timeout, a dropped
  connection): ``HandledEvents.retry`` is true and the function raises (``EventRetry``), so Event
  Grid delivers the event again in seconds; the event is not recorded as processed;
- the store down (``StoreUnavailable`` from ``run_scan`` or the record): raised as it is, for the
  same reason; nothing was recorded;
- the event claimed by another delivery being handled (``IN_PROGRESS``): retried like a transient
  fault, since that handling may yet fail; by the redelivery it is a duplicate, or its claim has
  lapsed and this delivery takes it over;
- a permanent problem never raises: a vault outside the configured subscriptions or an id that is
  not a vault's (``OUT_OF_SCOPE``), a vault ARM says is gone (``GONE``: KV302), ARM refusing the
  read (401, 403, a 404 for the subscription or group: ``ERROR``, not transient). Retrying those
  for a day would only earn the endpoint probation; the error is in the scan's record and the
  timer's next scan is the backstop.

Only a change that was handled (``PROCESSED`` or ``GONE``) is recorded; the claim of one that was
not is released, so a change that failed is read again on redelivery or by the timer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitor.app.scan import ScanRequest, ScanRuntime, run_scan
from monitor.errors import InputError, KvmonError
from monitor.model import ErrorSource, Finding, FindingChange, ScanError, ScanTrigger, VaultChange
from monitor.sources.events import EventPayloadError, parse_payload
from monitor.store.base import ProcessedEvent

log = logging.getLogger("kvmon.events")

# Event Grid's retry horizon: a redelivery comes within a day of the first delivery.
EVENT_RETENTION = dt.timedelta(hours=24)
# How long a delivery being handled holds its event: Event Grid's wait for an answer. Past it the
# delivery has failed from Event Grid's side anyway, and a redelivery may take the event over.
CLAIM_LEASE = dt.timedelta(seconds=30)


class EventStatus(StrEnum):
    PROCESSED = "processed"  # the vault was read and judged
    DUPLICATE = "duplicate"  # its event id was handled already: no GET, no message
    IN_PROGRESS = "in-progress"  # another delivery of the same id is being handled: retried later
    GONE = "gone"  # ARM said 404: the vault disappeared (KV302)
    OUT_OF_SCOPE = "out-of-scope"  # outside the configured subscriptions: never read
    ERROR = "error"  # the vault could not be read


class EventRetry(KvmonError):
    """Raised by the Functions shell so Event Grid delivers the event(s) again."""


@dataclass(frozen=True)
class ChangeOutcome:
    change: VaultChange
    status: EventStatus
    scan_id: str | None = None
    findings: tuple[Finding, ...] = ()
    changes: tuple[FindingChange, ...] = ()
    errors: tuple[ScanError, ...] = ()
    transient: bool = False  # an error a redelivery may not meet again

    @property
    def handled(self) -> bool:
        return self.status in (EventStatus.PROCESSED, EventStatus.GONE)


@dataclass
class HandledEvents:
    results: list[ChangeOutcome] = field(default_factory=list)

    @property
    def retry(self) -> bool:
        """Some change failed on a transient fault: the delivery should be failed and retried."""
        return any(result.transient for result in self.results)

    def raise_for_retry(self) -> None:
        """Raise ``EventRetry`` naming the transient faults when a change met one: the shell that
        ran the handler fails the delivery, and Event Grid delivers the event again."""
        if self.retry:
            errors = "; ".join(e.message for r in self.results if r.transient for e in r.errors)
            raise EventRetry(
                f"the vault could not be read, Event Grid will deliver the event again: {errors}"
            )

    def count(self, status: EventStatus) -> int:
        return sum(1 for result in self.results if result.status is status)


def handle_delivery(
    payload: Any,
    *,
    source: str,
    subscriptions: Collection[str],
    runtime: Callable[[], ScanRuntime],
    follow_up: Callable[[VaultChange], None] | None = None,
) -> HandledEvents:
    """One delivery as a Functions trigger receives it (``parse_payload`` reads every form): each
    vault change in it handled (``handle_vault_changes``, with the runtime ``runtime`` builds, only
    when there is one) and logged. A body that is no event payload is logged and dropped, since a
    redelivery would be the same body. The trigger's shell calls ``raise_for_retry`` on the result."""
    try:
        batch = parse_payload(payload, source=source, subscriptions=subscriptions)
    except EventPayloadError as exc:
        log.error("%s dropped: %s", source, exc)
        return HandledEvents()
    for ignored in batch.outcomes:
        if ignored.change is None:
            log.info("event %s %s: %s", ignored.event_id, ignored.verdict, ignored.reason)
    for account in batch.accounts:
        # run_scan reads vaults by id only: the timer's next scan reads the account.
        log.warning(
            "storage account %s changed (%s): not read by the event path yet, the next scan judges it",
            account.vault_id,
            ", ".join(change.event_id for change in account.changes),
        )
    if not batch.changes:
        return HandledEvents()
    handled = handle_vault_changes(
        batch.changes, runtime(), subscriptions=tuple(subscriptions), follow_up=follow_up
    )
    for result in handled.results:
        log.info(
            "event %s %s %s: %d findings, %d changes, %d errors",
            result.change.event_id,
            result.status,
            result.change.vault_id,
            len(result.findings),
            len(result.changes),
            len(result.errors),
        )
    return handled


def handle_vault_changes(
    changes: Sequence[VaultChange],
    runtime: ScanRuntime,
    *,
    subscriptions: tuple[str, ...],
    probe: bool = False,
    notify: bool = True,
    follow_up: Callable[[VaultChange], None] | None = None,
    retention: dt.timedelta = EVENT_RETENTION,
) -> HandledEvents:
    """Handle each change in order (see the module's docstring). ``subscriptions``: the configured
    scope; ``probe``: probe the vault in this scan (the event path leaves it to ``follow_up``,
    called for each vault read, so the first message does not wait for probes). Raises
    ``StoreUnavailable`` when the store is down."""
    outcome = HandledEvents()
    now = runtime.clock()
    store = runtime.store
    handled_here: set[str] = set()
    for change in changes:
        if change.event_id in handled_here:
            outcome.results.append(ChangeOutcome(change=change, status=EventStatus.DUPLICATE))
            continue
        holder = None
        if store is not None:
            # The claim is the check: it creates the record unless a live one exists, and then
            # returns that one (handled already: a duplicate; being handled: in progress). Two
            # deliveries of one id at the same instant: one claims it, the other is told so.
            claim = ProcessedEvent(
                event_id=change.event_id,
                vault_key=change.vault_key,
                outcome=EventStatus.IN_PROGRESS.value,
                processed_at=now,
                expires_at=now + CLAIM_LEASE,
            )
            holder = store.claim_processed_event(claim, now=now)
        if holder is not None:
            outcome.results.append(_held(change, holder))
            continue
        result = _handle_one(change, runtime, subscriptions=subscriptions, probe=probe, notify=notify)
        outcome.results.append(result)
        if not result.handled:
            if store is not None:
                store.release_processed_event(change.event_id)  # a redelivery handles it afresh
            continue
        handled_here.add(change.event_id)
        if runtime.store is not None:
            processed_at = runtime.clock()
            runtime.store.record_processed_events(
                [
                    ProcessedEvent(
                        event_id=change.event_id,
                        vault_key=change.vault_key,
                        outcome=result.status.value,
                        processed_at=processed_at,
                        expires_at=processed_at + retention,
                        scan_id=result.scan_id,
                    )
                ]
            )
        if follow_up is not None and result.status is EventStatus.PROCESSED:
            follow_up(change)
    return outcome


def _held(change: VaultChange, holder: ProcessedEvent) -> ChangeOutcome:
    """A change whose event id has a live record: handled already (a duplicate), or being handled
    by another delivery right now, which may yet fail: this delivery asks to come again."""
    if holder.outcome != EventStatus.IN_PROGRESS.value:
        return ChangeOutcome(change=change, status=EventStatus.DUPLICATE)
    waiting = (
        f"event {change.event_id} is being handled by another delivery until {holder.expires_at.isoformat()}"
    )
    return ChangeOutcome(
        change=change,
        status=EventStatus.IN_PROGRESS,
        errors=(ScanError(ErrorSource.EVENT, change.vault_id, waiting),),
        transient=True,
    )


def _handle_one(
    change: VaultChange, runtime: ScanRuntime, *, subscriptions: tuple[str, ...], probe: bool, notify: bool
) -> ChangeOutcome:
    try:
        request = ScanRequest(
            subscriptions=subscriptions,
            vault_id=change.vault_id,
            probe=probe,
            logs=False,  # a Log Analytics query takes seconds; the timer's scan reads the logs
            notify=notify,
            trigger=ScanTrigger.EVENT,
            actors={change.vault_key: change.actor},
        )
    except InputError as exc:
        return ChangeOutcome(
            change=change,
            status=EventStatus.OUT_OF_SCOPE,
            errors=(ScanError(ErrorSource.EVENT, change.vault_id, str(exc)),),
        )
    report = run_scan(request, runtime).report
    read_errors = tuple(
        e for e in report.errors if e.source is ErrorSource.ARM and e.scope == change.vault_id
    )
    if report.postures:
        status = EventStatus.PROCESSED
    elif read_errors:
        status = EventStatus.ERROR
    else:
        status = EventStatus.GONE
    return ChangeOutcome(
        change=change,
        status=status,
        scan_id=report.scan_id,
        findings=tuple(report.findings),
        changes=tuple(report.changes),
        errors=tuple(report.errors),
        transient=status is EventStatus.ERROR and any(_transient(error) for error in read_errors),
    )


def _transient(error: ScanError) -> bool:
    """Throttling (429), ARM's own faults (5xx) and faults with no answer at all (a timeout, a
    dropped connection: no code) may pass; a refusal (401, 403) or a missing scope (404) will not."""
    if error.code is None:
        return True
    return error.code == "429" or error.code.startswith("5")


__all__ = [
    "CLAIM_LEASE",
    "EVENT_RETENTION",
    "ChangeOutcome",
    "EventRetry",
    "EventStatus",
    "HandledEvents",
    "handle_delivery",
    "handle_vault_changes",
]
