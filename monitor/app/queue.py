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

from monitor.httpsession import settled_transport

# Queue clients this process opened (and made sure their queue exists), by storage and queue
# name: the event path queues a follow-up per event, and building a client and sending a create
# before every message was a round trip and a new connection on each one.
_OPENED: dict[tuple[str, str], QueueClient] = {}
_OPENED_LOCK = threading.Lock()


def scan_queue(environ: Mapping[str, str], queue_name: str, *, credential: Callable[[], Any]) -> QueueClient:
    """The queue on kvmon's storage (``KVMON_STORAGE``, else the host's ``AzureWebJobsStorage``,
    else its identity-based ``AzureWebJobsStorage__queueServiceUri``/``__accountName``), created
    when missing, once per process for the same storage and name. ``credential`` is called only
    for identity-based access."""
    connection_string = (environ.get("KVMON_STORAGE") or environ.get("AzureWebJobsStorage") or "").strip()
    account_url = ""
    if not connection_string:
        account_url = (environ.get("AzureWebJobsStorage__queueServiceUri") or "").strip()
        account_name = (environ.get("AzureWebJobsStorage__accountName") or "").strip()
        if not account_url and account_name:
            account_url = f"https://{account_name}.queue.core.windows.net"
        if not account_url:
            raise ValueError(
                "no storage for the scan queue: set AzureWebJobsStorage (or its identity-based "
                "AzureWebJobsStorage__accountName) or KVMON_STORAGE"
            )
    key = (connection_string or account_url, queue_name)
    with _OPENED_LOCK:
        opened = _OPENED.get(key)
    if opened is not None:
        return opened
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
        "transport": settled_transport(),
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
