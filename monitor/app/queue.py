"""The scan-job queue the scheduled scan fans out to (azure-storage-queue).

Messages are base64 text, the encoding the Functions queue trigger expects by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from monitor.app.deployment import QUEUE_CONNECTION
from monitor.config.budget import RequestBudget

# Each request to the queue: a message is enqueued in milliseconds; 15 s of silence is an outage,
# and the trigger that enqueues (the timer, an event's probe follow-up) fails so the platform tries
# it again, rather than waiting out the SDK's default (60 s reads, three retries). The storage SDK
# backs off by its own rule (18 s ± 3 s before the first retry), so one retry: 2 × (5 + 15) + 21 s.
QUEUE_BUDGET = RequestBudget(timeout_s=5, read_timeout_s=15, retries=1)


def scan_queue(environ: Mapping[str, str], queue_name: str, *, credential: Callable[[], Any]) -> QueueClient:
    """The queue ``queue_name`` where the queue triggers listen: the ``QUEUE_CONNECTION`` storage
    (``AzureWebJobsStorage``), resolved as the Functions host resolves a connection, a connection
    string or its identity-based ``__queueServiceUri``/``__accountName``; created when missing.
    ``credential`` is called only for identity-based access. Never ``KVMON_STORAGE``: that account
    holds findings, and a job enqueued there would reach no worker."""
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
        **QUEUE_BUDGET.azure_core_options(),
    }
    connection_string = (environ.get(QUEUE_CONNECTION) or "").strip()
    if connection_string:
        queue = QueueClient.from_connection_string(connection_string, queue_name, **policies)
    else:
        account_url = (environ.get(f"{QUEUE_CONNECTION}__queueServiceUri") or "").strip()
        account_name = (environ.get(f"{QUEUE_CONNECTION}__accountName") or "").strip()
        if not account_url and account_name:
            account_url = f"https://{account_name}.queue.core.windows.net"
        if not account_url:
            raise ValueError(
                f"no storage for the queue {queue_name}: set {QUEUE_CONNECTION} (or its identity-based "
                f"{QUEUE_CONNECTION}__accountName), the storage the queue triggers listen on"
            )
        queue = QueueClient(account_url, queue_name, credential=credential(), **policies)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    return queue
