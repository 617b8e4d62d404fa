"""The perimeter access-log read (``NSPAccessLogs``) through the real ``LogsQueryClient`` against the
lab's Log Analytics over HTTPS: rows a perimeter's diagnostic setting wrote (``record_perimeter_access``)
or raw rows (``ingest``), summarised per vault by category, source and matched rule."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT
from lab.http import Fault
from lab.loganalytics import NSP_TABLE, LogAnalyticsEmulator, PerimeterAccessRecord
from lab.tls import LabPki
from monitor.model import PerimeterLogCategory
from monitor.sources.logs import NSP_TABLE_MISSING, PERIMETER_SUMMARY_COLUMNS, LogsReader
from monitor.sources.nsp_kql import build_perimeter_query
from tests.logs.conftest import APP_ID, NOW, SE_CLIENT, WINDOW, WORKSPACE

Reader = Callable[..., LogsReader]

PERIMETER = (
    "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough"
    "/providers/Microsoft.Network/networkSecurityPerimeters/nsp-walkthrough"
)
ALLOWED = PerimeterLogCategory.PUBLIC_PERIMETER_RULES_ALLOWED


def access(
    vault: dict[str, Any],
    *,
    category: PerimeterLogCategory | str = ALLOWED,
    source: str = INTERNET_CLIENT,
    rule: str = "allow-everyone",
    minutes_ago: float = 10,
    **fields: Any,
) -> PerimeterAccessRecord:
    return PerimeterAccessRecord(
        time=NOW - dt.timedelta(minutes=minutes_ago),
        vault_id=vault["id"],
        perimeter_id=PERIMETER,
        category=str(category),
        source_address=source,
        source_app_id=APP_ID,
        matched_rule=rule,
        **fields,
    )


def read(reader: LogsReader, *vaults: dict[str, Any], workspace: str = WORKSPACE):
    return reader.read_perimeter_workspace(
        workspace, [v["id"] for v in vaults], window_start=WINDOW[0], window_end=WINDOW[1]
    )


def test_one_request_per_workspace_with_kvmons_perimeter_query(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    emulator.record_perimeter_access(WORKSPACE, access(se_vault))
    result = read(make_reader(), se_vault, pl_vault)

    assert result.errors == []
    assert emulator.server.request_counts["query"] == 1
    (sent,) = emulator.queries
    assert sent.query == result.query == build_perimeter_query(vault_ids=[se_vault["id"], pl_vault["id"]])
    assert sent.timespan == "2025-03-14T11:00:00.000Z/2025-03-14T12:00:00.000Z"
    assert set(result.evidence) == {se_vault["id"].lower(), pl_vault["id"].lower()}
    (row,) = result.evidence[se_vault["id"].lower()].access
    assert (row.category, row.source_address, row.matched_rule) == (
        ALLOWED,
        INTERNET_CLIENT,
        "allow-everyone",
    )
    assert (row.source_app_id, row.traffic_type, row.profile) == (APP_ID, "Public", "defaultProfile")
    assert row.access_rules_version == "1" and row.address_private is False
    other = result.evidence[pl_vault["id"].lower()]
    assert other.complete and other.access == ()


def test_aggregated_rows_count_their_events_and_end_at_their_last(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    """Microsoft: a row without count and timeGeneratedEndTime is one event."""
    emulator.record_perimeter_access(WORKSPACE, access(se_vault, minutes_ago=50))
    emulator.record_perimeter_access(
        WORKSPACE,
        access(se_vault, minutes_ago=40, count=7, time_end=NOW - dt.timedelta(minutes=5)),
    )
    emulator.record_perimeter_access(
        WORKSPACE, access(se_vault, category=PerimeterLogCategory.PUBLIC_PERIMETER_RULES_DENIED, rule="")
    )
    evidence = read(make_reader(), se_vault).evidence[se_vault["id"].lower()]
    admitted, denied = evidence.access
    assert (admitted.category, admitted.count) == (ALLOWED, 8)
    assert admitted.first_seen == NOW - dt.timedelta(minutes=50)
    assert admitted.last_seen == NOW - dt.timedelta(minutes=5)
    assert (denied.category, denied.count, denied.matched_rule) == (
        PerimeterLogCategory.PUBLIC_PERIMETER_RULES_DENIED,
        1,
        None,
    )


def test_every_inbound_category_is_read_and_nothing_else(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    for minutes, category in enumerate(PerimeterLogCategory, start=1):
        emulator.record_perimeter_access(WORKSPACE, access(se_vault, category=category, minutes_ago=minutes))
    # Outbound decisions, another service's resource, and a row outside the window are not evidence.
    emulator.record_perimeter_access(
        WORKSPACE, access(se_vault, category="NspPublicOutboundPerimeterRulesAllowed")
    )
    storage = {
        "id": se_vault["id"].replace(
            "Microsoft.KeyVault/vaults/kv-se-demo", "Microsoft.Storage/storageAccounts/st1"
        )
    }
    emulator.record_perimeter_access(WORKSPACE, access(storage))
    emulator.record_perimeter_access(WORKSPACE, access(se_vault, minutes_ago=90))
    evidence = read(make_reader(), se_vault).evidence[se_vault["id"].lower()]
    assert {row.category for row in evidence.access} == set(PerimeterLogCategory)
    assert sum(row.count for row in evidence.access) == len(PerimeterLogCategory)


def test_raw_rows_categories_in_any_case_and_a_rule_that_is_not_json(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", NSP_TABLE)
    base = {
        "TimeGenerated": NOW - dt.timedelta(minutes=3),
        "ServiceResourceId": se_vault["id"].upper(),
        "SourceIpAddress": SE_CLIENT,
    }
    emulator.ingest(
        WORKSPACE,
        NSP_TABLE,
        {**base, "Category": "nsppublicinboundperimeterrulesallowed", "MatchedRule": "office"},
    )
    emulator.ingest(
        WORKSPACE,
        NSP_TABLE,
        {**base, "Category": "NspPrivateInboundAllowed", "MatchedRule": json.dumps({"other": 1})},
    )
    evidence = read(make_reader(), se_vault).evidence[se_vault["id"].lower()]
    rules = {row.category: row.matched_rule for row in evidence.access}
    assert rules == {ALLOWED: "office", PerimeterLogCategory.PRIVATE_INBOUND_ALLOWED: '{"other": 1}'}
    for row in evidence.access:
        assert row.vault_id == se_vault["id"].lower()
        assert row.address_private is True  # the reader's address space: 127.10.0.0/16 is the lab's VNet
        assert (row.source_app_id, row.profile, row.access_rules_version) == (None, None, None)


def test_a_workspace_without_the_table_is_a_named_scan_error(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    """Not silence, not "nobody got in": the table is missing, so nothing can be said."""
    result = read(make_reader(), se_vault, pl_vault)
    (error,) = result.errors
    assert (error.source, error.scope, error.code) == ("logs", WORKSPACE, NSP_TABLE_MISSING)
    assert f"workspace {WORKSPACE} has no NSPAccessLogs table" in error.message
    assert "diagnostic setting" in error.message
    for evidence in result.evidence.values():
        assert not evidence.complete and evidence.access == ()
        assert evidence.notes == (f"evidence incomplete: {error.message}",)


def test_another_bad_request_is_not_taken_for_a_missing_table(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.server.inject(
        r"/query$",
        Fault(
            status=400,
            body={
                "error": {
                    "code": "BadArgumentError",
                    "message": "The request had some invalid properties",
                    "innererror": {"code": "SemanticError", "message": "A semantic error occurred."},
                }
            },
            times=0,
        ),
    )
    (error,) = read(make_reader(retry_total=0), se_vault).errors
    assert error.code == "400" and "semantic error" in error.message


def test_an_empty_table_is_complete_evidence_of_no_rows(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    """The reader reports what the workspace holds; whether no rows is evidence is the judge's call
    (``monitor.judge.coverage``: for a perimeter-governed vault it is none)."""
    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", NSP_TABLE)
    result = read(make_reader(), se_vault)
    assert result.errors == []
    evidence = result.evidence[se_vault["id"].lower()]
    assert evidence.complete and evidence.access == ()


def test_partial_and_throttled_answers_make_the_evidence_incomplete(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.record_perimeter_access(WORKSPACE, access(se_vault))
    emulator.set_partial(WORKSPACE, "Query result set has exceeded the internal data size limit")
    result = read(make_reader(), se_vault)
    (error,) = result.errors
    assert error.code == "PartialError"
    evidence = result.evidence[se_vault["id"].lower()]
    assert not evidence.complete and len(evidence.access) == 1

    emulator.set_partial(WORKSPACE, None)
    emulator.server.inject(
        r"/query$",
        Fault(
            status=429, headers={"Retry-After": "0.05"}, body={"error": {"code": "TooManyRequests"}}, times=0
        ),
    )
    result = read(make_reader(retry_total=1), se_vault)
    (error,) = result.errors
    assert error.code == "429" and error.message.startswith("throttled by Log Analytics")
    assert not result.evidence[se_vault["id"].lower()].complete


def test_every_vault_with_perimeter_rows_when_none_is_named(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    emulator.record_perimeter_access(WORKSPACE, access(se_vault))
    emulator.record_perimeter_access(
        WORKSPACE, access(pl_vault, category=PerimeterLogCategory.PRIVATE_INBOUND_ALLOWED)
    )
    result = make_reader().read_perimeter_workspace(
        WORKSPACE, [], window_start=WINDOW[0], window_end=WINDOW[1]
    )
    assert set(result.evidence) == {se_vault["id"].lower(), pl_vault["id"].lower()}
    assert "KvmonVaults" not in result.query


def _answer(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in columns], "rows": rows}
        ]
    }


def test_an_answer_of_another_shape_or_an_unreadable_row_is_not_evidence(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer([("Count", "long")], [[3]])))
    result = read(make_reader(), se_vault)
    (error,) = result.errors
    assert error.code == "UnexpectedResult" and "lacks columns VaultId, Category" in error.message
    assert not result.evidence[se_vault["id"].lower()].complete

    def row(vault: dict, category: str) -> list[Any]:
        when = "2025-03-14T11:30:00Z"
        return [
            vault["id"].lower(),
            category,
            INTERNET_CLIENT,
            APP_ID,
            "r",
            "Public",
            "p",
            "1",
            2,
            when,
            when,
        ]

    rows = [row(se_vault, ALLOWED.value), row(pl_vault, "NspTeleportAllowed")]
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer(list(PERIMETER_SUMMARY_COLUMNS), rows)))
    result = read(make_reader(), se_vault, pl_vault)
    (error,) = result.errors
    assert error.code == "UnexpectedResult" and "1 result row(s) could not be read" in error.message
    assert result.evidence[se_vault["id"].lower()].complete
    assert not result.evidence[pl_vault["id"].lower()].complete


def test_the_emulator_answers_only_kvmons_perimeter_query(
    emulator: LogAnalyticsEmulator, pki: LabPki, se_vault: dict
) -> None:
    """Honesty check: the lab evaluates kvmon's query, nothing else that reads the table."""
    emulator.set_tables(WORKSPACE, NSP_TABLE)
    client = LogsQueryClient(
        LabCredential(), endpoint=emulator.endpoint, connection_verify=pki.ca_path, retry_total=0
    )
    tampered = build_perimeter_query(vault_ids=[se_vault["id"]]).replace(
        "sum(coalesce(Events, 1))", "count()"
    )
    with client:
        for query in ("NSPAccessLogs | take 10", tampered):
            with pytest.raises(HttpResponseError) as caught:
                client.query_workspace(WORKSPACE, query, timespan=WINDOW)
            assert caught.value.status_code == 400


def test_a_decision_reaches_only_the_workspace_the_perimeters_diagnostic_setting_names(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    """The lab's data plane reports every decision; without a diagnostic setting (or to a workspace
    outside the perimeter) it goes nowhere, and the workspace answers as one that never got a row."""
    assert emulator.perimeter_decided(access(se_vault)) is None
    (error,) = read(make_reader(), se_vault).errors
    assert error.code == NSP_TABLE_MISSING

    emulator.send_perimeter_logs(PERIMETER.upper(), WORKSPACE)
    assert emulator.perimeter_decided(access(se_vault)) == WORKSPACE
    result = read(make_reader(), se_vault)
    assert result.errors == [] and [row.count for row in result.evidence[se_vault["id"].lower()].access] == [
        1
    ]

    emulator.send_perimeter_logs(PERIMETER, None)
    assert emulator.perimeter_decided(access(se_vault)) is None
    assert [row.count for row in read(make_reader(), se_vault).evidence[se_vault["id"].lower()].access] == [1]
