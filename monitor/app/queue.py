"""The scan-job queue the scheduled scan fans out to (azure-storage-queue).

Messages are base64 text, the encoding the Functions queue trigger expects by default.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from monitor.app.deployment import QUEUE_CONNECTION
from monitor.config.budget import RequestBudget
from monitor.httpsession import settled_transport

# Each request to the queue: a message is enqueued in milliseconds; 15 s of silence is an outage,
# and the trigger that enqueues (the timer, an event's probe follow-up) fails so the platform tries
# it again, rather than waiting out the SDK's default (60 s reads, three retries). The storage SDK
# backs off by its own rule (18 s ± 3 s before the first retry), so one retry: 2 × (5 + 15) + 21 s.
QUEUE_BUDGET = RequestBudget(timeout_s=5, read_timeout_s=15, retries=1)

# Queue clients this process opened (and made sure their queue exists), by storage and queue
# name: the event path queues a follow-up per event, and building a client and sending a create
# before every message was a round trip and a new connection on each one.
_OPENED: dict[tuple[str, str], QueueClient] = {}
_OPENED_LOCK = threading.Lock()


def scan_queue(environ: Mapping[str, str], queue_name: str, *, credential: Callable[[], Any]) -> QueueClient:
    """The queue ``queue_name`` where the queue triggers listen: the ``QUEUE_CONNECTION`` storage
    (``AzureWebJobsStorage``), resolved as the Functions host resolves a connection, a connection
    string or its identity-based ``__queueServiceUri``/``__accountName``; created when missing, once
    per process for the same storage and name. ``credential`` is called only for identity-based
    access. Never ``KVMON_STORAGE``: that account holds findings, and a job enqueued there would
    reach no worker."""
    connection_string = (environ.get(QUEUE_CONNECTION) or "").strip()
    account_url = ""
    if not connection_string:
        account_url = (environ.get(f"{QUEUE_CONNECTION}__queueServiceUri") or "").strip()
        account_name = (environ.get(f"{QUEUE_CONNECTION}__accountName") or "").strip()
        if not account_url and account_name:
            account_url = f"https://{account_name}.queue.core.windows.net"
        if not account_url:
            raise ValueError(
                f"no storage for the queue {queue_name}: set {QUEUE_CONNECTION} (or its identity-based "
                f"{QUEUE_CONNECTION}__accountName), the storage the queue triggers listen on"
            )
    key = (connection_string or account_url, queue_name)
    with _OPENED_LOCK:
        opened = _OPENED.get(key)
    if opened is not None:
        return opened
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
        **QUEUE_BUDGET.azure_core_options(),
        # A given transport ignores the client's timeouts: it takes them itself.
        "transport": settled_transport(
            connection_timeout=QUEUE_BUDGET.timeout_s, read_timeout=QUEUE_BUDGET.read_s
        ),
    }
    if connection_string:
        queue = QueueClient.from_connection_string(connection_string, queue_name, **policies)
    else:
        queue = QueueClient(account_url, queue_name, credential=credential(), **policies)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    with _OPENED_LOCK:
        return _OPENED.setdefault(key, queue)


def send_scan_job(
    environ: Mapping[str, str], queue_name: str, message: str, *, credential: Callable[[], Any]
) -> None:
    """Put one message on the queue. A queue deleted since this process opened it is created
    again, and the message sent once more."""
    queue = scan_queue(environ, queue_name, credential=credential)
    try:
        queue.send_message(message)
    except ResourceNotFoundError:
        with _OPENED_LOCK:
            for key, opened in list(_OPENED.items()):
                if opened is queue:
                    del _OPENED[key]
        scan_queue(environ, queue_name, credential=credential).send_message(message)
