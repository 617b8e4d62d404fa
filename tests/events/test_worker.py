"""An event as the Functions worker hands it to an Event Grid trigger reads as its raw body does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from monitor.sources.events import EventSchema, Verdict, parse_payload
from tests.events.payloads import SUB, cloud_event, event_grid


def as_the_worker_decodes(event: dict[str, Any]) -> Any:
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


@pytest.mark.parametrize(
    ("event", "schema"), [(event_grid(), EventSchema.EVENT_GRID), (cloud_event(), EventSchema.CLOUD_EVENTS)]
)
def test_the_workers_event_reads_as_its_body(event: dict[str, Any], schema: EventSchema) -> None:
    from_worker = parse_payload(as_the_worker_decodes(event), source="event", subscriptions={SUB})
    from_body = parse_payload(json.dumps(event), source="event", subscriptions={SUB})
    (outcome,) = from_worker.outcomes
    assert outcome.verdict is Verdict.RELEVANT
    assert outcome.schema is schema
    # The worker keeps six digits of the seven Azure sends; nothing else differs.
    assert outcome.change == from_body.outcomes[0].change


def test_the_worker_passes_a_missing_time_on_as_none() -> None:
    event = event_grid()
    del event["eventTime"]
    (outcome,) = parse_payload(as_the_worker_decodes(event), source="event", subscriptions={SUB}).outcomes
    assert outcome.verdict is Verdict.INVALID
    assert outcome.reason == "event: eventTime: expected an ISO 8601 date-time, got null"
