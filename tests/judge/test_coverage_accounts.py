"""Coverage of storage accounts: assessed by their configuration alone, complete when their
subscription's *account* listing was, whatever the vault listing did."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monitor.judge.coverage import Coverage, assess_coverage
from monitor.model import EvidenceSource, PerimeterLookup, PerimeterReading
from monitor.model_storage import StorageAccountPosture
from tests.store.helpers import SUB_A, SUB_B, posture

VAULT = posture("kv-app")


def account(name: str, subscription: str = SUB_A) -> StorageAccountPosture:
    return StorageAccountPosture(
        id=f"/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{name}",
        name=name,
        subscription_id=subscription,
        resource_group="rg",
        location="westeurope",
    )


OPEN, OTHER = account("stopen"), account("stother", SUB_B)


def cover(**changes: Any) -> Coverage:
    arguments: dict[str, Any] = {
        "postures": [VAULT],
        "probes": [],
        "evidence": {},
        "probed": False,
        "logs_read": False,
        "subscriptions_complete": frozenset({SUB_A, SUB_B}),
        "disappeared": frozenset(),
        "accounts": [OPEN, OTHER],
        "account_subscriptions_complete": frozenset({SUB_A, SUB_B}),
    }
    arguments.update(changes)
    return assess_coverage(**arguments)


def test_accounts_are_assessed_and_complete_beside_the_vaults() -> None:
    coverage = cover()
    assert coverage.assessed == {VAULT.key, OPEN.key, OTHER.key}
    assert coverage.complete == {VAULT.key, OPEN.key, OTHER.key}
    assert coverage.fell_short == {}


def test_an_account_listing_that_fell_short_leaves_its_accounts_incomplete_and_not_the_vaults() -> None:
    coverage = cover(account_subscriptions_complete=frozenset({SUB_B}))
    assert OPEN.key in coverage.assessed and OPEN.key not in coverage.complete
    assert {VAULT.key, OTHER.key} <= coverage.complete


def test_a_vault_listing_that_fell_short_leaves_the_accounts_complete() -> None:
    coverage = cover(subscriptions_complete=frozenset({SUB_B}))
    assert VAULT.key not in coverage.complete and OPEN.key in coverage.complete


def test_an_account_read_with_problems_or_an_unreadable_perimeter_holds_back_its_configuration() -> None:
    garbled = replace(OPEN, problems=("networkAcls.bypass: not a string",))
    unknown = replace(OTHER, perimeter=PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="403"))
    coverage = cover(accounts=[garbled, unknown])
    assert coverage.fell_short == {
        OPEN.key: frozenset({EvidenceSource.CONFIGURATION}),
        OTHER.key: frozenset({EvidenceSource.CONFIGURATION}),
    }


def test_a_disappeared_account_is_assessed_and_complete() -> None:
    gone = account("stgone").key
    coverage = cover(accounts_disappeared=frozenset({gone}))
    assert gone in coverage.assessed and gone in coverage.complete
