"""The reader through the real ``LogsQueryClient`` against the lab's Log Analytics over HTTPS."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, Estate
from lab.http import Fault, RecordingServer, Response
from lab.loganalytics import LogAnalyticsEmulator
from lab.tls import LabPki
from monitor.azure_origin import origin_of
from monitor.model import Outcome
from monitor.netaddr import AddressSpace
from monitor.sources.keyvault.kql import build_summary_query
from monitor.sources.logs import SUMMARY_COLUMNS, LogsReader
from tests.logs.conftest import APP_ID, NOW, OBJECT_ID, SE_CLIENT, WINDOW, WORKSPACE, record

Reader = Callable[..., LogsReader]


def read(reader: LogsReader, *vaults: dict[str, Any], window: tuple[dt.datetime, dt.datetime] = WINDOW):
    return reader.read_workspace(
        WORKSPACE, [v["id"] for v in vaults], window_start=window[0], window_end=window[1]
    )


def test_one_request_per_workspace_in_the_sdk_format(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    result = read(make_reader(timeout_s=40), se_vault, pl_vault)

    assert result.errors == []
    assert emulator.server.request_counts["query"] == 1
    (sent,) = emulator.queries
    assert sent.workspace_id == WORKSPACE
    assert (
        sent.query
        == result.query
        == build_summary_query(table="auto", vault_ids=[se_vault["id"], pl_vault["id"]])
    )
    # azure-monitor-query 2.x: start/end in ISO 8601 with milliseconds, server wait in Prefer: the
    # query's limit on the server is 10 s inside the 40 s kvmon waits for the answer.
    assert sent.timespan == "2025-03-14T11:00:00.000Z/2025-03-14T12:00:00.000Z"
    assert sent.prefer == "wait=30"
    assert set(result.evidence) == {se_vault["id"].lower(), pl_vault["id"].lower()}


def test_summarises_by_caller_outcome_and_identity(
    make_reader: Reader, estate: Estate, se_vault: dict
) -> None:
    subnet = estate.subnet_named("serviceEndpoint").id
    for minutes in (50, 40, 30):
        estate.record(record(se_vault, caller=INTERNET_CLIENT, minutes_ago=minutes))
    estate.record(record(se_vault, caller=SE_CLIENT, auth_type="Subnet", subnet_id=subnet, minutes_ago=20))
    estate.record(record(se_vault, caller="127.30.0.9", status=403, authorized=False, minutes_ago=5))

    evidence = read(make_reader(), se_vault).evidence[se_vault["id"].lower()]

    assert evidence.complete and evidence.notes == ()
    assert evidence.workspace_id == WORKSPACE and (evidence.window_start, evidence.window_end) == WINDOW
    assert [a.caller_address for a in evidence.activity] == [
        INTERNET_CLIENT,
        SE_CLIENT,
        "127.30.0.9",
    ]  # busiest first
    internet, private, refused = evidence.activity
    assert (internet.caller_address, internet.count, internet.outcome) == (
        INTERNET_CLIENT,
        3,
        Outcome.ADMITTED,
    )
    assert internet.address_private is False
    assert internet.first_seen == NOW - dt.timedelta(minutes=50)
    assert internet.last_seen == NOW - dt.timedelta(minutes=30)
    assert internet.identity == APP_ID and internet.identity_object_id == OBJECT_ID
    assert (refused.caller_address, refused.outcome) == ("127.30.0.9", Outcome.REFUSED_FIREWALL)
    assert private.caller_address == SE_CLIENT and private.address_private is True
    assert private.address_auth_type == "Subnet" and private.subnet_id == subnet.lower()
    assert internet.vault_id == se_vault["id"].lower()


def test_the_address_space_passed_in_decides_private_or_public(
    make_reader: Reader, estate: Estate, se_vault: dict
) -> None:
    estate.record(record(se_vault, caller=SE_CLIENT))
    (activity,) = (
        read(make_reader(address_space=AddressSpace()), se_vault).evidence[se_vault["id"].lower()].activity
    )
    assert activity.address_private is False  # 127.10.0.0/16 is private only in the lab's space


@pytest.mark.parametrize(
    ("status", "authorized", "outcome"),
    [
        (200, True, Outcome.ADMITTED),
        (404, True, Outcome.ADMITTED),  # the network let it in; the secret does not exist
        (403, True, Outcome.ADMITTED),  # the network let it in; RBAC said no
        (403, False, Outcome.REFUSED_FIREWALL),
        (401, True, Outcome.REFUSED_OTHER),  # authentication comes before the network check
        (429, True, Outcome.REFUSED_OTHER),
        (500, True, Outcome.REFUSED_OTHER),
    ],
)
def test_outcome_derivation(
    make_reader: Reader, estate: Estate, se_vault: dict, status: int, authorized: bool, outcome: Outcome
) -> None:
    estate.record(record(se_vault, status=status, authorized=authorized))
    (activity,) = read(make_reader(), se_vault).evidence[se_vault["id"].lower()].activity
    assert activity.outcome is outcome


def test_rows_outside_the_window_are_not_counted(make_reader: Reader, estate: Estate, se_vault: dict) -> None:
    estate.record(record(se_vault, minutes_ago=90))
    estate.record(record(se_vault, minutes_ago=-5))
    estate.record(record(se_vault, minutes_ago=30))
    (activity,) = read(make_reader(), se_vault).evidence[se_vault["id"].lower()].activity
    assert activity.count == 1


def test_only_vaults_whose_diagnostic_setting_points_at_the_workspace(
    make_reader: Reader, estate: Estate, se_vault: dict
) -> None:
    other = estate.add_vault(
        subscription_id=se_vault["id"].split("/")[2],
        resource_group="rg-other",
        name="kv-elsewhere",
        workspace_id="99999999-0000-0000-0000-000000000000",
    )
    estate.record(record(other))
    estate.record(record(se_vault))
    result = read(make_reader(), se_vault, other)
    assert len(result.evidence[se_vault["id"].lower()].activity) == 1
    assert result.evidence[other["id"].lower()].activity == ()
    assert result.evidence[other["id"].lower()].complete


@pytest.mark.parametrize("configured", ["auto", "AZKVAuditLogs", "AzureDiagnostics"])
@pytest.mark.parametrize("held", [("AZKVAuditLogs",), ("AzureDiagnostics",)])
def test_both_table_shapes(
    make_reader: Reader,
    emulator: LogAnalyticsEmulator,
    estate: Estate,
    se_vault: dict,
    configured: str,
    held: tuple[str, ...],
) -> None:
    emulator.set_tables(WORKSPACE, *held)
    estate.record(record(se_vault, caller=SE_CLIENT, auth_type="Subnet", subnet_id="/SUB/ID"))
    estate.record(record(se_vault, caller=INTERNET_CLIENT, status=403, authorized=False))
    result = read(make_reader(table=configured), se_vault)
    evidence = result.evidence[se_vault["id"].lower()]
    if configured not in ("auto", *held):
        # The configured table does not exist: the service's semantic error, recorded, never silent.
        assert not evidence.complete and evidence.activity == ()
        (error,) = result.errors
        assert error.source == "logs" and error.scope == WORKSPACE and error.code == "400"
        assert "Failed to resolve table" in error.message
        assert evidence.notes == (f"evidence incomplete: {error.message}",)
        return
    assert result.errors == [] and evidence.complete
    assert result.source_tables == held
    outcomes = {(a.caller_address, a.outcome, a.address_auth_type, a.subnet_id) for a in evidence.activity}
    assert outcomes == {
        (SE_CLIENT, Outcome.ADMITTED, "Subnet", "/sub/id"),
        (INTERNET_CLIENT, Outcome.REFUSED_FIREWALL, None, None),
    }
    assert all(a.identity == APP_ID and a.identity_object_id == OBJECT_ID for a in evidence.activity)


def test_a_vault_in_both_tables_is_counted_once(
    make_reader: Reader, emulator: LogAnalyticsEmulator, estate: Estate, se_vault: dict
) -> None:
    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", "AzureDiagnostics")
    estate.record(record(se_vault))
    result = read(make_reader(), se_vault)
    evidence = result.evidence[se_vault["id"].lower()]
    assert result.source_tables == ("AZKVAuditLogs", "AzureDiagnostics")
    (activity,) = evidence.activity
    assert activity.count == 1
    assert evidence.complete
    assert evidence.notes == (
        "rows in both AZKVAuditLogs and AzureDiagnostics (two diagnostic settings?): counted AZKVAuditLogs only",
    )


@pytest.mark.parametrize("held", [(), ("AZKVAuditLogs",)])
def test_an_empty_workspace_is_complete_evidence_of_no_rows(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, held: tuple[str, ...]
) -> None:
    emulator.set_tables(WORKSPACE, *held)  # () : no diagnostic setting ever wrote here
    result = read(make_reader(), se_vault)
    evidence = result.evidence[se_vault["id"].lower()]
    assert result.errors == []
    assert evidence.complete and evidence.activity == () and evidence.notes == ()


def test_null_columns(make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict) -> None:
    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", "AzureDiagnostics")
    vault_id = se_vault["id"].lower()
    at = NOW - dt.timedelta(minutes=10)
    # Status null: the signature decides. Identity null: no identity.
    emulator.ingest(
        WORKSPACE,
        "AZKVAuditLogs",
        {
            "TimeGenerated": at,
            "_ResourceId": vault_id,
            "CallerIpAddress": "127.30.0.21",
            "HttpStatusCode": None,
            "ResultSignature": "Forbidden",
            "IsAddressAuthorized": False,
            "Identity": None,
        },
    )
    # A 403 whose address authorisation is unknown is not called a firewall refusal.
    emulator.ingest(
        WORKSPACE,
        "AZKVAuditLogs",
        {
            "TimeGenerated": at,
            "_ResourceId": vault_id,
            "CallerIpAddress": "127.30.0.22",
            "HttpStatusCode": 403,
            "IsAddressAuthorized": None,
            "Identity": {
                "claim": {"http://schemas.microsoft.com/identity/claims/objectidentifier": OBJECT_ID}
            },
        },
    )
    # No caller address at all, no status, no signature.
    emulator.ingest(WORKSPACE, "AZKVAuditLogs", {"TimeGenerated": at, "_ResourceId": vault_id})
    result = read(make_reader(), se_vault)
    evidence = result.evidence[vault_id]
    assert result.errors == [] and evidence.complete
    by_caller = {a.caller_address: a for a in evidence.activity}
    assert by_caller["127.30.0.21"].outcome is Outcome.REFUSED_FIREWALL
    assert by_caller["127.30.0.21"].identity is None and by_caller["127.30.0.21"].identity_object_id is None
    assert by_caller["127.30.0.22"].outcome is Outcome.REFUSED_OTHER
    assert by_caller["127.30.0.22"].identity == OBJECT_ID  # no app id: the object id
    assert by_caller[""].outcome is Outcome.REFUSED_OTHER and by_caller[""].address_private is False
    assert by_caller[""].address_auth_type is None and by_caller[""].subnet_id is None


def test_null_columns_in_the_legacy_table(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.set_tables(WORKSPACE, "AzureDiagnostics")
    emulator.ingest(
        WORKSPACE,
        "AzureDiagnostics",
        {
            "TimeGenerated": NOW - dt.timedelta(minutes=3),
            "ResourceProvider": "MICROSOFT.KEYVAULT",
            "_ResourceId": se_vault["id"].lower(),
            "CallerIPAddress": "127.30.0.23",
            "httpStatusCode_d": None,
            "ResultSignature": "OK",
            "isAddressAuthorized_b": None,
            "identity_claim_appid_g": None,
            "identity_claim_oid_g": OBJECT_ID,
            "trustedService_s": "AzureBackup",
        },
    )
    emulator.ingest(
        WORKSPACE,
        "AzureDiagnostics",
        {  # another provider's row is not Key Vault's
            "TimeGenerated": NOW - dt.timedelta(minutes=3),
            "ResourceProvider": "MICROSOFT.STORAGE",
            "_ResourceId": se_vault["id"].lower(),
            "CallerIPAddress": "127.30.0.24",
        },
    )
    (activity,) = read(make_reader(), se_vault).evidence[se_vault["id"].lower()].activity
    assert (activity.caller_address, activity.outcome) == ("127.30.0.23", Outcome.ADMITTED)
    assert activity.address_auth_type == "TrustedService"
    assert activity.identity == OBJECT_ID


def test_partial_result_marks_every_vault_incomplete(
    make_reader: Reader, emulator: LogAnalyticsEmulator, estate: Estate, se_vault: dict, pl_vault: dict
) -> None:
    estate.record(record(se_vault, caller="127.30.0.31"))
    estate.record(record(se_vault, caller="127.30.0.32"))
    emulator.set_partial(WORKSPACE, "Query result set has exceeded the internal data size limit", keep_rows=1)
    result = read(make_reader(), se_vault, pl_vault)
    (error,) = result.errors
    assert (error.source, error.scope, error.code) == ("logs", WORKSPACE, "PartialError")
    assert "internal data size limit" in error.message
    for evidence in result.evidence.values():
        assert not evidence.complete
        assert evidence.notes == (f"evidence incomplete: {error.message}",)
    assert len(result.evidence[se_vault["id"].lower()].activity) == 1  # what did arrive is kept


def test_throttled_then_answered(
    make_reader: Reader, emulator: LogAnalyticsEmulator, estate: Estate, se_vault: dict
) -> None:
    estate.record(record(se_vault))
    emulator.server.inject(
        r"/query$", Fault(status=429, headers={"Retry-After": "0.05"}, body=_throttled(), times=2)
    )
    result = read(make_reader(retry_total=3), se_vault)
    assert result.errors == []
    assert result.evidence[se_vault["id"].lower()].complete
    assert emulator.server.request_counts["query"] == 3


def test_throttled_after_retries_is_a_scan_error(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    emulator.server.inject(
        r"/query$", Fault(status=429, headers={"Retry-After": "0.05"}, body=_throttled(), times=0)
    )
    result = read(make_reader(retry_total=2), se_vault, pl_vault)
    assert emulator.server.request_counts["query"] == 3
    (error,) = result.errors
    assert (error.source, error.scope, error.code) == ("logs", WORKSPACE, "429")
    assert error.message.startswith("throttled by Log Analytics (HTTP 429) after retries")
    assert set(result.evidence) == {se_vault["id"].lower(), pl_vault["id"].lower()}
    for evidence in result.evidence.values():
        assert not evidence.complete and evidence.activity == ()
        assert evidence.notes == (f"evidence incomplete: {error.message}",)


def test_a_timeout_is_a_scan_error(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.server.inject(r"/query$", Fault(delay_s=1.5, status=200, times=0))
    result = read(make_reader(timeout_s=0.3, retry_total=0), se_vault)
    (error,) = result.errors
    assert error.source == "logs" and error.message.startswith("query failed")
    assert not result.evidence[se_vault["id"].lower()].complete


def test_a_reset_connection_is_a_scan_error(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.server.inject(r"/query$", Fault(reset=True, times=0))
    result = read(make_reader(retry_total=0), se_vault)
    (error,) = result.errors
    assert error.source == "logs" and error.scope == WORKSPACE
    assert result.evidence[se_vault["id"].lower()].notes[0].startswith("evidence incomplete: query failed")


@pytest.mark.parametrize("status", [307, 308])
def test_a_query_redirected_to_another_host_is_never_sent_there(
    make_reader: Reader, emulator: LogAnalyticsEmulator, estate: Estate, se_vault: dict, status: int
) -> None:
    estate.record(record(se_vault, caller=INTERNET_CLIENT))
    # The other host would answer "no rows": complete evidence of nothing, which would resolve KV201.
    with RecordingServer(answer=Response(200, _answer(list(SUMMARY_COLUMNS), []))) as elsewhere:
        emulator.server.inject(r"/query$", Fault(status=status, redirect_to=elsewhere.url, times=0))
        result = read(make_reader(), se_vault)

    assert elsewhere.requests == [] and elsewhere.authorization_headers == []
    (error,) = result.errors
    assert (error.source, error.scope, error.code) == ("logs", WORKSPACE, "RedirectElsewhere")
    assert error.message.startswith(
        f"query stopped: refused to follow a redirect to {origin_of(elsewhere.url)}"
    )
    evidence = result.evidence[se_vault["id"].lower()]
    assert not evidence.complete and evidence.activity == ()
    assert emulator.server.request_counts["query"] == 1  # refused, not retried


@pytest.mark.parametrize("body", ["", "<html><body>502 Bad Gateway</body></html>"])
def test_an_answer_that_is_not_json_is_a_scan_error(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, body: str
) -> None:
    emulator.server.inject(r"/query$", Fault(status=502, body=body, times=0))
    result = read(make_reader(retry_total=0), se_vault)
    (error,) = result.errors
    assert (error.code, error.message) == ("502", "query failed (HTTP 502): the answer was not JSON")
    assert not result.evidence[se_vault["id"].lower()].complete


def test_a_token_never_appears_in_errors(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.server.inject(
        r"/query$",
        Fault(
            status=403,
            body={
                "error": {
                    "code": "InsufficientAccessError",
                    "message": "The provided credentials have insufficient access to perform the requested operation",
                }
            },
            times=0,
        ),
    )
    result = read(make_reader(retry_total=0), se_vault)
    (error,) = result.errors
    assert error.code == "403" and "InsufficientAccessError" in error.message
    token = LabCredential().get_token("https://api.loganalytics.io/.default").token
    assert token.split(".")[0] not in error.message and "Bearer" not in error.message


def test_every_vault_in_the_workspace_when_none_is_named(
    make_reader: Reader, estate: Estate, se_vault: dict, pl_vault: dict
) -> None:
    estate.record(record(se_vault))
    estate.record(record(pl_vault, caller="127.10.2.5", auth_type="PrivateEndpoint"))
    result = make_reader().read_workspace(WORKSPACE, [], window_start=WINDOW[0], window_end=WINDOW[1])
    assert set(result.evidence) == {se_vault["id"].lower(), pl_vault["id"].lower()}
    assert "KvmonVaults" not in result.query


def test_bad_arguments_are_refused_before_any_request(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    reader = make_reader()
    with pytest.raises(ValueError, match="not a Key Vault resource id"):
        reader.read_workspace(
            WORKSPACE,
            ['/subscriptions/x/resourceGroups/rg") | take 1 //'],
            window_start=WINDOW[0],
            window_end=WINDOW[1],
        )
    with pytest.raises(ValueError, match="empty window"):
        reader.read_workspace(WORKSPACE, [se_vault["id"]], window_start=WINDOW[1], window_end=WINDOW[0])
    with pytest.raises(ValueError, match="timezone-aware"):
        reader.read_workspace(
            WORKSPACE, [se_vault["id"]], window_start=dt.datetime(2025, 1, 1), window_end=WINDOW[1]
        )
    with pytest.raises(ValueError, match="table"):
        make_reader(table="AzureActivity")
    assert emulator.server.total_requests == 0


def test_the_emulator_answers_only_kvmons_query(
    emulator: LogAnalyticsEmulator, pki: LabPki, se_vault: dict
) -> None:
    """Honesty check: the lab evaluates kvmon's query shape, nothing else."""
    client = LogsQueryClient(
        LabCredential(), endpoint=emulator.endpoint, connection_verify=pki.ca_path, retry_total=0
    )
    tampered = build_summary_query(table="auto", vault_ids=[se_vault["id"]]).replace(
        "count()", "dcount(CallerAddress)"
    )
    with client:
        for query in ("AZKVAuditLogs | take 10", tampered):
            with pytest.raises(HttpResponseError) as caught:
                client.query_workspace(WORKSPACE, query, timespan=WINDOW)
            assert caught.value.status_code == 400
            assert caught.value.error is not None and caught.value.error.code == "BadArgumentError"


def _throttled() -> dict[str, Any]:
    return {"error": {"code": "TooManyRequests", "message": "Too many requests. Retry after the delay."}}


def _answer(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in columns], "rows": rows}
        ]
    }


def test_an_answer_of_another_shape_is_not_read_as_evidence(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict
) -> None:
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer([("Count", "long")], [[3]])))
    result = read(make_reader(), se_vault)
    (error,) = result.errors
    assert error.code == "UnexpectedResult" and "lacks columns SourceTable, VaultId" in error.message
    evidence = result.evidence[se_vault["id"].lower()]
    assert not evidence.complete and evidence.activity == ()


def test_an_unreadable_row_makes_only_its_vault_incomplete(
    make_reader: Reader, emulator: LogAnalyticsEmulator, se_vault: dict, pl_vault: dict
) -> None:
    def row(vault: dict, outcome: str) -> list[Any]:
        when = "2025-03-14T11:30:00Z"
        return [
            "AZKVAuditLogs",
            vault["id"].lower(),
            INTERNET_CLIENT,
            "",
            "",
            outcome,
            APP_ID,
            "",
            2,
            when,
            when,
        ]

    rows = [row(se_vault, "admitted"), row(pl_vault, "admitted"), row(pl_vault, "teleported")]
    emulator.server.inject(r"/query$", Fault(status=200, body=_answer(list(SUMMARY_COLUMNS), rows)))
    result = read(make_reader(), se_vault, pl_vault)
    (error,) = result.errors
    assert error.message == "1 result row(s) could not be read"
    se, pl = result.evidence[se_vault["id"].lower()], result.evidence[pl_vault["id"].lower()]
    assert se.complete and len(se.activity) == 1
    assert not pl.complete and len(pl.activity) == 1
    assert pl.notes == ("evidence incomplete: 1 result row(s) could not be read",)
