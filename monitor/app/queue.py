"""The scan-job queue the scheduled scan fans out to (azure-storage-queue).

Messages are base64 text, the encoding the Functions queue trigger expects by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy


def scan_queue(environ: Mapping[str, str], queue_name: str, *, credential: Callable[[], Any]) -> QueueClient:
    """The queue on kvmon's storage (``KVMON_STORAGE``, else the host's ``AzureWebJobsStorage``,
    else its identity-based ``AzureWebJobsStorage__queueServiceUri``/``__accountName``), created
    when missing. ``credential`` is called only for identity-based access."""
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    connection_string = (environ.get("KVMON_STORAGE") or environ.get("AzureWebJobsStorage") or "").strip()
    if connection_string:
        queue = QueueClient.from_connection_string(connection_string, queue_name, **policies)
    else:
        account_url = (environ.get("AzureWebJobsStorage__queueServiceUri") or "").strip()
        account_name = (environ.get("AzureWebJobsStorage__accountName") or "").strip()
        if not account_url and account_name:
            account_url = f"https://{account_name}.queue.core.windows.net"
        if not account_url:
            raise ValueError(
                "no storage for the scan queue: set AzureWebJobsStorage (or its identity-based "
                "AzureWebJobsStorage__accountName) or KVMON_STORAGE"
            )
        queue = QueueClient(account_url, queue_name, credential=credential(), **policies)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    return queue
