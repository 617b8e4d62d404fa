"""lab.azurite on its own instance: stop and restart on the same ports, and what the store does then."""

from __future__ import annotations

import pytest

from lab.azurite import DEV_ACCOUNT_KEY, Azurite, azurite_missing_reason
from monitor.store import StoreUnavailable, open_store
from tests.store.helpers import T0, finding
from tests.store.test_contract import record


@pytest.fixture
def own_azurite():
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(f"Azurite cannot run here: {reason}")
    emulator = Azurite.start()
    yield emulator
    emulator.stop()


def test_store_down_is_store_unavailable_and_back_after_restart(own_azurite: Azurite) -> None:
    ports = (own_azurite.table_port, own_azurite.queue_port, own_azurite.blob_port)
    store = open_store(connection_string=own_azurite.connection_string, table_prefix="faults")
    try:
        store.save_findings([record(finding())])

        own_azurite.stop()
        assert not own_azurite.running
        with pytest.raises(StoreUnavailable) as raised:
            store.load_findings()
        message = str(raised.value)
        assert "Azure Table storage at http://127.0.0.1:" in message and DEV_ACCOUNT_KEY not in message

        own_azurite.restart()
        assert own_azurite.running
        assert (own_azurite.table_port, own_azurite.queue_port, own_azurite.blob_port) == ports
        # In memory: the data (and the tables) are gone; the same store object recovers.
        assert store.load_findings() == {}
        store.save_findings([record(finding(subject="after"), at=T0)])
        assert len(store.load_findings()) == 1
    finally:
        store.close()
