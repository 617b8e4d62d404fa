"""EventBatch: duplicates folded, changes grouped per vault, the newest actor, whatever the order."""

from __future__ import annotations

import itertools
import json
from typing import Any

from monitor.sources.events import EventBatch, Verdict, parse_payload
from tests.events.payloads import (
    CONNECTION,
    OTHER_SUB,
    OTHER_VAULT,
    SUB,
    VAULT,
    cloud_event,
    event_grid,
    service_principal_claims,
)


def parse(body: Any) -> EventBatch:
    return parse_payload(json.dumps(body).encode(), source="event.json", subscriptions={SUB})


def test_a_duplicate_delivery_is_folded_and_counted() -> None:
    batch = parse([event_grid(event_id="a"), event_grid(event_id="a"), event_grid(event_id="b")])
    assert [(o.event_id, o.deliveries) for o in batch.outcomes] == [("a", 2), ("b", 1)]
    assert batch.duplicates == 1
    assert [c.event_id for c in batch.changes] == ["b", "a"]  # same time: the larger id first


def test_copies_that_differ_keep_the_same_one_whatever_their_order() -> None:
    first = event_grid(event_id="a", client_ip="203.0.113.7")
    second = event_grid(event_id="a", client_ip="203.0.113.99")
    kept = {parse(order).changes[0].actor.client_ip for order in ([first, second], [second, first])}
    assert len(kept) == 1


def test_events_without_an_id_are_not_folded_together() -> None:
    broken = event_grid()
    del broken["id"]
    batch = parse([broken, broken])
    assert [o.verdict for o in batch.outcomes] == [Verdict.INVALID, Verdict.INVALID]
    assert batch.duplicates == 0


def test_one_vault_gets_one_group_whatever_its_ids_case() -> None:
    shouting = VAULT.replace("resourceGroups", "RESOURCEGROUPS").replace(SUB, SUB.upper())
    batch = parse(
        [
            event_grid(event_id="a", event_time="2026-12-02T10:00:01Z"),
            event_grid(event_id="b", event_time="2026-12-02T10:00:02Z", resource=shouting),
            event_grid(
                event_id="c",
                event_time="2026-12-02T10:00:03Z",
                resource=CONNECTION,
                operation="Microsoft.KeyVault/vaults/privateEndpointConnections/write",
            ),
            event_grid(event_id="d", resource=OTHER_VAULT),
        ]
    )
    assert [(group.vault_id, [c.event_id for c in group.changes]) for group in batch.vaults] == [
        (OTHER_VAULT, ["d"]),
        (VAULT, ["c", "b", "a"]),
    ]
    assert set(batch.actors) == {OTHER_VAULT.lower(), VAULT.lower()}


def test_the_newest_actor_wins_and_every_actor_is_kept() -> None:
    alice = event_grid(event_id="a", event_time="2026-12-02T10:00:01Z")
    pipeline = event_grid(event_id="b", event_time="2026-12-02T10:00:09Z", claims=service_principal_claims())
    (group,) = parse([pipeline, alice]).vaults
    assert group.actor.upn is None and group.actor.app_id == service_principal_claims()["appid"]
    assert [actor.who for actor in group.actors] == [service_principal_claims()["appid"], "alice@contoso.com"]


def test_an_event_without_a_time_counts_as_the_oldest() -> None:
    timeless = cloud_event(event_id="z", claims=service_principal_claims())
    del timeless["time"]
    timed = cloud_event(event_id="a", event_time="2020-01-01T00:00:00Z")
    (group,) = parse([timeless, timed]).vaults
    assert group.actor.upn == "alice@contoso.com"
    assert group.changes[-1].event_time is None


def test_a_deployments_double_events_share_one_get() -> None:
    # A template deployment: two writes of one vault, one correlation id, one person.
    batch = parse(
        [
            event_grid(event_id="a", event_time="2026-12-02T10:00:01Z", correlation_id="deploy-1"),
            event_grid(event_id="b", event_time="2026-12-02T10:00:02Z", correlation_id="deploy-1"),
        ]
    )
    (group,) = batch.vaults
    assert len(group.changes) == 2
    assert {change.correlation_id for change in group.changes} == {"deploy-1"}
    assert group.actor.changed_at is not None and group.actor.changed_at.second == 2


MIXED = [
    event_grid(event_id="a", event_time="2026-12-02T10:00:01Z", correlation_id="deploy-1"),
    event_grid(
        event_id="b",
        event_time="2026-12-02T10:00:02Z",
        correlation_id="deploy-1",
        claims=service_principal_claims(),
    ),
    event_grid(
        event_id="b",
        event_time="2026-12-02T10:00:02Z",
        correlation_id="deploy-1",
        claims=service_principal_claims(),
    ),
    cloud_event(
        event_id="c",
        event_time="2026-12-02T10:00:02Z",
        resource=CONNECTION,
        operation="Microsoft.KeyVault/vaults/privateEndpointConnections/write",
    ),
    event_grid(event_id="d", resource=OTHER_VAULT, status="Failed"),
    event_grid(event_id="e", resource=VAULT.replace(SUB, OTHER_SUB)),
    event_grid(
        event_id="f",
        resource=OTHER_VAULT,
        event_type="Microsoft.Resources.ResourceDeleteSuccess",
        operation="Microsoft.KeyVault/vaults/delete",
    ),
]


def summary(batch: EventBatch) -> Any:
    return (
        batch.vaults,
        batch.changes,
        batch.actors,
        batch.duplicates,
        {verdict: batch.count(verdict) for verdict in Verdict},
        sorted((o.event_id or "", o.verdict, o.reason, o.deliveries, o.change) for o in batch.outcomes),
    )


def test_the_outcome_does_not_depend_on_the_order_of_events() -> None:
    expected = summary(parse(MIXED))
    assert expected[4] == {
        Verdict.RELEVANT: 4,
        Verdict.IGNORED: 1,
        Verdict.OUT_OF_SCOPE: 1,
        Verdict.INVALID: 0,
    }
    assert expected[3] == 1
    orders = list(itertools.permutations(MIXED))
    assert len(orders) == 5040
    for order in orders[::7]:  # every seventh of the 5040: each event at each place many times
        assert summary(parse(list(order))) == expected
