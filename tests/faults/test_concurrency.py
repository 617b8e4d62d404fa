"""The timer scan and two on-demand checks of the same vault at once, on one Azurite store, each
in its own thread with its own clients (as three Functions invocations would be): one finding
per problem, one notification per change."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from azure.data.tables import TableServiceClient

from lab.azurite import Azurite
from lab.services import LabServices
from monitor.app.scan import ScanOutcome, ScanRequest, run_scan
from monitor.model import ChangeKind, FindingChange, ScanTrigger
from monitor.store import open_store
from tests.faults.conftest import SUB_A, SUB_B, fast_runtime, fault_environ

SCOPE = (SUB_A, SUB_B)
TIMER = ScanRequest(subscriptions=SCOPE, trigger=ScanTrigger.TIMER)
CHECK = ScanRequest(subscriptions=SCOPE, vault_name="kv-se-demo", trigger=ScanTrigger.HTTP)


def _at_once(lab: LabServices, azurite: Azurite, prefix: str) -> list[ScanOutcome]:
    environ = fault_environ(lab)
    runtimes = [
        fast_runtime(
            environ, store=open_store(connection_string=azurite.connection_string, table_prefix=prefix)
        )
        for _ in range(3)
    ]
    start = threading.Barrier(3)
    outcomes: dict[int, ScanOutcome] = {}
    failures: list[BaseException] = []

    def run(index: int, request: ScanRequest) -> None:
        start.wait()
        try:
            outcomes[index] = run_scan(request, runtimes[index])
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(index, request))
        for index, request in enumerate((TIMER, CHECK, CHECK))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for runtime in runtimes:
        assert runtime.store is not None
        runtime.store.close()
    assert failures == []
    return [outcomes[i] for i in range(3)]


def _stored_findings(azurite: Azurite, prefix: str) -> list[str]:
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        return [e["RowKey"] for e in service.get_table_client(f"{prefix}Findings").list_entities()]


def _told(lab: LabServices) -> Counter[tuple[str, str]]:
    told: Counter[tuple[str, str]] = Counter()
    for message in lab.sinks.messages("webhook"):
        payload = message.json()
        assert payload["omitted"] == 0
        told.update((c["finding_id"], c["kind"]) for c in payload["changes"])
    return told


def _changes(outcomes: list[ScanOutcome]) -> list[FindingChange]:
    return [change for outcome in outcomes for change in outcome.report.changes]


@pytest.mark.fault("Concurrency", "timer scan + 2 on-demand checks of one vault at once")
def test_three_scans_at_once_store_each_problem_once_and_tell_each_change_once(
    lab: LabServices, azurite_for_faults: Azurite, table_prefix: str, observe: Callable[[str], None]
) -> None:
    outcomes = _at_once(lab, azurite_for_faults, table_prefix)

    assert all(o.report.errors == [] for o in outcomes)
    rows = _stored_findings(azurite_for_faults, table_prefix)
    seen = {f.id for o in outcomes for f in o.report.findings}
    assert len(rows) == len(set(rows)) and set(rows) == seen
    changes = _changes(outcomes)
    won = Counter(c.finding.id for c in changes)
    assert set(won) == seen and set(won.values()) == {1}  # each opening won by exactly one scan
    told = _told(lab)
    assert told == Counter((c.finding.id, c.kind.value) for c in changes)
    assert set(told.values()) == {1}
    observe(f"first round: {len(rows)} findings stored once; {len(told)} openings told once each")

    # The vault the checks ask about is fixed; all three run again: each resolution once.
    se_vault = lab.estate.vault_by_name("kv-se-demo")
    assert se_vault is not None
    acls = dict(se_vault["properties"]["networkAcls"], defaultAction="Deny")
    lab.estate.update_vault(se_vault["id"], properties={"networkAcls": acls})
    lab.sinks.clear()

    outcomes = _at_once(lab, azurite_for_faults, table_prefix)

    changes = _changes(outcomes)
    resolved = [c for c in changes if c.kind is ChangeKind.RESOLVED]
    assert resolved and all(c.finding.vault_name == "kv-se-demo" for c in resolved)
    won = Counter((c.finding.id, c.kind) for c in changes)
    assert set(won.values()) == {1}
    told = _told(lab)
    assert told == Counter((c.finding.id, c.kind.value) for c in changes) and set(told.values()) == {1}
    rows = _stored_findings(azurite_for_faults, table_prefix)
    assert len(rows) == len(set(rows))
    observe(f"after a fix: {len(resolved)} resolutions told once each, {len(changes)} changes in all")
