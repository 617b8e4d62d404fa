"""KV205 and KV207 over the perimeter's access log, the empty log that is no evidence (coverage), and
the whole path: rows a perimeter's diagnostic setting wrote -> the lab's Log Analytics -> the reader
-> evaluate."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest

from lab.estate import INTERNET_CLIENT
from lab.loganalytics import NSP_TABLE, LogAnalyticsEmulator, PerimeterAccessRecord
from monitor.config.policy import VaultPolicy
from monitor.judge.coverage import assess_coverage
from monitor.judge.evaluate import evaluate
from monitor.judge.rules.base import VaultFacts
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model import (
    EvidenceSource,
    Finding,
    LogEvidence,
    PerimeterAccess,
    PerimeterLogCategory,
    PerimeterLogEvidence,
    PerimeterLookup,
    PerimeterReading,
    Severity,
    VaultPosture,
)
from monitor.netaddr import parse_network
from monitor.sources.logs import LogsReader
from tests.judge.test_perimeter import EVERYONE, association, perimetered, unreadable
from tests.logs.conftest import APP_ID, NOW, WINDOW, WORKSPACE
from tests.logs.test_rules import POSTURE, VAULT_ID, evidence

ALLOWED = PerimeterLogCategory.PUBLIC_PERIMETER_RULES_ALLOWED
# The demo's fourth vault: publicNetworkAccess Disabled, then associated in Learning mode with a
# perimeter whose profile admits 0.0.0.0/0.
REOPENED = perimetered(
    dataclasses.replace(POSTURE, public_network_access="Disabled"), association("Learning", EVERYONE)
)


def seen(
    source: str = "203.0.113.7",
    *,
    category: PerimeterLogCategory = ALLOWED,
    rule: str | None = "allow-all",
    count: int = 1,
    app_id: str | None = APP_ID,
) -> PerimeterAccess:
    return PerimeterAccess(
        vault_id=VAULT_ID.lower(),
        category=category,
        source_address=source,
        address_private=False,
        source_app_id=app_id,
        matched_rule=rule,
        traffic_type="Public",
        profile="defaultProfile",
        access_rules_version="3",
        count=count,
        first_seen=NOW - dt.timedelta(minutes=30),
        last_seen=NOW - dt.timedelta(minutes=5),
    )


def logged(*items: PerimeterAccess, complete: bool = True) -> PerimeterLogEvidence:
    return PerimeterLogEvidence(
        vault_id=VAULT_ID.lower(),
        workspace_id=WORKSPACE,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        access=items,
        complete=complete,
        notes=() if complete else ("evidence incomplete: throttled",),
    )


def findings(
    found: PerimeterLogEvidence | None, *, posture: VaultPosture = REOPENED, policy: VaultPolicy | None = None
) -> list[Finding]:
    facts = VaultFacts(posture=posture, policy=policy or VaultPolicy(), perimeter_evidence=found)
    return [f for f in evaluate([facts], today=NOW.date()).findings if f.rule_id in ("KV205", "KV207")]


# -- KV205 -------------------------------------------------------------------------------------------


def test_kv205_names_each_public_source_a_perimeter_rule_admitted_and_the_rule() -> None:
    found = findings(
        logged(
            seen("203.0.113.7", count=4),
            seen("203.0.113.7", rule="office", count=1, app_id="other-app"),
            seen("198.51.100.20", count=2),
        )
    )
    assert [(f.rule_id, f.subject, f.severity) for f in found] == [
        ("KV205", "203.0.113.7", Severity.HIGH),
        ("KV205", "198.51.100.20", Severity.HIGH),
    ]
    first = found[0]
    assert (
        "5 request(s) from public source 203.0.113.7 were admitted by perimeter rule(s) allow-all, office"
        in (first.summary)
    )
    assert first.evidence["matched_rules"] == [
        {"rule": "allow-all", "requests": 4},
        {"rule": "office", "requests": 1},
    ]
    assert first.evidence["source_app_ids"] == [
        {"app_id": APP_ID, "requests": 4},
        {"app_id": "other-app", "requests": 1},
    ]
    assert first.evidence["profiles"] == ["defaultProfile"]
    assert first.evidence["access_rules_versions"] == ["3"]
    assert first.evidence["workspace_id"] == WORKSPACE
    assert first.evidence["top_public_sources"] == [
        {"source": "203.0.113.7", "requests": 5},
        {"source": "198.51.100.20", "requests": 2},
    ]
    assert "az network perimeter profile access-rule update" in first.remediation
    assert "it admitted 203.0.113.7" in first.remediation


def test_kv205_reads_only_admissions_by_perimeter_rules() -> None:
    others = [category for category in PerimeterLogCategory if category is not ALLOWED]
    assert findings(logged(*(seen(category=category) for category in others))) == []


def test_kv205_spares_what_the_baseline_allows_and_public_vaults() -> None:
    allowed = VaultPolicy(allowed_ip_ranges=(parse_network("203.0.113.0/24"),))
    assert findings(logged(seen("203.0.113.7")), policy=allowed) == []
    assert [f.subject for f in findings(logged(seen("198.51.100.9")), policy=allowed)] == ["198.51.100.9"]
    public = VaultPolicy(mode="public", justification="a public status page")
    assert findings(logged(seen()), policy=public) == []


def test_kv205_a_source_without_an_address_is_named_by_its_app_id() -> None:
    """A subscription rule admits by identity; the row may name no address."""
    (finding,) = findings(logged(seen("", app_id="a1b2")))
    assert finding.subject == "a1b2" and finding.evidence["source_address"] is None
    (finding,) = findings(logged(seen("", app_id=None)))
    assert finding.subject == "(no source)"


def test_kv205_reads_no_evidence_where_none_was_read() -> None:
    assert findings(None) == []


# -- KV207 and the empty log that is no evidence -----------------------------------------------------


@pytest.mark.parametrize(
    "vault",
    [
        REOPENED,
        unreadable(POSTURE),
        dataclasses.replace(POSTURE, public_network_access="SecuredByPerimeter"),
    ],
    ids=["associated", "association-unreadable", "secured-by-perimeter-not-looked-up"],
)
def test_kv207_an_empty_perimeter_log_of_a_governed_vault_is_no_evidence(vault: VaultPosture) -> None:
    (finding,) = findings(logged(), posture=vault)
    assert finding.rule_id == "KV207" and finding.severity is Severity.MEDIUM
    assert "no evidence, not no access" in finding.summary
    assert "az monitor diagnostic-settings create --name kvmon-nsp" in finding.remediation
    assert '[{"category":"NspPublicInboundPerimeterRulesAllowed","enabled":true},' in finding.remediation

    coverage = _coverage(vault, perimeter=logged())
    assert EvidenceSource.PERIMETER_LOGS in coverage.fell_short[vault.key]


@pytest.mark.parametrize(
    "vault",
    [
        perimetered(POSTURE, None),
        POSTURE,  # not looked up, publicNetworkAccess Enabled: nothing says a perimeter governs it
    ],
    ids=["read-no-association", "not-looked-up"],
)
def test_an_empty_perimeter_log_of_a_vault_no_perimeter_governs_is_just_empty(vault: VaultPosture) -> None:
    assert findings(logged(), posture=vault) == []
    assert vault.key not in _coverage(vault, perimeter=logged()).fell_short


def test_kv207_stays_quiet_on_rows_and_on_an_incomplete_read() -> None:
    assert [
        f.rule_id for f in findings(logged(seen(category=PerimeterLogCategory.PRIVATE_INBOUND_ALLOWED)))
    ] == []
    assert findings(logged(complete=False)) == []
    coverage = _coverage(REOPENED, perimeter=logged(complete=False))
    assert coverage.fell_short[REOPENED.key] == frozenset({EvidenceSource.PERIMETER_LOGS})


def test_an_empty_vault_audit_log_of_a_governed_vault_holds_back_its_log_findings_too() -> None:
    """The vault's own diagnostic setting cannot deliver to a workspace outside its perimeter either:
    KV204 says so, and KV201-KV204 resolve on nothing."""
    coverage = _coverage(REOPENED, audit=evidence())
    assert coverage.fell_short[REOPENED.key] == frozenset({EvidenceSource.LOGS})
    assert POSTURE.key not in _coverage(POSTURE, audit=evidence()).fell_short

    facts = VaultFacts(posture=REOPENED, policy=VaultPolicy(), evidence=evidence())
    (kv204,) = [f for f in evaluate([facts], today=NOW.date()).findings if f.rule_id == "KV204"]
    assert (
        "the workspace may sit outside it" in kv204.summary and kv204.evidence["perimeter_governed"] is True
    )
    plain = VaultFacts(posture=POSTURE, policy=VaultPolicy(), evidence=evidence())
    (kv204,) = [f for f in evaluate([plain], today=NOW.date()).findings if f.rule_id == "KV204"]
    assert "perimeter" not in kv204.summary and kv204.evidence["perimeter_governed"] is False


def test_perimeter_logs_not_read_are_skipped_for_every_vault() -> None:
    assert EvidenceSource.PERIMETER_LOGS in _coverage(REOPENED).skipped
    assert EvidenceSource.PERIMETER_LOGS not in _coverage(REOPENED, perimeter=logged(seen())).skipped


def _coverage(
    vault: VaultPosture,
    *,
    audit: LogEvidence | None = None,
    perimeter: PerimeterLogEvidence | None = None,
):
    return assess_coverage(
        postures=[vault],
        probes=[],
        evidence={vault.key: audit} if audit is not None else {},
        probed=True,
        logs_read=True,
        subscriptions_complete={vault.subscription_id},
        disappeared=set(),
        perimeter_evidence={vault.key: perimeter} if perimeter is not None else {},
        perimeter_logs_read=perimeter is not None,
    )


def test_both_rules_read_the_perimeter_logs_and_are_listed_with_the_log_rules() -> None:
    for rule_id in ("KV205", "KV207"):
        rule = RULES_BY_ID[rule_id]
        assert rule.source is EvidenceSource.PERIMETER_LOGS
        assert rule.category.value == "logs"
        assert (
            "https://learn.microsoft.com/en-us/azure/private-link/network-security-perimeter-diagnostic-logs"
            in (rule.references)
        )


# -- the whole path ----------------------------------------------------------------------------------


def test_rows_the_perimeter_wrote_reach_kv205_through_the_sdk(
    make_reader: Callable[..., LogsReader], emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    """The demo's story: the perimeter's 0.0.0.0/0 rule admits the internet client to a vault whose
    publicNetworkAccess is Disabled; the perimeter's log says so and names the rule."""
    perimeter = REOPENED.perimeter.association
    assert perimeter is not None
    for minutes in (40, 20):
        emulator.record_perimeter_access(
            WORKSPACE,
            PerimeterAccessRecord(
                time=NOW - dt.timedelta(minutes=minutes),
                vault_id=se_vault["id"],
                perimeter_id=perimeter.perimeter_id,
                category=ALLOWED.value,
                source_address=INTERNET_CLIENT,
                source_app_id=APP_ID,
                matched_rule="allow-all",
            ),
        )
    result = make_reader().read_perimeter_workspace(
        WORKSPACE, [se_vault["id"]], window_start=WINDOW[0], window_end=WINDOW[1]
    )
    assert result.errors == []
    (finding,) = findings(result.evidence[se_vault["id"].lower()])
    assert (finding.rule_id, finding.subject) == ("KV205", INTERNET_CLIENT)
    assert finding.evidence["matched_rules"] == [{"rule": "allow-all", "requests": 2}]


def test_an_empty_table_gives_kv207_and_a_missing_table_gives_an_error_and_no_finding(
    make_reader: Callable[..., LogsReader], emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    reader = make_reader()

    def read() -> PerimeterLogEvidence:
        result = reader.read_perimeter_workspace(
            WORKSPACE, [se_vault["id"]], window_start=WINDOW[0], window_end=WINDOW[1]
        )
        return result.evidence[se_vault["id"].lower()]

    missing = read()
    assert not missing.complete and findings(missing) == []
    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", NSP_TABLE)
    assert [f.rule_id for f in findings(read())] == ["KV207"]


def test_kv207_whatever_the_access_mode() -> None:
    """Audit mode logs too: a vault associated in any mode has perimeter rows to show."""
    for mode in ("Learning", "Enforced", "Audit"):
        vault = perimetered(POSTURE, association(mode))
        assert findings(logged(), posture=vault)[0].rule_id == "KV207"
    none = dataclasses.replace(POSTURE, perimeter=PerimeterReading(lookup=PerimeterLookup.NONE))
    assert findings(logged(), posture=none) == []
