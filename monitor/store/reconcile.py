"""The finding lifecycle written to the store: ``monitor.judge.lifecycle.reconcile`` decides, this
reads what it needs and writes what it decided.

Optimistic concurrency: when another scan wrote a record first, the rest are re-read and
reconciled again, and only the changes this scan won are returned, so two scans running at once
never announce the same change twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

from monitor.judge.lifecycle import change_order, reconcile
from monitor.model import EvidenceSource, Finding, FindingChange, FindingRecord
from monitor.store.base import ConcurrentUpdate, Store, StoreUnavailable
from monitor.store.codec import storable_finding


def apply_reconciliation(
    store: Store,
    *,
    current: Sequence[Finding],
    assessed_vaults: AbstractSet[str],
    complete_vaults: AbstractSet[str],
    now: dt.datetime,
    incomplete_sources: Mapping[str, AbstractSet[EvidenceSource]] | None = None,
    scan_id: str = "",
    max_attempts: int = 5,
    previous: Mapping[str, FindingRecord] | None = None,
) -> list[FindingChange]:
    """Reconcile against the store and write the result; the changes this scan won, in order.

    The findings are compared in the form the store gives them back (evidence trimmed, texts
    capped), so an over-long evidence does not look changed on every scan. On
    ``ConcurrentUpdate`` the records that did get written stay written (their changes are this
    scan's); the rest are re-read and reconciled again, so a change another scan already made is
    not repeated. Raises ``StoreUnavailable`` if the records keep changing. ``previous``: every
    stored record of the assessed vaults and of the vaults ``current`` names, as the caller read
    them already (for the first attempt; a retry reads them again).
    """
    storable = [storable_finding(finding) for finding in current]
    vault_keys = {key.lower() for key in assessed_vaults} | {f.vault_id.lower() for f in storable}
    won: list[FindingChange] = []
    for _ in range(max_attempts):
        if previous is None:
            previous = store.load_findings(vault_keys=vault_keys)
        plan = reconcile(
            previous=previous,
            current=storable,
            assessed_vaults=assessed_vaults,
            complete_vaults=complete_vaults,
            now=now,
            incomplete_sources=incomplete_sources,
        )
        try:
            store.save_findings(plan.records)
        except ConcurrentUpdate as conflict:
            won.extend(c for c in plan.changes if c.finding.id not in conflict.conflicting_ids)
            previous = None
            continue
        won.extend(plan.changes)
        store.mark_findings_seen(plan.seen_vaults, seen_at=now, scan_id=scan_id)
        return sorted(won, key=change_order)
    raise StoreUnavailable(f"findings kept changing under this scan after {max_attempts} attempts")
