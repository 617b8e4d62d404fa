"""``kvmon logs``: the query as sent, the evidence as a table or JSON, clear usage errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from lab.credential import LabCredential
from lab.estate import INTERNET_CLIENT, LAB_PRIVATE_RANGES, Estate
from lab.http import Fault
from lab.loganalytics import LogAnalyticsEmulator, PerimeterAccessRecord
from lab.tls import LabPki
from monitor.cli import build_parser, main
from monitor.cli.logs import EXIT_INCOMPLETE, execute
from monitor.sources.keyvault.kql import PLACEHOLDER_VAULT_ID, build_summary_query
from monitor.sources.nsp_kql import HEADER, build_perimeter_query
from tests.logs.conftest import NOW, SE_CLIENT, WORKSPACE, record


def run(argv: list[str], **environ: str) -> int:
    return execute(
        build_parser("logs").parse_args(["logs", *argv]), credential=LabCredential(), now=NOW, environ=environ
    )


def lab_environ(pki: LabPki) -> dict[str, str]:
    return {"KVMON_PRIVATE_RANGES": ",".join(LAB_PRIVATE_RANGES), "KVMON_CA_BUNDLE": pki.ca_path}


@pytest.fixture(autouse=True)
def no_kvmon_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KVMON_LOGS_TABLE",
        "KVMON_LOGS_ENDPOINT",
        "KVMON_LOGS_FIRST_WINDOW",
        "KVMON_PRIVATE_RANGES",
    ):
        monkeypatch.delenv(name, raising=False)


def test_print_query_is_the_query_as_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "--print-query"]) == 0
    assert (
        capsys.readouterr().out == build_summary_query(table="auto", vault_ids=[PLACEHOLDER_VAULT_ID]) + "\n"
    )


def test_print_query_for_a_table_and_vaults(
    capsys: pytest.CaptureFixture[str], se_vault: dict[str, Any]
) -> None:
    assert main(["logs", "--print-query", "--table", "AzureDiagnostics", "--vault", se_vault["id"]]) == 0
    out = capsys.readouterr().out
    assert out == build_summary_query(table="AzureDiagnostics", vault_ids=[se_vault["id"]]) + "\n"
    assert "CallerIPAddress" in out and "AZKVAuditLogs" not in out


def test_print_query_follows_the_table_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--print-query"], KVMON_LOGS_TABLE="azkvauditlogs") == 0
    assert capsys.readouterr().out.startswith("// kvmon: Key Vault access summary (table: AZKVAuditLogs)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--workspace", WORKSPACE, "--since", "3x"],
            "--since: '3x' is not a duration; use a number and a unit, e.g. 30m, 24h or 7d",
        ),
        (["--workspace", WORKSPACE, "--since", "0h"], "--since: must be longer than zero"),
        (["--workspace", "not-a-guid"], "--workspace: 'not-a-guid' is not a workspace id (a GUID)"),
        ([], "--workspace is required (or use --print-query)"),
        (["--print-query", "--vault", "kv-se-demo"], "--vault: not a Key Vault resource id: 'kv-se-demo'"),
        (["--print-query", "--table", "AzureActivity"], "argument --table: invalid choice"),
        (
            ["--print-query", "--perimeter", "--table", "AZKVAuditLogs"],
            "--table names a Key Vault table; --perimeter reads NSPAccessLogs: give one",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["logs", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"kvmon: error: {message}")
    assert captured.err.count("\n") == 1


def test_a_bad_setting_is_a_usage_error() -> None:
    with pytest.raises(Exception, match="KVMON_LOGS_TABLE: 'Activity' is not one of"):
        run(["--print-query"], KVMON_LOGS_TABLE="Activity")


def test_json_evidence_from_the_lab(
    capsys: pytest.CaptureFixture[str],
    emulator: LogAnalyticsEmulator,
    estate: Estate,
    se_vault: dict,
    pki: LabPki,
) -> None:
    estate.record(record(se_vault, caller=SE_CLIENT, minutes_ago=20))
    estate.record(record(se_vault, caller=INTERNET_CLIENT, minutes_ago=90))  # outside --since 1h
    argv = ["--workspace", WORKSPACE, "--since", "1h", "--endpoint", emulator.endpoint, "--format", "json"]
    assert run(argv, **lab_environ(pki)) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["workspace_id"] == WORKSPACE and document["errors"] == []
    assert document["source_tables"] == ["AZKVAuditLogs"]
    (evidence,) = [e for e in document["evidence"] if e["activity"]]
    assert evidence["vault_id"] == se_vault["id"].lower()
    assert evidence["window_start"] == "2025-03-14T11:00:00Z" and evidence["complete"] is True
    (activity,) = evidence["activity"]
    assert (activity["caller_address"], activity["address_private"], activity["outcome"]) == (
        SE_CLIENT,
        True,
        "admitted",
    )
    (sent,) = emulator.queries
    assert "KvmonVaults" not in sent.query  # no --vault: every vault the workspace logs


def test_table_output_and_an_incomplete_read(
    capsys: pytest.CaptureFixture[str],
    emulator: LogAnalyticsEmulator,
    estate: Estate,
    se_vault: dict,
    pki: LabPki,
) -> None:
    estate.record(record(se_vault, caller=INTERNET_CLIENT))
    argv = [
        "--workspace",
        WORKSPACE,
        "--endpoint",
        emulator.endpoint,
        "--vault",
        se_vault["id"],
        "--table",
        "AZKVAuditLogs",
    ]
    assert run(argv, **lab_environ(pki)) == 0
    out = capsys.readouterr().out
    assert "kv-se-demo" in out and INTERNET_CLIENT in out and "public" in out and "admitted" in out

    emulator.server.inject(
        r"/query$", Fault(status=400, body={"error": {"code": "BadArgumentError", "message": "bad"}}, times=0)
    )
    assert run(argv, **lab_environ(pki)) == EXIT_INCOMPLETE
    captured = capsys.readouterr()
    assert "kv-se-demo: 2025-03-13 12:00:00Z .. 2025-03-14 12:00:00Z (incomplete)" in captured.out
    assert "nothing read" in captured.out and "evidence incomplete: query failed (HTTP 400)" in captured.out
    assert captured.err.startswith(
        f"kvmon: logs: {WORKSPACE}: query failed (HTTP 400): BadArgumentError: bad"
    )


# -- --perimeter: the perimeters' access log ---------------------------------------------------------


def test_print_query_of_the_perimeter_log(
    capsys: pytest.CaptureFixture[str], se_vault: dict[str, Any]
) -> None:
    assert main(["logs", "--print-query", "--perimeter"]) == 0
    assert capsys.readouterr().out == build_perimeter_query(vault_ids=[PLACEHOLDER_VAULT_ID]) + "\n"
    assert main(["logs", "--print-query", "--perimeter", "--vault", se_vault["id"]]) == 0
    assert capsys.readouterr().out == build_perimeter_query(vault_ids=[se_vault["id"]]) + "\n"


def test_perimeter_evidence_as_json_and_as_a_table(
    capsys: pytest.CaptureFixture[str], emulator: LogAnalyticsEmulator, se_vault: dict, pki: LabPki
) -> None:
    emulator.record_perimeter_access(
        WORKSPACE,
        PerimeterAccessRecord(
            time=NOW - dt.timedelta(minutes=10),
            vault_id=se_vault["id"],
            perimeter_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityPerimeters/nsp",
            category="NspPublicInboundPerimeterRulesAllowed",
            source_address=INTERNET_CLIENT,
            matched_rule="allow-all",
        ),
    )
    base = ["--workspace", WORKSPACE, "--endpoint", emulator.endpoint, "--perimeter"]
    assert run([*base, "--format", "json"], **lab_environ(pki)) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["table"] == "NSPAccessLogs" and document["errors"] == []
    (evidence,) = document["evidence"]
    (row,) = evidence["access"]
    assert (row["source_address"], row["category"], row["matched_rule"]) == (
        INTERNET_CLIENT,
        "NspPublicInboundPerimeterRulesAllowed",
        "allow-all",
    )
    assert all(query.query.startswith(HEADER) for query in emulator.queries)

    assert run([*base, "--vault", se_vault["id"]], **lab_environ(pki)) == 0
    out = capsys.readouterr().out
    assert "kv-se-demo (NSPAccessLogs)" in out and "allow-all" in out and INTERNET_CLIENT in out


def test_a_workspace_without_the_perimeter_log_exits_3_naming_it(
    capsys: pytest.CaptureFixture[str], emulator: LogAnalyticsEmulator, se_vault: dict, pki: LabPki
) -> None:
    argv = [
        "--workspace",
        WORKSPACE,
        "--endpoint",
        emulator.endpoint,
        "--perimeter",
        "--vault",
        se_vault["id"],
    ]
    assert run(argv, **lab_environ(pki)) == EXIT_INCOMPLETE
    captured = capsys.readouterr()
    assert "nothing read" in captured.out
    assert captured.err.startswith(
        f"kvmon: logs: {WORKSPACE}: workspace {WORKSPACE} has no NSPAccessLogs table"
    )

    emulator.set_tables(WORKSPACE, "AZKVAuditLogs", "NSPAccessLogs")
    assert run(argv, **lab_environ(pki)) == 0
    assert "no rows in the window: no evidence, not no access" in capsys.readouterr().out
