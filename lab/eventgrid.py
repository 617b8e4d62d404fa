"""Event Grid for the lab: what a subscription's system topic publishes, and (below) delivery.

``PublishedEvent`` is one event of a ``Microsoft.Resources.Subscriptions`` system topic as ARM
hands it to Event Grid (the lab's ARM builds them, see ``lab.arm``); ``rendered(schema)`` gives it
in an event subscription's delivery schema: the Event Grid schema (``topic, subject, eventType,
eventTime, id, data, dataVersion, metadataVersion``) or CloudEvents 1.0 (``source, subject, type,
time, id, data, specversion``), in the shape of Azure's published examples
(azure-rest-api-specs, ``eventgrid/data-plane/Microsoft.Resources/stable/2018-01-01/examples``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventSchema(StrEnum):
    """An event subscription's ``eventDeliverySchema``."""

    EVENT_GRID = "EventGridSchema"
    CLOUD_EVENTS = "CloudEventSchemaV1_0"


class ResourceEventType(StrEnum):
    """The system topic's event types the lab's ARM publishes (succeeded writes only)."""

    WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
    DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"


# What Azure's Microsoft.Resources events carry: data version 2, metadata version 1.
DATA_VERSION = "2"
METADATA_VERSION = "1"


@dataclass(frozen=True)
class PublishedEvent:
    """One event as its topic published it, before a subscription renders it in its schema."""

    id: str
    topic: str  # /subscriptions/{id} for a subscription's system topic
    subject: str  # the resource id
    event_type: ResourceEventType
    event_time: dt.datetime  # aware
    data: Mapping[str, Any]

    def rendered(self, schema: EventSchema) -> dict[str, Any]:
        if schema is EventSchema.CLOUD_EVENTS:
            return {
                "source": self.topic,
                "subject": self.subject,
                "type": self.event_type.value,
                "time": azure_time(self.event_time),
                "id": self.id,
                "data": dict(self.data),
                "specversion": "1.0",
            }
        return {
            "subject": self.subject,
            "eventType": self.event_type.value,
            "eventTime": azure_time(self.event_time),
            "id": self.id,
            "data": dict(self.data),
            "dataVersion": DATA_VERSION,
            "metadataVersion": METADATA_VERSION,
            "topic": self.topic,
        }


def azure_time(moment: dt.datetime) -> str:
    """Event Grid's timestamps: UTC with seven fractional digits (``2018-07-19T18:38:04.6117357Z``),
    one more than Python parses, which the Functions worker strips."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
