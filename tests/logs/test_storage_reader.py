"""The storage access-log read (``StorageBlobLogs`` and its siblings) through the real
``LogsQueryClient`` against the lab's Log Analytics over HTTPS: rows a storage service's diagnostic
setting wrote (``record_storage_request``) or raw rows (``ingest``), summarised per account by table,
caller, outcome, status and identity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT
from lab.http import Fault
from lab.loganalytics import LogAnalyticsEmulator, StorageRequestRecord, storage_caller
from lab.tls import LabPki
from monitor.model import ErrorSource, Outcome
from monitor.sources.logs import STORAGE_SUMMARY_COLUMNS, LogsReader
from monitor.sources.storage.kql import build_storage_query
from tests.logs.conftest import APP_ID, NOW, OBJECT_ID, SE_CLIENT, WINDOW, WORKSPACE

Reader = Callable[..., LogsReader]

_RG = "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough"
ACCOUNT = f"{_RG}/providers/Microsoft.Storage/storageAccounts/stsedemo"
OTHER = f"{_RG}/providers/Microsoft.Storage/storageAccounts/stpldemo"


def request(
    account: str = ACCOUNT,
    *,
    caller: str = f"{INTERNET_CLIENT}:51234",
    status: str = "200",
    text: str = "Success",
    table: str = "StorageBlobLogs",
    minutes_ago: float = 10,
    **fields: Any,
) -> StorageRequestRecord:
    return StorageRequestRecord(
        time=NOW - dt.timedelta(minutes=minutes_ago),
        account_id=account,
        table=table,
        caller_address=caller,
        status_code=status,
        status_text=text,
        requester_app_id=APP_ID,
        requester_object_id=OBJECT_ID,
        client_request_id="kvmon-probe-0001",
        uri=f"https://{account.rsplit('/', 1)[1]}.blob.core.windows.net/probe/x?sv=2024&sig=SECRET",
        **fields,
    )


def read(reader: LogsReader, *accounts: str, workspace: str = WORKSPACE):
    return reader.read_storage_workspace(
        workspace, list(accounts or (ACCOUNT,)), window_start=WINDOW[0], window_end=WINDOW[1]
    )


def test_one_request_per_workspace_with_kvmons_storage_query(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    emulator.record_storage_request(WORKSPACE, request())
    emulator.record_storage_request(WORKSPACE, request(OTHER, table="StorageQueueLogs"))
    result = read(make_reader(), ACCOUNT, OTHER)
    assert result.errors == []
    (sent,) = emulator.queries
    assert sent.query == build_storage_query(account_ids=[ACCOUNT, OTHER]) == result.query
    assert result.source_tables == ("StorageBlobLogs", "StorageQueueLogs")
    (activity,) = result.evidence[ACCOUNT.lower()].activity
    assert activity.account_id == ACCOUNT.lower()
    assert activity.caller_address == INTERNET_CLIENT  # the port stripped
    assert not activity.address_private
    assert (activity.outcome, activity.status_code, activity.status_text) == (
        Outcome.ADMITTED,
        "200",
        "Success",
    )
    assert (activity.identity, activity.identity_object_id) == (APP_ID, OBJECT_ID)
    assert (activity.authentication_type, activity.tls_version) == ("OAuth", "TLS 1.2")
    assert activity.sample_client_request_id == "kvmon-probe-0001"
    # The SAS signature in the Uri's query string never leaves the workspace.
    assert activity.sample_uri == "https://stsedemo.blob.core.windows.net/probe/x"
    assert activity.first_seen == NOW - dt.timedelta(minutes=10)
    assert result.evidence[OTHER.lower()].activity[0].source_table == "StorageQueueLogs"


@pytest.mark.parametrize(
    ("status", "text", "outcome"),
    [
        ("403", "AuthorizationFailure", Outcome.REFUSED_FIREWALL),
        ("403", "authorizationfailure", Outcome.REFUSED_FIREWALL),
        ("403", "AuthorizationPermissionMismatch", Outcome.ADMITTED),
        ("404", "BlobNotFound", Outcome.ADMITTED),
        ("403", "AuthenticationFailed", Outcome.REFUSED_OTHER),
        ("403", "KeyBasedAuthenticationNotPermitted", Outcome.REFUSED_OTHER),
        ("401", "NoAuthenticationInformation", Outcome.REFUSED_OTHER),
        ("429", "ServerBusy", Outcome.REFUSED_OTHER),
        ("503", "ServerBusy", Outcome.REFUSED_OTHER),
        ("Unknown", "ClientOtherError", Outcome.REFUSED_OTHER),
        ("", "", Outcome.REFUSED_OTHER),
    ],
)
def test_the_outcome_comes_from_the_status_and_its_text(
    make_reader: Reader, emulator: LogAnalyticsEmulator, status: str, text: str, outcome: Outcome
) -> None:
    emulator.record_storage_request(WORKSPACE, request(status=status, text=text))
    (activity,) = read(make_reader()).evidence[ACCOUNT.lower()].activity
    assert activity.outcome is outcome
    assert activity.status_code == (status or None)


@pytest.mark.parametrize(
    ("written", "address", "private"),
    [
        ("203.0.113.9:443", "203.0.113.9", False),
        ("[2001:db8::7]:50000", "2001:db8::7", False),
        ("[2001:db8::7]", "2001:db8::7", False),
        (f"{SE_CLIENT}:6000", SE_CLIENT, True),
        ("10.1.2.3", "10.1.2.3", True),
        ("2001:db8::7", "2001:db8::7", False),  # no brackets: as written
        ("", "", False),
    ],
)
def test_the_callers_port_is_stripped_and_the_address_classified(
    make_reader: Reader, emulator: LogAnalyticsEmulator, written: str, address: str, private: bool
) -> None:
    assert storage_caller(written) == address
    emulator.record_storage_request(WORKSPACE, request(caller=written))
    (activity,) = read(make_reader()).evidence[ACCOUNT.lower()].activity
    assert (activity.caller_address, activity.address_private) == (address, private)


def test_each_service_table_and_the_window_count(make_reader: Reader, emulator: LogAnalyticsEmulator) -> None:
    for table in ("StorageBlobLogs", "StorageFileLogs", "StorageTableLogs"):
        emulator.record_storage_request(WORKSPACE, request(table=table))
    emulator.record_storage_request(WORKSPACE, request(minutes_ago=3))
    emulator.record_storage_request(WORKSPACE, request(minutes_ago=90))  # before the window
    emulator.record_storage_request(WORKSPACE, request(OTHER))  # another account, not asked for
    evidence = read(make_reader()).evidence
    assert set(evidence) == {ACCOUNT.lower()}
    by_table = {a.source_table: a.count for a in evidence[ACCOUNT.lower()].activity}
    assert by_table == {"StorageBlobLogs": 2, "StorageFileLogs": 1, "StorageTableLogs": 1}
    assert evidence[ACCOUNT.lower()].activity[0].last_seen == NOW - dt.timedelta(minutes=3)


def test_a_workspace_without_storage_tables_is_complete_evidence_of_no_rows(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    """The fuzzy union answers where no storage setting ever wrote: no rows, no error (ST204 judges)."""
    result = read(make_reader())
    assert result.errors == []
    evidence = result.evidence[ACCOUNT.lower()]
    assert evidence.complete and evidence.activity == ()


def test_a_row_of_another_account_with_the_same_name_is_not_this_accounts(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    """The name filters first; the id derived from the row's service resource decides."""
    elsewhere = ACCOUNT.replace("rg-walkthrough", "rg-other")
    emulator.record_storage_request(WORKSPACE, request(elsewhere))
    assert read(make_reader()).evidence[ACCOUNT.lower()].activity == ()


def test_partial_failed_and_throttled_answers_make_the_evidence_incomplete(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    emulator.record_storage_request(WORKSPACE, request())
    emulator.set_partial(WORKSPACE, "Query result set has exceeded the internal data size limit")
    result = read(make_reader())
    (error,) = result.errors
    assert (error.source, error.code) == (ErrorSource.LOGS, "PartialError")
    evidence = result.evidence[ACCOUNT.lower()]
    assert not evidence.complete and len(evidence.activity) == 1
    assert any("exceeded the internal data size limit" in note for note in evidence.notes)

    emulator.set_partial(WORKSPACE, None)
    emulator.server.inject(
        r"/query$",
        Fault(
            status=429, headers={"Retry-After": "0.05"}, body={"error": {"code": "TooManyRequests"}}, times=0
        ),
    )
    result = read(make_reader(retry_total=1), ACCOUNT, OTHER)
    (error,) = result.errors
    assert error.code == "429" and error.message.startswith("throttled by Log Analytics")
    assert {key: e.complete for key, e in result.evidence.items()} == {
        ACCOUNT.lower(): False,
        OTHER.lower(): False,
    }


def _answer(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in columns], "rows": rows}
        ]
    }


def test_an_answer_of_another_shape_or_an_unreadable_row_is_not_evidence(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer([("Count", "long")], [[3]])))
    result = read(make_reader())
    (error,) = result.errors
    assert error.code == "UnexpectedResult" and "lacks columns SourceTable, AccountId" in error.message
    assert not result.evidence[ACCOUNT.lower()].complete

    def row(account: str, outcome: str) -> list[Any]:
        when = "2025-03-14T11:30:00Z"
        return [
            "StorageBlobLogs",
            account.lower(),
            INTERNET_CLIENT,
            outcome,
            "200",
            "Success",
            "OAuth",
            APP_ID,
            OBJECT_ID,
            "TLS 1.2",
            2,
            when,
            when,
            "id",
            "/x",
        ]

    rows = [row(ACCOUNT, "admitted"), row(OTHER, "teleported")]
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer(list(STORAGE_SUMMARY_COLUMNS), rows)))
    result = read(make_reader(), ACCOUNT, OTHER)
    (error,) = result.errors
    assert "1 result row(s) could not be read" in error.message
    assert result.evidence[ACCOUNT.lower()].complete
    assert not result.evidence[OTHER.lower()].complete


def test_account_ids_are_validated_before_any_query(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    reader = make_reader()
    for bad in ([], ["/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one"]):
        with pytest.raises(ValueError):
            reader.read_storage_workspace(WORKSPACE, bad, window_start=WINDOW[0], window_end=WINDOW[1])
    assert emulator.queries == []


def test_the_emulator_answers_only_kvmons_storage_query(emulator: LogAnalyticsEmulator, pki: LabPki) -> None:
    """Honesty check: the lab evaluates kvmon's query, nothing else that reads the tables."""
    client = LogsQueryClient(
        LabCredential(), endpoint=emulator.endpoint, connection_verify=pki.ca_path, retry_total=0
    )
    tampered = build_storage_query(account_ids=[ACCOUNT]).replace("code == 403 and", "code == 401 and", 1)
    with client:
        for query in ("StorageBlobLogs | take 10", tampered):
            with pytest.raises(HttpResponseError) as caught:
                client.query_workspace(WORKSPACE, query, timespan=WINDOW)
            assert caught.value.status_code == 400


def test_a_request_reaches_only_the_workspace_its_services_diagnostic_setting_names(
    make_reader: Reader, emulator: LogAnalyticsEmulator
) -> None:
    """Blob's setting sends here, queue's nowhere: the queue request is in no workspace."""
    emulator.send_storage_logs(ACCOUNT, WORKSPACE, tables=("StorageBlobLogs",))
    assert emulator.storage_request_served(request()) == WORKSPACE
    assert emulator.storage_request_served(request(table="StorageQueueLogs")) is None
    emulator.send_storage_logs(OTHER, "other-workspace")
    assert emulator.storage_request_served(request(OTHER, table="StorageTableLogs")) == "other-workspace"
    (activity,) = read(make_reader()).evidence[ACCOUNT.lower()].activity
    assert activity.source_table == "StorageBlobLogs"
    emulator.send_storage_logs(ACCOUNT, None)
    assert emulator.storage_request_served(request()) is None
    with pytest.raises(ValueError, match="tables must be some of"):
        emulator.send_storage_logs(ACCOUNT, WORKSPACE, tables=("AZKVAuditLogs",))
