"""Whatever arrives, parse_payload answers an EventBatch or an EventPayloadError, never a traceback."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from monitor.sources.events import EventBatch, EventPayloadError, Verdict, parse_payload
from tests.events.payloads import SUB, cloud_event, dead_lettered, event_grid

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
TEMPLATES = [event_grid(), cloud_event(), dead_lettered(event_grid())]


def read(body: Any) -> EventBatch | None:
    try:
        return parse_payload(body, source="event", subscriptions={SUB})
    except EventPayloadError:
        return None


@given(st.binary(max_size=200))
def test_any_bytes(body: bytes) -> None:
    read(body)


@given(JSON)
def test_any_json(document: Any) -> None:
    read(json.dumps(document).encode())


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    return found


@given(st.sampled_from(TEMPLATES), st.data(), JSON)
def test_any_field_of_a_real_event_replaced_by_anything(
    template: dict[str, Any], data: Any, value: Any
) -> None:
    event = copy.deepcopy(template)
    path = data.draw(st.sampled_from(paths(event)))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    batch = read(json.dumps([event]).encode())
    assert batch is not None  # still an event's shape: a verdict, never an error for the whole body
    (outcome,) = batch.outcomes
    assert (outcome.change is not None) == (outcome.verdict is Verdict.RELEVANT)
