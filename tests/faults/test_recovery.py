"""The store and a webhook fail together, then both recover: nothing lost, nothing doubled.

The store is cut off through ``StoreLink`` (the storage account out of reach, its data intact),
the signed webhook answers 500. Every change must reach every channel exactly once in the end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from lab.azurite import Azurite
from lab.services import LabServices
from monitor.app.scan import ScanRequest, run_scan
from monitor.model import ChangeKind
from monitor.store import Store, StoreUnavailable, open_store
from tests.faults.conftest import SUB_A, SUB_B, StoreLink, fast_runtime, fault_environ

REQUEST = ScanRequest(subscriptions=(SUB_A, SUB_B), logs=False)


@pytest.fixture
def link(azurite_for_faults: Azurite) -> Iterator[StoreLink]:
    store_link = StoreLink(azurite_for_faults).restore()
    yield store_link
    store_link.cut()


def _announced(lab: LabServices) -> Counter[tuple[str, str]]:
    """(finding id, kind) of every change the signed webhook received, with repeats counted."""
    told: Counter[tuple[str, str]] = Counter()
    for message in lab.sinks.messages("webhook"):
        payload = message.json()
        assert payload["omitted"] == 0
        told.update((change["finding_id"], change["kind"]) for change in payload["changes"])
    return told


@pytest.mark.fault("Store + webhooks", "store cut off and webhook 500 at once, then both back")
def test_a_store_and_a_webhook_that_fail_together_lose_and_double_nothing(
    lab: LabServices, link: StoreLink, table_prefix: str, observe: Callable[[str], None]
) -> None:
    environ = fault_environ(lab)
    store: Store = open_store(connection_string=link.connection_string, table_prefix=table_prefix)
    runtime = fast_runtime(environ, store=store)

    # 1. The webhook is down: the scan is recorded, its message waits in the outbox.
    lab.sinks.fail("webhook", status=500, times=0)
    first = run_scan(REQUEST, runtime).report
    assert [(e.source, e.scope, e.code) for e in first.errors] == [("notify", "siem", "500")]
    assert len(store.pending_messages()) == 1
    # 2. A vault is fixed; then the store goes out of reach too: this scan cannot be recorded.
    se_vault = lab.estate.vault_by_name("kv-se-demo")
    assert se_vault is not None
    acls = dict(se_vault["properties"]["networkAcls"], defaultAction="Deny")
    lab.estate.update_vault(se_vault["id"], properties={"networkAcls": acls})
    link.cut()
    with pytest.raises(StoreUnavailable):
        run_scan(REQUEST, runtime)
    observe("scan 1: notify error (siem 500), message kept; scan 2: StoreUnavailable")
    # 3. Both recover.
    link.restore()
    lab.sinks.clear_faults()
    third = run_scan(REQUEST, runtime).report

    assert third.errors == []
    resolved = {c.finding.id for c in third.changes if c.kind is ChangeKind.RESOLVED}
    assert resolved, "the fix made while the store was away was not noticed"
    expected = Counter((c.finding.id, c.kind.value) for c in [*first.changes, *third.changes])
    told = _announced(lab)
    assert told == expected  # every change once: none lost with the failed scans, none repeated
    message_ids = [m.header("X-Kvmon-Message-Id") for m in lab.sinks.messages("webhook")]
    assert len(message_ids) == len(set(message_ids)) == 2
    assert len(lab.sinks.messages("teams")) == 2  # scan 1 and scan 3; scan 2 told nobody
    assert store.pending_messages() == []
    observe(
        f"scan 3: {sum(told.values())} changes told once each ({len(first.changes)} opened in scan 1, "
        f"{len(resolved)} resolved in scan 3); 2 webhook + 2 Teams messages; outbox empty"
    )
    store.close()
