"""Every KQL query kvmon can send, checked by Microsoft's Kusto language service.

``check_kql.js`` loads ``@kusto/language-service-next`` under node with schemas of
``AZKVAuditLogs`` and ``AzureDiagnostics`` (columns from AZURE-NOTES.md, types from Azure
Monitor's table reference), of ``NSPAccessLogs`` and of the four storage tables (Azure Monitor's
table reference, cited in the checker). Any diagnostic fails, and the result's schema must be the
one the reader parses (``SUMMARY_COLUMNS``, ``PERIMETER_SUMMARY_COLUMNS``, ``STORAGE_SUMMARY_COLUMNS``).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.cli.logs import execute
from monitor.sources.keyvault.kql import PLACEHOLDER_VAULT_ID, TABLE_CHOICES, build_summary_query
from monitor.sources.logs import PERIMETER_SUMMARY_COLUMNS, STORAGE_SUMMARY_COLUMNS, SUMMARY_COLUMNS
from monitor.sources.nsp_kql import build_perimeter_query
from monitor.sources.storage.kql import build_storage_query

pytestmark = pytest.mark.node

HERE = Path(__file__).resolve().parent
CHECKER = HERE / "check_kql.js"
PACKAGE = HERE.parent.parent / "node_modules" / "@kusto" / "language-service-next"

ONE_VAULT = (
    "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough/providers/Microsoft.KeyVault/vaults/kv-se-demo",
)
SEVERAL_VAULTS = (
    *ONE_VAULT,
    "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough/providers/Microsoft.KeyVault/vaults/kv-pl-demo",
    "/subscriptions/1d3f0000-aaaa-4bbb-8ccc-0123456789ab/resourceGroups/Team_(Prod).1/providers/Microsoft.KeyVault/vaults/kv-team-prod-01",
    "/SUBSCRIPTIONS/1D3F0000-AAAA-4BBB-8CCC-0123456789AB/RESOURCEGROUPS/RG-ÉQUIPE/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KVUPPER",
)
_NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
VAULT_LISTS = {
    "all-vaults": (),
    "one": ONE_VAULT,
    "several": SEVERAL_VAULTS,
    "placeholder": (PLACEHOLDER_VAULT_ID,),
}


def run_checker(queries: dict[str, str], *, schema: str | None = None) -> dict[str, dict]:
    """Each query (name -> text) as the Kusto language service checks it: its diagnostics and
    result columns, by name. ``schema``: the checker's other schema (``resourcegraph``) instead of
    Log Analytics'."""
    if shutil.which("node") is None or not PACKAGE.is_dir():
        pytest.skip("node and @kusto/language-service-next are needed (make install)")
    items = [{"name": name, "query": text} for name, text in queries.items()]
    done = subprocess.run(
        ["node", str(CHECKER), *([schema] if schema else [])],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {item["name"]: item for item in json.loads(done.stdout)}


def every_query() -> dict[str, str]:
    return {
        f"{table}/{shape}": build_summary_query(table=table, vault_ids=ids)
        for table in TABLE_CHOICES
        for shape, ids in VAULT_LISTS.items()
    }


def test_every_query_kvmon_can_send_is_valid_kql_with_the_summary_schema() -> None:
    queries = every_query()
    results = run_checker(queries)
    assert set(results) == set(queries)
    for name, result in results.items():
        assert result["diagnostics"] == [], f"{name}: {result['diagnostics']}\n{queries[name]}"
        assert [tuple(c) for c in result["columns"]] == list(SUMMARY_COLUMNS), name


def test_the_print_query_output_is_checked_too(capsys: pytest.CaptureFixture[str]) -> None:
    printed = {}
    for table in TABLE_CHOICES:
        args = build_parser("logs").parse_args(["logs", "--print-query", "--table", table])
        assert execute(args, credential=None, now=_NOW, environ={}) == 0
        printed[f"cli/{table}"] = capsys.readouterr().out.rstrip("\n")
    args = build_parser("logs").parse_args(["logs", "--print-query", "--perimeter"])
    assert execute(args, credential=None, now=_NOW, environ={}) == 0
    printed["cli/perimeter"] = capsys.readouterr().out.rstrip("\n")
    results = run_checker(printed)
    for name, result in results.items():
        assert result["diagnostics"] == [], f"{name}: {result['diagnostics']}"


# (table, text in kvmon's query, replacement, the name the error must mention or None)
MUTATIONS = (
    # The legacy spelling in the resource-specific table: the classic mistake, and the reverse.
    ("auto", "CallerAddress = CallerIpAddress", "CallerAddress = CallerIPAddress", "CallerIPAddress"),
    ("auto", "CallerAddress = CallerIPAddress", "CallerAddress = CallerIpAddress", "CallerIpAddress"),
    (
        "AzureDiagnostics",
        "(addrAuthType_s), addrAuthType_s",
        "(AddressAuthorizationType), addrAuthType_s",
        "AddressAuthorizationType",
    ),
    (
        "auto",
        "tostring(identity_claim_appid_g)",
        "tostring(identity_claim_appId_g)",
        "identity_claim_appId_g",
    ),
    ("AZKVAuditLogs", "AZKVAuditLogs\n", "AZKVAuditLog\n", "AZKVAuditLog"),
    ("AZKVAuditLogs", "KvmonOutcome(HttpStatusCode,", "KvmonOutcome(StatusCode,", "StatusCode"),
    ("auto", "| summarize Requests", "| summarise Requests", None),
)


def test_the_checker_catches_what_it_must() -> None:
    """Controls: the same check fails on a wrong column, table, argument or operator."""
    broken = {}
    for index, (table, text, replacement, _) in enumerate(MUTATIONS):
        original = build_summary_query(table=table, vault_ids=ONE_VAULT)
        assert text in original, text
        broken[str(index)] = original.replace(text, replacement, 1)
    results = run_checker(broken)
    for index, (_, _, replacement, expected) in enumerate(MUTATIONS):
        errors = [d for d in results[str(index)]["diagnostics"] if d["severity"] == "Error"]
        assert errors, replacement
        if expected is not None:
            assert any(expected in d["message"] for d in errors), errors


# -- the perimeter's access log (NSPAccessLogs) ------------------------------------------------------


def perimeter_queries() -> dict[str, str]:
    return {f"nsp/{shape}": build_perimeter_query(vault_ids=ids) for shape, ids in VAULT_LISTS.items()}


@pytest.mark.parametrize("schema", ["workspace", "workspace-2024"])
def test_the_perimeter_query_is_valid_kql_with_its_summary_schema(schema: str) -> None:
    """Against the table as its reference lists it now (with the aggregation columns Count and
    TimeGeneratedEndTime) and as it listed it in 2024 (without them): ``column_ifexists`` reads
    both."""
    queries = perimeter_queries()
    results = run_checker(queries, schema=schema)
    assert set(results) == set(queries)
    for name, result in results.items():
        assert result["diagnostics"] == [], f"{name}: {result['diagnostics']}\n{queries[name]}"
        assert [tuple(c) for c in result["columns"]] == list(PERIMETER_SUMMARY_COLUMNS), name


# (text in kvmon's perimeter query, replacement, the name the error must mention or None)
PERIMETER_MUTATIONS = (
    # The Key Vault table's spelling and column names in the perimeter's table.
    ("SourceAddress = SourceIpAddress", "SourceAddress = CallerIpAddress", "CallerIpAddress"),
    ("SourceAddress = SourceIpAddress", "SourceAddress = SourceIPAddress", "SourceIPAddress"),
    ("where ServiceResourceId in~", "where _ResourceIds in~", "_ResourceIds"),
    (
        "AccessRulesVersion = AccessRuleVersion",
        "AccessRulesVersion = AccessRulesVersion",
        "AccessRulesVersion",
    ),
    ("NSPAccessLogs\n", "NspAccessLog\n", "NspAccessLog"),
    ("sum(coalesce(Events, 1))", 'sum(coalesce(Events, "1"))', None),
)


def test_the_checker_catches_what_it_must_in_the_perimeter_query() -> None:
    broken = {}
    for index, (text, replacement, _) in enumerate(PERIMETER_MUTATIONS):
        original = build_perimeter_query(vault_ids=ONE_VAULT)
        assert text in original, text
        broken[str(index)] = original.replace(text, replacement, 1)
    results = run_checker(broken)
    for index, (_, replacement, expected) in enumerate(PERIMETER_MUTATIONS):
        errors = [d for d in results[str(index)]["diagnostics"] if d["severity"] == "Error"]
        assert errors, replacement
        if expected is not None:
            assert any(expected in d["message"] for d in errors), errors


# -- the storage services' resource logs (StorageBlobLogs, ...FileLogs, ...QueueLogs, ...TableLogs) ----

_ACCOUNT = "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg-walkthrough/providers/Microsoft.Storage/storageAccounts/{}"
ACCOUNT_LISTS = {
    "one": (_ACCOUNT.format("stsedemo"),),
    "several": (
        _ACCOUNT.format("stsedemo"),
        _ACCOUNT.format("stpldemo"),
        "/SUBSCRIPTIONS/1D3F0000-AAAA-4BBB-8CCC-0123456789AB/RESOURCEGROUPS/Team_(Prod).1/PROVIDERS/MICROSOFT.STORAGE/STORAGEACCOUNTS/STUPPER01",
    ),
}


def test_the_storage_query_is_valid_kql_with_its_summary_schema() -> None:
    queries = {
        f"storage/{shape}": build_storage_query(account_ids=ids) for shape, ids in ACCOUNT_LISTS.items()
    }
    results = run_checker(queries)
    assert set(results) == set(queries)
    for name, result in results.items():
        assert result["diagnostics"] == [], f"{name}: {result['diagnostics']}\n{queries[name]}"
        assert [tuple(c) for c in result["columns"]] == list(STORAGE_SUMMARY_COLUMNS), name


# (text in kvmon's storage query, replacement, the name the error must mention or None)
STORAGE_MUTATIONS = (
    # Key Vault's column names in the storage tables, and the tables' own names misspelt.
    ("AppId = RequesterAppId", "AppId = RequesterAppID", "RequesterAppID"),
    ("KvmonStorageOutcome(StatusCode,", "KvmonStorageOutcome(HttpStatusCode,", "HttpStatusCode"),
    ("AuthenticationType,\n", "AuthenticationTypes,\n", "AuthenticationTypes"),
    # A misspelt table is a leg the fuzzy union drops (by design); a misspelt result column is not.
    ("by SourceTable, AccountId,", "by SourceTable, AccountID,", "AccountID"),
    ("where AccountName in~", "where StorageAccountName in~", "StorageAccountName"),
    # StatusCode is a string: comparing it with a number unconverted is a type error.
    ("let code = toint(status);", "let code = status;", None),
)


def test_the_checker_catches_what_it_must_in_the_storage_query() -> None:
    broken = {}
    for index, (text, replacement, _) in enumerate(STORAGE_MUTATIONS):
        original = build_storage_query(account_ids=ACCOUNT_LISTS["one"])
        assert text in original, text
        broken[str(index)] = original.replace(text, replacement, 1)
    results = run_checker(broken)
    for index, (_, replacement, expected) in enumerate(STORAGE_MUTATIONS):
        errors = [d for d in results[str(index)]["diagnostics"] if d["severity"] == "Error"]
        assert errors, replacement
        if expected is not None:
            assert any(expected in d["message"] for d in errors), errors
