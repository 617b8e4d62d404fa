"""What a scan covered: which vaults it assessed, which completely, and which sources fell short.

The lifecycle resolves a finding only when the scan could have seen it: its vault was assessed,
its vault's subscription listed completely (a vault missing from a partial listing proves
nothing), and the source its rule reads answered for that vault. Evidence that fell short is
never read as "the problem went away", so a timeout or partial logs never resolve anything:

- a probe that ended in an error or reached nothing (the vantage point did not answer, DNS or TCP
  timed out, TLS failed, the connection dropped) proved nothing about what the vault admits:
  probe findings of that vault stay as they were (KV102 and KV106 still report the failure);
- logs a workspace could not read completely hold back that vault's log findings; so does an empty
  log of a vault a perimeter governs (or may govern): its logs reach only workspaces inside its
  perimeter, so no rows is no evidence, never "nobody got in". The perimeter's own access log
  (``PERIMETER_LOGS``) answers on its own, by the same two tests;
- a vault whose configuration was read with problems (fields judged on Azure's defaults) holds
  back every finding of that vault: each rule judges what it sees against the configuration;
- a vault whose Network Security Perimeter association could not be read has an unknown exposure:
  its configuration findings stay as they were (KV018 reports why);
- a source no stage read (probes or logs switched off or not configured) is missing for every
  vault, but nobody's evidence fell short, so the report does not mark the vaults incomplete;
- a stored vault missing from a complete listing is gone (KV302): it is assessed completely, so
  its other findings resolve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from monitor.judge.perimeter import perimeter_may_govern
from monitor.model import (
    EvidenceSource,
    LogEvidence,
    PerimeterLogEvidence,
    PerimeterLookup,
    ProbeResult,
    VaultPosture,
    Verdict,
)

# Verdicts that say nothing about what the vault admits.
_INCONCLUSIVE = (Verdict.ERROR, Verdict.UNREACHABLE)


@dataclass(frozen=True)
class Coverage:
    """Vault keys are lower-cased resource ids."""

    assessed: frozenset[str]  # vaults this scan looked at, the disappeared ones included
    complete: frozenset[str]  # of those, the ones whose subscription listed completely
    fell_short: Mapping[str, frozenset[EvidenceSource]]  # per vault: sources that did not answer
    skipped: frozenset[EvidenceSource]  # sources no stage read this scan, for every vault

    @property
    def incomplete_sources(self) -> dict[str, frozenset[EvidenceSource]]:
        """Per assessed vault, every source whose findings may not resolve this scan."""
        return {key: self.fell_short.get(key, frozenset()) | self.skipped for key in self.assessed}


def assess_coverage(
    *,
    postures: Sequence[VaultPosture],
    probes: Sequence[ProbeResult],
    evidence: Mapping[str, LogEvidence],
    probed: bool,
    logs_read: bool,
    subscriptions_complete: AbstractSet[str],
    disappeared: AbstractSet[str],
    perimeter_evidence: Mapping[str, PerimeterLogEvidence],
    perimeter_logs_read: bool,
) -> Coverage:
    """``postures``: the vaults listed; ``probes``, ``evidence`` and ``perimeter_evidence`` (by vault
    key): what the probes, the vaults' logs and the perimeters' logs said of them; ``probed``,
    ``logs_read`` and ``perimeter_logs_read``: whether those stages ran at all;
    ``subscriptions_complete``: the subscriptions listed completely; ``disappeared``: the keys of
    stored vaults missing from a complete listing."""
    listed = {subscription.lower() for subscription in subscriptions_complete}
    gone = frozenset(key.lower() for key in disappeared)
    blind = {result.vault_name.lower() for result in probes if result.verdict in _INCONCLUSIVE}

    fell_short: dict[str, set[EvidenceSource]] = {}
    for posture in postures:
        if posture.name.lower() in blind:
            fell_short.setdefault(posture.key, set()).add(EvidenceSource.PROBES)
    governed = {posture.key for posture in postures if perimeter_may_govern(posture)}
    for key, found in evidence.items():
        if not found.complete or (not found.activity and key.lower() in governed):
            fell_short.setdefault(key.lower(), set()).add(EvidenceSource.LOGS)
    for key, seen in perimeter_evidence.items():
        if not seen.complete or (not seen.access and key.lower() in governed):
            fell_short.setdefault(key.lower(), set()).add(EvidenceSource.PERIMETER_LOGS)
    for posture in postures:
        if posture.problems or posture.perimeter.lookup == PerimeterLookup.UNREADABLE:
            fell_short.setdefault(posture.key, set()).add(EvidenceSource.CONFIGURATION)

    skipped = set()
    if not probed:
        skipped.add(EvidenceSource.PROBES)
    if not logs_read:
        skipped.add(EvidenceSource.LOGS)
    if not perimeter_logs_read:
        skipped.add(EvidenceSource.PERIMETER_LOGS)

    return Coverage(
        assessed=frozenset(posture.key for posture in postures) | gone,
        complete=frozenset(posture.key for posture in postures if posture.subscription_id.lower() in listed)
        | gone,
        fell_short={key: frozenset(sources) for key, sources in fell_short.items()},
        skipped=frozenset(skipped),
    )
