"""Coverage: which vaults a scan assessed, which completely, and which sources fell short for each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

from monitor.judge.coverage import Coverage, SourceReading, SourceState, assess_coverage, vault_sources
from monitor.model import (
    DataPlaneStep,
    EvidenceSource,
    LogEvidence,
    PerimeterLogEvidence,
    PerimeterLookup,
    PerimeterReading,
    ProbeResult,
    VaultPosture,
    Verdict,
)
from tests.store.helpers import SUB_A, SUB_B, T0, posture

APP = posture("kv-app")
DATA = posture("kv-data")
OTHER = posture("kv-other", subscription=SUB_B)
GONE = posture("kv-gone").key
CONFIGURATION, PROBES, LOGS = EvidenceSource.CONFIGURATION, EvidenceSource.PROBES, EvidenceSource.LOGS


def probe(vault: VaultPosture, verdict: Verdict, *, vantage: str = "internet") -> ProbeResult:
    return ProbeResult(
        vault_name=vault.name.upper(),  # names compare case-insensitively
        vantage=vantage,
        hostname=f"{vault.name}.vault.azure.net",
        started_at=T0,
        data_plane=DataPlaneStep(verdict=verdict),
    )


def logs(vault: VaultPosture, *, complete: bool) -> LogEvidence:
    return LogEvidence(
        vault_id=vault.key,
        workspace_id="workspace-1",
        window_start=T0 - dt.timedelta(hours=1),
        window_end=T0,
        complete=complete,
    )


def cover(
    postures: Sequence[VaultPosture] = (APP, DATA),
    *,
    probes: Sequence[ProbeResult] = (),
    evidence: Sequence[LogEvidence] = (),
    probed: bool = True,
    logs_read: bool = True,
    subscriptions_complete: AbstractSet[str] = frozenset({SUB_A, SUB_B}),
    disappeared: AbstractSet[str] = frozenset(),
    vantages: Sequence[str] = (),
    perimeter_evidence: Sequence[PerimeterLogEvidence] = (),
    perimeter_logs_read: bool = True,
) -> Coverage:
    by_vault: Mapping[str, LogEvidence] = {found.vault_id: found for found in evidence}
    return assess_coverage(
        postures=postures,
        probes=probes,
        evidence=by_vault,
        probed=probed,
        logs_read=logs_read,
        subscriptions_complete=subscriptions_complete,
        disappeared=disappeared,
        vantages=vantages,
        perimeter_evidence={found.vault_id: found for found in perimeter_evidence},
        perimeter_logs_read=perimeter_logs_read,
    )


def test_every_source_answered_for_every_listed_vault() -> None:
    coverage = cover(
        probes=[probe(APP, Verdict.REFUSED_FIREWALL), probe(DATA, Verdict.ADMITTED)],
        evidence=[logs(APP, complete=True), logs(DATA, complete=True)],
    )
    assert coverage.assessed == coverage.complete == {APP.key, DATA.key}
    assert coverage.fell_short == {} and coverage.skipped == frozenset()
    assert coverage.incomplete_sources == {APP.key: frozenset(), DATA.key: frozenset()}


def test_a_blind_probe_holds_back_probe_findings_of_that_vault_only() -> None:
    for blind in (Verdict.ERROR, Verdict.UNREACHABLE):
        coverage = cover(
            probes=[
                probe(APP, Verdict.REFUSED_FIREWALL, vantage="internet"),
                probe(APP, blind, vantage="hub"),  # one blind vantage point is enough
                probe(DATA, Verdict.ADMITTED),
            ]
        )
        assert coverage.fell_short == {APP.key: {PROBES}}
        assert coverage.incomplete_sources == {APP.key: {PROBES}, DATA.key: frozenset()}
        assert coverage.complete == {APP.key, DATA.key}  # blindness is per source, not per vault


def test_a_vantage_point_that_gave_no_answer_is_blind() -> None:
    silent = ProbeResult(
        vault_name=APP.name,
        vantage="hub",
        hostname="kv-app.vault.azure.net",
        started_at=T0,
        vantage_error="timed out",
    )
    assert cover(probes=[silent]).fell_short == {APP.key: {PROBES}}


def test_incomplete_logs_hold_back_log_findings_of_that_vault() -> None:
    coverage = cover(evidence=[logs(APP, complete=False), logs(DATA, complete=True)])
    assert coverage.fell_short == {APP.key: {LOGS}}
    assert coverage.incomplete_sources[DATA.key] == frozenset()


def perimeter_logs(vault: VaultPosture, *, complete: bool) -> PerimeterLogEvidence:
    return PerimeterLogEvidence(
        vault_id=vault.key,
        workspace_id="workspace-nsp",
        window_start=T0 - dt.timedelta(hours=1),
        window_end=T0,
        complete=complete,
    )


def test_the_perimeters_logs_answer_on_their_own() -> None:
    """An incomplete NSPAccessLogs read holds back KV205/KV207 (PERIMETER_LOGS), not the vault's own
    log findings; not reading them at all skips them for every vault."""
    coverage = cover(
        evidence=[logs(APP, complete=True), logs(DATA, complete=True)],
        perimeter_evidence=[perimeter_logs(APP, complete=False), perimeter_logs(DATA, complete=True)],
    )
    assert coverage.fell_short == {APP.key: {EvidenceSource.PERIMETER_LOGS}}
    assert cover(perimeter_logs_read=False).skipped == {EvidenceSource.PERIMETER_LOGS}


def test_configuration_read_with_problems_holds_back_configuration() -> None:
    unreadable = posture("kv-app", problems=("networkAcls.defaultAction: unknown value 'Maybe'",))
    coverage = cover([unreadable, DATA], probes=[probe(unreadable, Verdict.ERROR)])
    assert coverage.fell_short == {APP.key: {CONFIGURATION, PROBES}}


def test_an_unreadable_perimeter_association_holds_back_configuration() -> None:
    unread = replace(
        APP, perimeter=PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="AuthorizationFailed")
    )
    assert cover([unread, DATA]).fell_short == {APP.key: {CONFIGURATION}}


def test_a_subscription_not_fully_listed_makes_its_vaults_assessed_but_not_complete() -> None:
    coverage = cover([APP, DATA, OTHER], subscriptions_complete={SUB_B})
    assert coverage.assessed == {APP.key, DATA.key, OTHER.key}
    assert coverage.complete == {OTHER.key}


def test_subscriptions_compare_case_insensitively() -> None:
    assert cover(subscriptions_complete={SUB_A.upper()}).complete == {APP.key, DATA.key}


def test_a_disappeared_vault_is_assessed_and_complete() -> None:
    coverage = cover(disappeared={GONE.upper()}, probed=False)
    assert GONE in coverage.assessed and GONE in coverage.complete
    # Only what no stage read is missing for it: its other findings resolve.
    assert coverage.incomplete_sources[GONE] == {PROBES}
    assert GONE not in coverage.fell_short


def test_a_skipped_source_is_missing_for_every_vault_but_falls_short_for_none() -> None:
    no_probes = cover(probed=False, evidence=[logs(APP, complete=False)])
    assert no_probes.skipped == {PROBES}
    assert no_probes.incomplete_sources == {APP.key: {PROBES, LOGS}, DATA.key: {PROBES}}
    assert no_probes.fell_short == {APP.key: {LOGS}}  # the report marks only what fell short

    nothing_read = cover(probed=False, logs_read=False)
    assert nothing_read.skipped == {PROBES, LOGS}
    assert nothing_read.incomplete_sources == {APP.key: {PROBES, LOGS}, DATA.key: {PROBES, LOGS}}


def test_no_vault_listed_covers_nothing() -> None:
    coverage = cover([], subscriptions_complete=set())
    assert coverage.assessed == coverage.complete == frozenset()
    assert coverage.incomplete_sources == {}


def test_a_vantage_point_probed_from_that_gave_a_vault_no_result_is_blind() -> None:
    coverage = cover(
        probes=[
            probe(APP, Verdict.REFUSED_FIREWALL, vantage="internet"),
            probe(DATA, Verdict.ADMITTED, vantage="internet"),
            probe(DATA, Verdict.ADMITTED, vantage="hub"),
        ],
        vantages=["internet", "hub"],
    )
    assert coverage.fell_short == {APP.key: {PROBES}}


def test_vault_sources_say_why_each_source_fell_short() -> None:
    garbled = replace(
        posture("kv-app", problems=("properties missing",)),
        perimeter=PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="AuthorizationFailed"),
    )
    failed = replace(probe(garbled, Verdict.ERROR, vantage="hub"), vantage_error="timed out")
    sources = vault_sources(
        garbled,
        probes=[failed],
        vantages=["internet", "hub"],
        evidence=replace(logs(garbled, complete=False), notes=("evidence incomplete: partial",)),
        probed=True,
        logs_read=True,
    )
    assert sources.configuration == SourceReading(SourceState.INCOMPLETE, ("properties missing",))
    assert sources.perimeter == SourceReading(
        SourceState.INCOMPLETE, ("perimeter association unreadable: AuthorizationFailed",)
    )
    assert sources.probes == SourceReading(
        SourceState.INCOMPLETE,
        ("internet: no result", "hub: error, the vantage point did not answer: timed out"),
    )
    assert sources.logs == SourceReading(SourceState.INCOMPLETE, ("evidence incomplete: partial",))
    assert not sources.complete and sources.fell_short == {CONFIGURATION, PROBES, LOGS}


def test_vault_sources_not_read_are_said_and_leave_the_vault_complete() -> None:
    sources = vault_sources(
        APP, probes=[], vantages=["internet"], evidence=None, probed=False, logs_read=False
    )
    assert [(name, reading.state) for name, reading in sources.readings()] == [
        ("configuration", SourceState.COMPLETE),
        ("perimeter", SourceState.NOT_READ),  # no perimeter reader ran
        ("probes", SourceState.NOT_READ),
        ("logs", SourceState.NOT_READ),
        ("perimeter_logs", SourceState.NOT_READ),
    ]
    assert sources.complete and sources.fell_short == frozenset()
