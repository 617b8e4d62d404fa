"""The Functions app against the whole lab with Azurite, as the platform would run it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.azurite import azurite_missing_reason
from lab.credential import LabCredential
from lab.estate import walkthrough_estate
from lab.services import LabServices


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServices]:
    reason = azurite_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with LabServices(walkthrough_estate(), azurite=True) as services:
        yield services


@pytest.fixture
def app_settings(lab: LabServices, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """App settings for a fresh walkthrough estate, set as the platform sets them: in the
    environment. The app's DefaultAzureCredential is the lab's token credential here."""
    lab.use(walkthrough_estate())
    environ = lab.environ()
    _empty_storage(environ["AzureWebJobsStorage"])
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("monitor.app.deployment._CREDENTIAL", LabCredential())
    return environ


def _empty_storage(connection_string: str) -> None:
    """Each test starts with no tables and no queues, as a new deployment would."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    with TableServiceClient.from_connection_string(connection_string) as tables:
        for table in list(tables.list_tables()):
            tables.delete_table(table.name)
    with QueueServiceClient.from_connection_string(connection_string) as queues:
        for queue in list(queues.list_queues()):
            queues.delete_queue(queue.name)
