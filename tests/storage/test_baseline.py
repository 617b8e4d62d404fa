"""The baseline for storage accounts: entries apply to their service, storage keys are validated
for it, and every mistake is one line naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config.baseline import BaselineError, load_baseline, parse_baseline
from monitor.config.policy import Mode
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.model_storage import StorageBypass, StorageSubresource
from monitor.sources.documents import load_resource_file
from tests.baseline.test_baseline import vault
from tests.storage.test_rules import account

REPO = Path(__file__).resolve().parents[2]
STORAGE_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stapp"
VAULT_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-app"


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_baseline(text, source="b.yaml", known_rules=RULES_BY_ID.keys())


def test_an_entry_applies_to_its_service_only() -> None:
    baseline = parse(
        "version: 1\n"
        "defaults: {mode: service-endpoint}\n"
        "entries:\n"
        "  - {name: every-vault, match: {name: '*'}, mode: private-link}\n"
        "  - name: lake\n"
        "    service: storage\n"
        "    match: {name: 'st*'}\n"
        "    mode: private-link\n"
        "    bypass: 'metrics, Logging'\n"
        "    allow_shared_key_access: false\n"
        "    subresources: [blob, DFS]\n"
    )
    stored = baseline.policy_for(account())
    assert stored.entry == "lake" and stored.mode is Mode.PRIVATE_LINK
    assert stored.storage_bypass == {StorageBypass.LOGGING, StorageBypass.METRICS} and stored.bypass is None
    assert stored.allow_shared_key_access is False
    assert stored.subresources == (StorageSubresource.BLOB, StorageSubresource.DFS)
    assert baseline.policy_for(vault("stapp")).entry == "every-vault"  # a vault named like an account


def test_defaults_are_key_vaults_only() -> None:
    baseline = parse("version: 1\ndefaults: {mode: private-link}\n")
    assert baseline.policy_for(vault("kv-a")).entry == "defaults"
    unmatched = baseline.policy_for(account())
    assert unmatched.entry is None and unmatched.baseline_given  # ST017 says so


def test_match_by_a_storage_account_id() -> None:
    baseline = parse(
        f"version: 1\nentries:\n  - {{name: one, service: storage, match: {{id: '{STORAGE_ID}'}}}}\n"
    )
    assert baseline.policy_for(account()).entry == "one"


def test_a_key_vault_bypass_keeps_its_meaning() -> None:
    policy = parse("version: 1\ndefaults: {bypass: azureservices}\n").policy_for(vault("kv-a"))
    assert policy.bypass == "AzureServices" and policy.storage_bypass is None


def test_the_walkthrough_storage_baseline_judges_the_example_accounts() -> None:
    baseline = load_baseline(REPO / "examples" / "baseline-storage.yaml", known_rules=RULES_BY_ID.keys())
    documents = load_resource_file(REPO / "examples" / "storage" / "st-walkthrough.json")
    assert [baseline.policy_for(a).entry for a in documents.accounts] == [
        "walkthrough-se-storage",
        "storage-defaults",
    ]


BAD: dict[str, tuple[str, int, str]] = {
    "unknown service": (
        "version: 1\nentries:\n  - {name: a, service: sql, match: {name: x}}\n",
        3,
        "entries[0].service: unknown service 'sql': use one of keyvault, storage",
    ),
    "storage bypass member": (
        "version: 1\nentries:\n  - name: a\n    service: storage\n    match: {name: x}\n    bypass: Logging, Everything\n",
        6,
        "entries[0].bypass: unknown bypass 'Everything': use any of None, Logging, Metrics, AzureServices",
    ),
    "storage bypass None with others": (
        "version: 1\nentries:\n  - name: a\n    service: storage\n    match: {name: x}\n    bypass: [None, Logging]\n",
        6,
        "bypass None cannot be combined",
    ),
    "a storage set on a vault": (
        "version: 1\nentries:\n  - {name: a, match: {name: x}, bypass: 'Logging, Metrics'}\n",
        3,
        "unknown bypass 'Logging, Metrics': use one of AzureServices, None",
    ),
    "storage key on a vault entry": (
        "version: 1\nentries:\n  - name: a\n    match: {name: x}\n    allow_shared_key_access: false\n",
        5,
        "entries[0].allow_shared_key_access: allow_shared_key_access applies to storage accounts only",
    ),
    "sub-resources on the defaults": (
        "version: 1\ndefaults:\n  subresources: [blob]\n",
        3,
        "defaults.subresources: subresources applies to storage accounts only",
    ),
    "unknown sub-resource": (
        "version: 1\nentries:\n  - name: a\n    service: storage\n    match: {name: x}\n    subresources: [blobs]\n",
        6,
        "unknown sub-resource 'blobs'",
    ),
    "shared key not a boolean": (
        "version: 1\nentries:\n  - name: a\n    service: storage\n    match: {name: x}\n    allow_shared_key_access: 'no'\n",
        6,
        "entries[0].allow_shared_key_access: Input should be a valid boolean",
    ),
    "storage defaults": (
        "version: 1\ndefaults:\n  service: storage\n",
        3,
        "defaults.service: defaults apply to Key Vaults only",
    ),
    "vault id on a storage entry": (
        f"version: 1\nentries:\n  - name: a\n    service: storage\n    match: {{id: '{VAULT_ID}'}}\n",
        5,
        "entries[0].match: id",
    ),
    "neither id": (
        "version: 1\nentries:\n  - {name: a, match: {id: /subscriptions/x/storageAccounts/st}}\n",
        3,
        "is not a vault resource id",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_storage_mistake_gives_one_line_naming_file_line_and_key(case: str) -> None:
    text, line, expected = BAD[case]
    with pytest.raises(BaselineError) as caught:
        parse(text)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"b.yaml:{line}: "), message
    assert expected in message, message
