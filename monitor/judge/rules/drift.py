"""What a drift rule of any service says about a diff: one hit naming who changed what, its severity
the diff's direction. KV301 and ST301 differ only in the diff they take."""

from __future__ import annotations

from collections.abc import Iterator

from monitor.judge.drift import NetworkDiff
from monitor.judge.rules.base import Hit
from monitor.model import ChangeActor, Severity


def change_hits(diff: NetworkDiff, *, actor: ChangeActor | None) -> Iterator[Hit]:
    """Nothing when nothing changed; a change that admits anyone new (loosening, or mixed) is high,
    one that only tightens is information, kept so the history explains later findings."""
    if not diff.changes:
        return
    yield Hit(
        summary=diff.summary(actor=actor),
        evidence=diff.as_evidence(actor=actor),
        severity=Severity.HIGH if diff.loosening else Severity.INFO,
    )
