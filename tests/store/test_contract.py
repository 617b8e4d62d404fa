"""One contract, two backends: SQLite and Table storage (Azurite) must behave the same."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from monitor.model import (
    ArmStamp,
    ErrorSource,
    FindingRecord,
    FindingStatus,
    PerimeterAccessRule,
    PerimeterLookup,
    PerimeterProvisioningIssue,
    PerimeterReading,
    ScanError,
    ScanTrigger,
    Suppression,
)
from monitor.store import codec
from monitor.store.base import (
    ConcurrentUpdate,
    MessageState,
    OutboxMessage,
    PostureSnapshot,
    ScanRun,
    StoreUnavailable,
)
from monitor.store.entities import HISTORY, POSTURES, SCANS, Entity, EntityStore, Operation, _history_row
from monitor.store.keys import MAX_KEY_CHARS, partition_for_vault
from tests.judge.test_perimeter import EVERYONE, association
from tests.store.conftest import StoreFactory
from tests.store.helpers import (
    SUB_A,
    SUB_B,
    T0,
    InterruptingBackend,
    finding,
    ip_rule,
    pec,
    posture,
    vault_id,
)

HOUR = dt.timedelta(hours=1)


def record(f, *, status=FindingStatus.OPEN, at=T0, **changes) -> FindingRecord:
    return FindingRecord(finding=f, status=status, first_seen=at, last_seen=at, last_changed=at, **changes)


# -- postures ---------------------------------------------------------------------------------------


def test_posture_round_trips_exactly(store: EntityStore) -> None:
    original = posture(
        "kv-App01",
        ip_rules=(ip_rule("203.0.113.0/24"), ip_rule("2001:db8::/48"), ip_rule("not-an-ip")),
        private_endpoint_connections=(pec("pe-app", "Approved"), pec("pe-old", "Rejected")),
        problems=("ipRules[2]: 'not-an-ip' is not an address",),
    )
    store.save_postures([PostureSnapshot(original, scan_id="scan-1", seen_at=T0)])

    loaded = store.load_postures()
    assert list(loaded) == [original.key]
    assert loaded[original.key].posture == original
    assert loaded[original.key].posture.id == original.id  # mixed case kept
    assert (loaded[original.key].scan_id, loaded[original.key].seen_at) == ("scan-1", T0)


@pytest.mark.parametrize(
    "reading",
    [
        PerimeterReading(lookup=PerimeterLookup.NONE),
        PerimeterReading(lookup=PerimeterLookup.UNREADABLE, error="AuthorizationFailed"),
        PerimeterReading(
            lookup=PerimeterLookup.ASSOCIATED,
            association=association(
                "Transition",
                EVERYONE,
                PerimeterAccessRule(
                    name="mixed",
                    address_prefixes=(ip_rule("2001:db8::/48"), ip_rule("not-a-prefix")),
                    subscriptions=("/subscriptions/x",),
                    service_tags=("AzureCloud",),
                    perimeters=("/subscriptions/x/nsp/other",),
                ),
                access_rules_version=7,
                provisioning_issues=(
                    PerimeterProvisioningIssue("i1", "ConfigurationPropagationFailure", "Error", "d"),
                ),
                created=ArmStamp("alice@contoso.example", "User", T0),
                modified=ArmStamp("3c5e7a90-0000-4000-8000-0000000f1a7e", "Application", T0),
                rules_modified=ArmStamp("bob@contoso.example", None, None),
            ),
        ),
    ],
    ids=["none", "unreadable", "associated"],
)
def test_a_perimeter_reading_round_trips_exactly(store: EntityStore, reading: PerimeterReading) -> None:
    original = posture("kv-nsp", perimeter=reading)
    store.save_postures([PostureSnapshot(original, scan_id="s1", seen_at=T0)])
    assert store.load_postures()[original.key].posture == original


def test_a_posture_stored_before_perimeters_were_read_has_its_association_not_looked_up() -> None:
    stored = codec.posture_to_json(posture())
    del stored["perimeter"]
    assert codec.posture_from_json(stored).perimeter == PerimeterReading()


def test_an_association_stored_before_kvmon_kept_its_system_data_reads_with_no_author() -> None:
    stamped = association(
        created=ArmStamp("alice@contoso.example", "User", T0), modified=ArmStamp("a", "User", T0)
    )
    stored = codec.posture_to_json(posture(perimeter=PerimeterReading(PerimeterLookup.ASSOCIATED, stamped)))
    for key in ("created", "modified", "rules_modified"):
        del stored["perimeter"]["association"][key]
    read = codec.posture_from_json(stored).perimeter.association
    assert read is not None and (read.created, read.modified, read.rules_modified) == (None, None, None)
    assert read == association()


def test_a_vault_whose_key_needs_more_than_512_characters_round_trips(store: EntityStore) -> None:
    group = "rg-" + "\u00e9" * 87  # 90 characters; each "\u00e9" is 6 in a key ("!C3!A9")
    vault = posture(id=vault_id("kv-long", resource_group=group))
    assert store.save_postures([PostureSnapshot(vault, scan_id="s1", seen_at=T0)]) == 1

    assert store.load_postures(vault_keys=[vault.id])[vault.key].posture == vault
    assert [s.scan_id for s in store.posture_history(vault.id)] == ["s1"]


def test_load_postures_by_key_is_case_insensitive_and_skips_unknown(store: EntityStore) -> None:
    app, data = posture("kv-app"), posture("kv-data", subscription=SUB_B)
    store.save_postures([PostureSnapshot(p, scan_id="s1", seen_at=T0) for p in (app, data)])

    assert set(store.load_postures(vault_keys=[app.id.upper(), "/subscriptions/x/vaults/none"])) == {app.key}
    assert set(store.load_postures()) == {app.key, data.key}


def test_unchanged_posture_only_moves_its_marker_and_changed_one_adds_history(store: EntityStore) -> None:
    first = posture()
    assert store.save_postures([PostureSnapshot(first, scan_id="s1", seen_at=T0)]) == 1  # current only

    assert store.save_postures([PostureSnapshot(first, scan_id="s2", seen_at=T0 + HOUR)]) == 1  # marker
    again = store.load_postures()[first.key]
    assert (again.scan_id, again.seen_at) == ("s2", T0 + HOUR)
    assert len(store.posture_history(first.key)) == 1

    [current] = store.backend.query(POSTURES)
    loosened = dataclasses.replace(first, default_action="Allow")
    assert store.save_postures([PostureSnapshot(loosened, scan_id="s3", seen_at=T0 + 2 * HOUR)]) == 2
    [superseded] = store.backend.query(HISTORY)  # the version it replaced, exactly as it was stored
    assert superseded.properties == current.properties
    latest = store.load_postures()[first.key]
    assert (latest.posture, latest.scan_id) == (loosened, "s3")
    history = store.posture_history(first.id)  # any case
    assert [(s.scan_id, s.posture.default_action) for s in history] == [("s1", "Deny"), ("s3", "Allow")]


def test_a_posture_stored_in_an_older_encoding_is_not_a_change(store: EntityStore) -> None:
    vault = posture()
    store.save_postures([PostureSnapshot(vault, scan_id="s1", seen_at=T0)])
    # As an earlier kvmon wrote it: keys in another order, no "problems" field (its default: none).
    [stored] = store.backend.query(POSTURES)
    older = json.loads(stored.properties["posture"])
    del older["problems"]
    text = json.dumps(dict(reversed(older.items())))
    assert text != stored.properties["posture"]
    store.backend.submit(
        POSTURES,
        [Operation("upsert", Entity(stored.partition, stored.row, {**stored.properties, "posture": text}))],
    )

    assert store.save_postures([PostureSnapshot(vault, scan_id="s2", seen_at=T0 + HOUR)]) == 1  # marker
    assert [s.scan_id for s in store.posture_history(vault.id)] == ["s1"]
    assert (
        store.save_postures([PostureSnapshot(posture(problems=("x",)), scan_id="s3", seen_at=T0 + 2 * HOUR)])
        == 2
    )


def test_an_older_snapshot_never_replaces_a_newer_one(store: EntityStore) -> None:
    newer = posture(default_action="Allow")
    store.save_postures([PostureSnapshot(newer, scan_id="late", seen_at=T0 + HOUR)])
    store.save_postures([PostureSnapshot(posture(), scan_id="early", seen_at=T0)])

    assert store.load_postures()[newer.key].posture == newer


def test_a_posture_with_many_rules_is_stored_compressed(store: EntityStore) -> None:
    many = tuple(ip_rule(f"198.51.{i // 250}.{i % 250}/32") for i in range(1000))
    big = posture(ip_rules=many, tags={f"tag{i}": "x" * 40 for i in range(50)})
    store.save_postures([PostureSnapshot(big, scan_id="s1", seen_at=T0)])

    assert store.load_postures()[big.key].posture == big


# -- findings ---------------------------------------------------------------------------------------


def test_findings_round_trip_with_suppression_and_filters(store: EntityStore) -> None:
    suppression = Suppression(
        rule="KV001",
        vault_pattern="kv-app",
        reason="pilot",
        owner="sec@contoso.com",
        expires=dt.date(2026, 6, 30),
    )
    open_one = record(
        finding("kv-app", "KV001", subject="confirmed"),
        confirmed_at=T0 + HOUR,
        confirmed_by="KV101 [internet]: admitted from internet",
    )
    suppressed = record(finding("kv-app", "KV001", suppression=suppression), status=FindingStatus.SUPPRESSED)
    resolved = record(
        finding("kv-data", "KV002", subscription=SUB_B), status=FindingStatus.RESOLVED, resolved_at=T0 + HOUR
    )
    assert store.save_findings([open_one, suppressed, resolved]) == 3

    everything = store.load_findings()
    assert set(everything) == {open_one.id, suppressed.id, resolved.id}
    for original in (open_one, suppressed, resolved):
        loaded = everything[original.id]
        assert loaded.etag
        assert dataclasses.replace(loaded, etag=None) == original

    assert set(store.load_findings(status=FindingStatus.SUPPRESSED)) == {suppressed.id}
    assert set(store.load_findings(vault_keys=[open_one.finding.vault_id.upper()])) == {
        open_one.id,
        suppressed.id,
    }
    assert (
        set(store.load_findings(vault_keys=[resolved.finding.vault_id], status=FindingStatus.OPEN)) == set()
    )
    # Many vaults of a partition: read as the partition, filtered here, to the same answer.
    many = [open_one.finding.vault_id] + [finding(f"kv-other-{i}").vault_id for i in range(4)]
    assert set(store.load_findings(vault_keys=many)) == {open_one.id, suppressed.id}
    assert set(store.load_findings(vault_keys=many, status=FindingStatus.OPEN)) == {open_one.id}


def test_create_if_absent_and_etag_conflicts_name_the_records_and_write_the_rest(store: EntityStore) -> None:
    first = record(finding(subject="a"))
    store.save_findings([first])
    stored = store.load_findings()[first.id]

    # Someone else updates it: our copy's etag is now stale.
    store.save_findings([dataclasses.replace(stored, occurrences=2)])
    stale = dataclasses.replace(stored, occurrences=3)
    duplicate = record(finding(subject="a"))  # no etag: create-if-absent
    fresh = record(finding(subject="b"))
    with pytest.raises(ConcurrentUpdate) as raised:
        store.save_findings([stale, duplicate, fresh])

    assert raised.value.conflicting_ids == {first.id}
    after = store.load_findings()
    assert after[first.id].occurrences == 2
    assert fresh.id in after


def test_more_than_one_transaction_of_findings_in_a_partition(store: EntityStore) -> None:
    records = [record(finding(f"kv-{i:03d}", subject=str(i))) for i in range(230)]
    assert store.save_findings(records) == 230
    loaded = store.load_findings()
    assert len(loaded) == 230
    updated = [dataclasses.replace(r, occurrences=2) for r in loaded.values()]
    assert store.save_findings(updated) == 230
    assert {r.occurrences for r in store.load_findings().values()} == {2}


def test_mark_findings_seen_moves_last_seen_of_active_findings_only(store: EntityStore) -> None:
    active = record(finding(subject="active"))
    done = record(finding(subject="done"), status=FindingStatus.RESOLVED, resolved_at=T0)
    store.save_findings([active, done])

    assert store.mark_findings_seen([active.finding.vault_id.lower()], seen_at=T0 + HOUR, scan_id="s2") == 1
    assert store.mark_findings_seen([active.finding.vault_id.lower()], seen_at=T0 + HOUR, scan_id="s2") == 0
    loaded = store.load_findings()
    assert loaded[active.id].last_seen == T0 + HOUR
    assert loaded[done.id].last_seen == T0


def test_seventy_kib_of_evidence_is_stored_trimmed_with_a_marker(store: EntityStore) -> None:
    evidence = {"log_excerpt": "GET /secrets/x 403 ForbiddenByFirewall\n" * 1900, "count": 1900}
    assert len(evidence["log_excerpt"].encode()) > 70 * 1024
    big = record(finding(evidence=evidence))

    assert store.save_findings([big]) == 1  # never a failed write

    stored = store.load_findings()[big.id].finding.evidence
    assert stored["_trimmed"]["original_size"] > 70 * 1024
    assert stored["count"] == 1900
    assert stored["log_excerpt"].startswith("GET /secrets/x 403 ForbiddenByFirewall")
    assert "…[trimmed" in stored["log_excerpt"]
    assert len(stored["log_excerpt"]) < len(evidence["log_excerpt"])


# -- scan runs --------------------------------------------------------------------------------------


def test_scan_runs_newest_first_and_updated_in_place(store: EntityStore) -> None:
    errors = (ScanError(source=ErrorSource.ARM, scope=SUB_B, message="403 AuthorizationFailed", code="403"),)
    for index in range(3):
        started = T0 + index * HOUR
        store.record_scan(ScanRun(scan_id=f"s{index}", scope=(SUB_A,), started_at=started, finished_at=None))
        store.record_scan(
            ScanRun(
                scan_id=f"s{index}",
                scope=(SUB_A, SUB_B),
                started_at=started,
                finished_at=started + dt.timedelta(seconds=42),
                counts={"vaults": 12, "opened": index},
                errors=errors,
                trigger=ScanTrigger.TIMER,
            )
        )

    runs = store.scan_runs(limit=2)
    assert [run.scan_id for run in runs] == ["s2", "s1"]
    assert runs[0] == ScanRun(
        scan_id="s2",
        scope=(SUB_A, SUB_B),
        started_at=T0 + 2 * HOUR,
        finished_at=T0 + 2 * HOUR + dt.timedelta(seconds=42),
        counts={"vaults": 12, "opened": 2},
        errors=errors,
        trigger=ScanTrigger.TIMER,
    )
    assert len(store.scan_runs()) == 3


def test_a_scan_run_keeps_its_trigger_and_error_sources_as_text_and_reads_back_enums(
    store: EntityStore,
) -> None:
    error = ScanError(source=ErrorSource.RESOURCE_GRAPH, scope=SUB_A, message="throttled", code="429")
    store.record_scan(
        ScanRun(
            scan_id="s1",
            scope=(SUB_A,),
            started_at=T0,
            finished_at=T0,
            errors=(error,),
            trigger=ScanTrigger.HTTP,
        )
    )
    [stored] = store.backend.query(SCANS)
    assert stored.properties["trigger"] == "http"
    assert codec.get_json(stored.properties, "errors", [])[0]["source"] == "resource-graph"
    [run] = store.scan_runs()
    assert type(run.trigger) is ScanTrigger and run.trigger == ScanTrigger.HTTP
    assert type(run.errors[0].source) is ErrorSource and run.errors == (error,)

    # As a later kvmon may write it, with a trigger and an error source this one does not know.
    later = {**stored.properties, "trigger": "event-grid"}
    codec.put_json(later, "errors", [{"source": "satellite", "scope": SUB_A, "message": "m", "code": None}])
    store.backend.submit(SCANS, [Operation("upsert", Entity(stored.partition, stored.row, later))])
    [run] = store.scan_runs()
    assert run.trigger == ScanTrigger.UNKNOWN
    assert run.errors == (ScanError(source=ErrorSource.UNKNOWN, scope=SUB_A, message="m"),)


# -- outbox -----------------------------------------------------------------------------------------


def message(message_id: str = "scan-1:teams") -> OutboxMessage:
    return OutboxMessage(
        id=message_id, channel="teams", payload={"type": "message", "text": "x" * 50}, created_at=T0
    )


def test_enqueue_is_idempotent_by_id(store: EntityStore) -> None:
    store.enqueue_messages([message(), message("scan-1:slack/#sec?x")])
    store.enqueue_messages([dataclasses.replace(message(), payload={"changed": True})])

    pending = store.pending_messages()
    assert [m.id for m in pending] == ["scan-1:slack/#sec?x", "scan-1:teams"]
    assert next(m for m in pending if m.id == "scan-1:teams").payload == message().payload


def test_claim_and_finish(store: EntityStore) -> None:
    store.enqueue_messages([message()])
    read = store.pending_messages()[0]

    claimed = store.claim_message(read, lease_until=T0 + dt.timedelta(minutes=5), now=T0)
    assert claimed is not None and claimed.lease_until == T0 + dt.timedelta(minutes=5)
    assert store.claim_message(read, lease_until=T0 + HOUR) is None  # stale: another sender has it
    again = store.pending_messages()[0]
    assert (
        store.claim_message(again, lease_until=T0 + HOUR, now=T0 + dt.timedelta(minutes=1)) is None
    )  # leased

    store.finish_message(claimed, delivered=False, error="HTTP 429 from channel teams", now=T0)
    retry = store.pending_messages()[0]
    assert (retry.attempts, retry.last_error, retry.lease_until) == (1, "HTTP 429 from channel teams", None)

    second = store.claim_message(retry, lease_until=T0 + HOUR, now=T0 + dt.timedelta(minutes=2))
    assert second is not None
    store.finish_message(second, delivered=True, error=None, now=T0 + dt.timedelta(minutes=3))
    assert store.pending_messages() == []
    store.finish_message(
        second, delivered=False, error="late failure", now=T0 + HOUR
    )  # never undoes delivery
    assert store.pending_messages() == []
    assert store.claim_message(second, lease_until=T0 + 2 * HOUR) is None


def test_two_stores_on_the_same_data_see_each_other(make_store: StoreFactory) -> None:
    writer, reader = make_store(), make_store()
    writer.save_findings([record(finding())])
    writer.enqueue_messages([message()])

    assert len(reader.load_findings()) == 1
    assert reader.pending_messages()[0].state == MessageState.PENDING


def test_description_names_the_store_without_secrets(store: EntityStore) -> None:
    text = store.describe()
    assert (
        "AccountKey" not in text
        and "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq" not in text
    )
    assert text.startswith(("SQLite at ", "Azure Table storage at http://127.0.0.1:"))


def test_history_is_per_vault_inside_the_subscription_partition_newest_first(store: EntityStore) -> None:
    # "kv-a" is a prefix of "kv-a1": their rows share the subscription's partition, never mix.
    short, long = posture("kv-a"), posture("kv-a1")
    other = posture("kv-a", subscription=SUB_B)
    for hour, action in enumerate(("Deny", "Allow", "Deny")):
        store.save_postures(
            PostureSnapshot(
                dataclasses.replace(p, default_action=action), scan_id=f"s{hour}", seen_at=T0 + hour * HOUR
            )
            for p in (short, long, other)
        )

    for vault in (short, long, other):
        history = store.posture_history(vault.id.upper())
        assert [(s.posture.key, s.scan_id) for s in history] == [
            (vault.key, "s0"),
            (vault.key, "s1"),
            (vault.key, "s2"),
        ]

    rows = list(store.backend.query(HISTORY, partition=partition_for_vault(short.key)))
    owners = [row.properties["vault_key"] for row in rows]
    assert sorted(set(owners)) == sorted({short.key, long.key})
    assert owners == sorted(owners, key=owners.index)  # each vault's rows are one run
    for vault in (short, long):
        seen = [row.properties["seen_at"] for row in rows if row.properties["vault_key"] == vault.key]
        assert seen == sorted(seen, reverse=True)


def test_history_written_before_it_held_only_superseded_versions_reads_without_duplicates(
    store: EntityStore,
) -> None:
    first = posture()
    store.save_postures([PostureSnapshot(first, scan_id="s1", seen_at=T0)])
    # Such a store kept the current version in history too, in the row it still gets.
    [current] = store.backend.query(POSTURES)
    store.backend.submit(
        HISTORY,
        [
            Operation(
                "upsert",
                Entity(current.partition, _history_row(first.key, current.properties), current.properties),
            )
        ],
    )

    assert [s.scan_id for s in store.posture_history(first.id)] == ["s1"]
    loosened = dataclasses.replace(first, default_action="Allow")
    store.save_postures([PostureSnapshot(loosened, scan_id="s2", seen_at=T0 + HOUR)])
    assert [s.scan_id for s in store.posture_history(first.id)] == ["s1", "s2"]
    assert len(list(store.backend.query(HISTORY))) == 1


def test_a_scan_stopped_between_the_two_writes_of_a_change_loses_no_version(store: EntityStore) -> None:
    first = posture()
    store.save_postures([PostureSnapshot(first, scan_id="s1", seen_at=T0)])
    real = store.backend

    def fail() -> None:
        raise StoreUnavailable("the store went away after the history write")

    store.backend = InterruptingBackend(real, POSTURES, fail)
    loosened = dataclasses.replace(first, default_action="Allow")
    with pytest.raises(StoreUnavailable):
        store.save_postures([PostureSnapshot(loosened, scan_id="s2", seen_at=T0 + HOUR)])
    assert len(list(real.query(HISTORY))) == 1  # the superseded version is in history, and current
    assert [s.scan_id for s in store.posture_history(first.id)] == ["s1"]

    store.backend = real
    store.save_postures([PostureSnapshot(loosened, scan_id="s3", seen_at=T0 + 2 * HOUR)])
    assert [(s.scan_id, s.posture.default_action) for s in store.posture_history(first.id)] == [
        ("s1", "Deny"),
        ("s3", "Allow"),
    ]
    assert len(list(real.query(HISTORY))) == 1


def test_a_change_another_scan_made_meanwhile_stays_in_history(make_store: StoreFactory) -> None:
    ours, theirs = make_store(), make_store()
    first = posture()
    ours.save_postures([PostureSnapshot(first, scan_id="s1", seen_at=T0)])
    loosened = dataclasses.replace(first, default_action="Allow")
    locked = dataclasses.replace(first, public_network_access="Disabled")

    # Between our read and our write, another scan replaces the version we read.
    def other_scan() -> None:
        theirs.save_postures([PostureSnapshot(loosened, scan_id="s2", seen_at=T0 + HOUR)])

    ours.backend = InterruptingBackend(ours.backend, HISTORY, other_scan)
    ours.save_postures([PostureSnapshot(locked, scan_id="s3", seen_at=T0 + 2 * HOUR)])

    history = theirs.posture_history(first.id)
    assert [(s.scan_id, s.posture) for s in history] == [("s1", first), ("s2", loosened), ("s3", locked)]
    assert theirs.load_postures()[first.key].posture == locked


@pytest.mark.parametrize("ours_changes", [True, False], ids=["ours-changed", "ours-as-read"])
def test_a_posture_written_by_another_scan_after_our_load_is_not_lost(
    make_store: StoreFactory, ours_changes: bool
) -> None:
    """A one-vault scan saves from the copy its load read (no second read), on the copy's etag:
    another scan's write in between fails that write and the vault is decided again on a fresh
    read. A copy that says "unchanged" is confirmed by a read, so the later scan still wins."""
    ours, theirs = make_store(), make_store()
    first = posture()
    theirs.save_postures([PostureSnapshot(first, scan_id="s1", seen_at=T0)])
    assert ours.load_postures(vault_keys=[first.key])[first.key].posture == first  # our copy
    loosened = dataclasses.replace(first, default_action="Allow")
    theirs.save_postures([PostureSnapshot(loosened, scan_id="s2", seen_at=T0 + HOUR)])

    ours_read = dataclasses.replace(first, public_network_access="Disabled") if ours_changes else first
    ours.save_postures([PostureSnapshot(ours_read, scan_id="s3", seen_at=T0 + 2 * HOUR)])

    history = theirs.posture_history(first.id)
    assert [(s.scan_id, s.posture) for s in history] == [("s1", first), ("s2", loosened), ("s3", ours_read)]
    assert theirs.load_postures()[first.key].posture == ours_read


def test_two_scans_marking_one_subscription_from_their_loads_keep_both_marks(
    make_store: StoreFactory,
) -> None:
    """The last-seen marker is merged from the copy a load read; the write is conditional on it,
    so a scan that merged into a copy another scan made stale merges again (nothing lost)."""
    ours, theirs = make_store(), make_store()
    mine, other = finding("kv-mine"), finding("kv-other")
    ours.save_findings([record(mine), record(other)])
    assert len(ours.load_findings(vault_keys=[mine.vault_id.lower()])) == 1  # reads the marker, kept

    assert theirs.mark_findings_seen([other.vault_id.lower()], seen_at=T0 + HOUR, scan_id="s-theirs") == 1
    assert ours.mark_findings_seen([mine.vault_id.lower()], seen_at=T0 + HOUR, scan_id="s-ours") == 1

    loaded = theirs.load_findings()
    assert loaded[record(mine).id].last_seen == T0 + HOUR
    assert loaded[record(other).id].last_seen == T0 + HOUR


def test_history_rows_of_a_long_vault_key_and_a_long_scan_id_fit(store: EntityStore) -> None:
    group = "rg-" + "\u00e9" * 87  # 90 characters; each "\u00e9" is 6 in a key ("!C3!A9")
    vault = posture(id=vault_id("kv-long", resource_group=group))
    for hour, (scan, action) in enumerate((("s", "Deny"), ("t", "Allow"), ("u", "Deny"))):
        changed = dataclasses.replace(vault, default_action=action)
        store.save_postures([PostureSnapshot(changed, scan_id=scan * 300, seen_at=T0 + hour * HOUR)])

    rows = list(store.backend.query(HISTORY, partition=partition_for_vault(vault.key)))
    assert len(rows) == 2 and all(len(row.row) <= MAX_KEY_CHARS for row in rows)
    assert [s.scan_id for s in store.posture_history(vault.id)] == ["s" * 300, "t" * 300, "u" * 300]
