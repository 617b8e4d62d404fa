"""How long one request to a service may take and how often it is tried: a ``RequestBudget`` per
service, turned into azure-core's keyword arguments here and nowhere else.

azure-core's ``RequestsTransport`` bounds each try by a connect timeout and a read timeout (the
longest silence while waiting for the answer or between two reads of its body, so an answer whose
body stalls ends at it too); its ``RetryPolicy`` tries again after a timeout, a dropped
connection, throttling (408, 429) or a server error (500, 502, 503, 504), waiting none before the
first retry and then ``backoff_factor × 2``, ``× 4``... seconds, at most ``backoff_max``. A try
that hangs costs at most its connect and its read timeout, so a request that hangs on every try
ends after ``worst_case_s``. Not counted there, and bounded by the scan's deadline instead
(``KVMON_SCAN_DEADLINE``): a ``Retry-After`` a service asks for (azure-core waits as long as it
says), and a body that trickles in faster than the read timeout.

Clients built on azure-core's ``RetryPolicy`` (the management clients, azure-identity,
azure-monitor-query, azure-data-tables) take ``azure_core_options()`` whole; azure-storage-queue
takes its timeouts and retry counts and backs off by its own rule (``monitor.app.queue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestBudget:
    """``timeout_s``: connect and read timeout of each try; ``read_timeout_s`` a longer wait for
    the answer where the service itself takes long to answer (a Log Analytics query);
    ``retries``: tries after the first."""

    timeout_s: float
    retries: int
    read_timeout_s: float | None = None
    backoff_factor_s: float = 0.8
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if self.read_timeout_s is not None and not self.read_timeout_s > 0:
            raise ValueError(f"read_timeout_s must be positive, not {self.read_timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, not {self.retries}")
        if self.backoff_factor_s < 0 or self.backoff_max_s < 0:
            raise ValueError("the backoff must not be negative")

    @property
    def read_s(self) -> float:
        return self.read_timeout_s if self.read_timeout_s is not None else self.timeout_s

    @property
    def tries(self) -> int:
        return self.retries + 1

    @property
    def backoff_s(self) -> float:
        """azure-core's waits between the tries, summed (none before the first retry)."""
        return sum(min(self.backoff_max_s, self.backoff_factor_s * 2**n) for n in range(1, self.retries))

    @property
    def worst_case_s(self) -> float:
        """How long one request can take when every try hangs."""
        return self.tries * (self.timeout_s + self.read_s) + self.backoff_s

    def azure_core_options(self) -> dict[str, Any]:
        """Keyword arguments for an azure-core client (or one call): timeouts and retry policy.
        Every retry count is the same: a try that times out, drops or is throttled is one try."""
        return {
            "connection_timeout": self.timeout_s,
            "read_timeout": self.read_s,
            "retry_total": self.retries,
            "retry_connect": self.retries,
            "retry_read": self.retries,
            "retry_status": self.retries,
            "retry_backoff_factor": self.backoff_factor_s,
            "retry_backoff_max": self.backoff_max_s,
        }
