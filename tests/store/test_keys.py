"""Resource ids as Table keys: valid, at most 1 KiB, and reversible."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.store.entities import Entity, EntityStore, Operation
from monitor.store.keys import MAX_KEY_CHARS, decode_key, encode_key, partition_for_vault, subscription_of
from tests.store.helpers import SUB_A

REAL_IDS = [
    f"/subscriptions/{SUB_A}/resourceGroups/RG-Security/providers/Microsoft.KeyVault/vaults/kv-App01",
    f"/subscriptions/{SUB_A.upper()}/resourcegroups/rg_weird.(name)/providers/Microsoft.KeyVault/vaults/KV-Prod-WE",
    f"/subscriptions/{SUB_A}/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv/privateEndpointConnections/pe#1?x",
    "C:\\not\\an\\id\twith\u0085controls and 'quotes' and ünïcode",
]
FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


@pytest.mark.parametrize("resource_id", REAL_IDS)
def test_real_ids_round_trip_and_are_valid_keys(resource_id: str) -> None:
    key = encode_key(resource_id)
    assert not FORBIDDEN.search(key)
    assert len(key) <= MAX_KEY_CHARS
    assert decode_key(key) == resource_id  # case and every character kept


@given(st.text(max_size=300))
def test_any_text_round_trips_unless_it_had_to_be_hashed(text: str) -> None:
    key = encode_key(text)
    assert not FORBIDDEN.search(key)
    assert len(key) <= MAX_KEY_CHARS
    try:
        assert decode_key(key) == text
    except ValueError:  # non-ASCII escapes to up to 12 characters each: long text is hashed, never cut
        assert len(key) == MAX_KEY_CHARS and len(text.encode("utf-8")) * 3 > MAX_KEY_CHARS


def test_overlong_keys_are_shortened_with_a_hash_and_stay_distinct() -> None:
    long_a, long_b = "/x" * 600 + "a", "/x" * 600 + "b"
    key_a, key_b = encode_key(long_a), encode_key(long_b)
    assert len(key_a) == MAX_KEY_CHARS and key_a != key_b
    with pytest.raises(ValueError, match="hash"):
        decode_key(key_a)


def test_partitions_are_subscriptions_case_folded() -> None:
    assert subscription_of(REAL_IDS[1].lower()) == SUB_A
    assert partition_for_vault(REAL_IDS[0]) == partition_for_vault(REAL_IDS[1].upper())
    assert partition_for_vault("no-subscription-here") == "-"


@pytest.mark.parametrize("resource_id", REAL_IDS)
def test_backends_accept_and_return_encoded_keys(store: EntityStore, resource_id: str) -> None:
    """Table storage refuses raw ids as keys; encoded ones are stored and found again."""
    partition, row = encode_key(resource_id), encode_key(resource_id.swapcase())
    store.backend.submit("Keys", [Operation("create", Entity(partition, row, {"id": resource_id}))])

    found = store.backend.get("Keys", partition, row)
    assert found is not None and found.properties["id"] == resource_id
    assert (decode_key(found.partition), decode_key(found.row)) == (resource_id, resource_id.swapcase())
    assert [e.row for e in store.backend.query("Keys", partition=partition)] == [row]


def test_table_storage_refuses_raw_resource_ids(azurite) -> None:
    """Why the encoding exists: the real service (here Azurite) rejects a raw id as a key."""
    from monitor.store import StoreUnavailable, open_store

    store = open_store(connection_string=azurite.connection_string, table_prefix="rawkeys")
    assert isinstance(store, EntityStore)
    try:
        with pytest.raises(StoreUnavailable, match=r"InvalidInput|Bad Request"):
            store.backend.submit("Keys", [Operation("create", Entity("p", REAL_IDS[0], {}))])
    finally:
        store.close()
