"""``kvmon evaluate`` on storage account JSON through ``monitor.cli.main``: the type is told apart by
itself, both families judged, every format, and ``kvmon rules`` listing both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from tests.output.conftest import Validate
from tests.storage.conftest import example

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = str(REPO / "examples" / "storage" / "st-walkthrough.json")
VAULTS = str(REPO / "examples" / "vaults" / "kv-se-demo.json")
BASELINE = str(REPO / "examples" / "baseline-storage.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, "evaluate", *argv, "--format", "json")
    assert err == ""
    return code, json.loads(out)


def test_vaults_and_accounts_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, VAULTS, ACCOUNTS)
    assert code == 1
    assert {(f["vault"], f["rule"]) for f in document["findings"]} == {
        ("kv-se-demo", "KV001"),
        ("kv-se-demo", "KV002"),
        ("stsedemo", "ST001"),
        ("stsedemo", "ST002"),
    }
    st002 = next(f for f in document["findings"] if f["rule"] == "ST002")
    assert st002["remediation"] == (
        "az storage account update --name stsedemo --resource-group rg-walkthrough --default-action Deny"
    )
    assert st002["vault_id"].endswith("/storageAccounts/stsedemo") and document["errors"] == []


def test_the_storage_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(capsys, VAULTS, ACCOUNTS, "--baseline", BASELINE)
    assert code == 1
    found = {(f["vault"], f["rule"], f["subject"]) for f in document["findings"]}
    assert {
        ("stsedemo", "ST014", ""),
        ("stsedemo", "ST016", "default_action"),
        ("stlockeddemo", "ST011", "blob"),
    } <= found
    assert not any(f["rule"] == "KV013" for f in document["findings"])  # the vault has its entry


def test_an_account_with_public_access_disabled_and_default_allow_is_not_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published = tmp_path / "published.json"
    published.write_text(json.dumps(example("StorageAccountUpdateDisablePublicNetworkAccess")))
    code, document = run_json(capsys, str(published))
    assert code == 0
    assert sorted(f["rule"] for f in document["findings"]) == ["ST012", "ST012", "ST015"]


def test_az_output_of_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``az storage account list`` prints a JSON array of flattened accounts."""
    listed = tmp_path / "az.json"
    listed.write_text(
        json.dumps(
            [
                {
                    "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/staz",
                    "name": "staz",
                    "type": "Microsoft.Storage/storageAccounts",
                    "networkRuleSet": {
                        "bypass": "AzureServices",
                        "defaultAction": "Deny",
                        "ipRules": [{"ipAddressOrRange": "0.0.0.0/0"}],
                    },
                    "enableHttpsTrafficOnly": True,
                    "minimumTlsVersion": "TLS1_2",
                    "publicNetworkAccess": "Enabled",
                }
            ]
        )
    )
    code, document = run_json(capsys, str(listed))
    assert code == 1
    assert [(f["rule"], f["severity"], f["subject"]) for f in document["findings"]] == [
        ("ST003", "critical", "0.0.0.0/0")
    ]


def test_garbled_fields_are_input_errors_naming_the_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = example("StorageAccountGetProperties")
    document["properties"]["publicNetworkAccess"] = 7
    garbled = tmp_path / "garbled.json"
    garbled.write_text(json.dumps(document))
    _, report = run_json(capsys, str(garbled))
    assert not any(f["rule"] == "ST001" for f in report["findings"])
    [error] = report["errors"]
    assert error["source"] == "input" and error["scope"].endswith(": sto8596")
    assert "properties.publicNetworkAccess is a number" in error["message"]


def test_sarif_points_at_the_account_id(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "evaluate", ACCOUNTS, "--format", "sarif")
    assert code == 1
    results = json.loads(out)["runs"][0]["results"]
    lines = Path(ACCOUNTS).read_text().splitlines()
    id_line = next(n for n, line in enumerate(lines, 1) if "/storageAccounts/stsedemo" in line)
    assert {r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results} == {id_line}


@pytest.mark.node
def test_sarif_with_both_families_passes_the_multitool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sarif_multitool: Validate
) -> None:
    target = tmp_path / "kvmon.sarif"
    code, _, _ = run(
        capsys,
        "evaluate",
        VAULTS,
        ACCOUNTS,
        "--baseline",
        BASELINE,
        "--format",
        "sarif",
        "--output",
        str(target),
    )
    assert code == 1
    assert sarif_multitool(target) == []


def test_rules_lists_both_families(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--format", "json")
    assert code == 0
    rules = json.loads(out)
    services = {rule["id"][:2]: rule["service"] for rule in rules}
    assert services == {"KV": "keyvault", "ST": "storage"}
