"""Access-log evidence: who really reached each vault, and each storage account, read from Log Analytics.

One query per workspace per scan covers every vault in it, summarised server-side by vault,
caller address, address authorisation type, subnet, outcome and identity, so what crosses the
wire is a few rows per caller, never the raw log. The query is Key Vault's
(``monitor.sources.keyvault.kql``: its tables, their columns and the outcome derivation); this
module sends it, reads the answer and copes with faults. Storage accounts' logs are read the same
way (``read_storage_workspace``, the query of ``monitor.sources.storage.kql``) into
``StorageLogEvidence``, with the same faults.

The window of a scan is pure (``logs_window``): since the previous scan with a small overlap,
capped, and a configurable look-back on the first run. Faults (partial results, HTTP errors, 429
after retries, timeouts, a redirect to another host) become ``ScanError``s and "evidence
incomplete" notes on every affected vault, never a crash and never silence. The client carries
``EndpointPolicy`` (``monitor.azure_origin``): a redirect away from the configured endpoint is
refused before the query (or a token) is sent there, never an answer judged as Log Analytics'.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsTable

from monitor.azure_errors import error_code, first_line, service_error
from monitor.azure_origin import EndpointPolicy, OffEndpointRequest
from monitor.config.budget import RequestBudget
from monitor.model import (
    CallerActivity,
    ErrorSource,
    LogEvidence,
    Outcome,
    PerimeterAccess,
    PerimeterLogCategory,
    PerimeterLogEvidence,
    ScanError,
)
from monitor.model_storage import StorageLogEvidence, StorageRequestActivity
from monitor.netaddr import AddressSpace
from monitor.sources import nsp_kql
from monitor.sources.keyvault.kql import (
    TABLE_AUTO,
    TABLE_LEGACY,
    TABLE_RESOURCE_SPECIFIC,
    build_summary_query,
    normalise_table,
    normalise_vault_ids,
)
from monitor.sources.storage.kql import build_storage_query, normalise_account_ids

DEFAULT_ENDPOINT = "https://api.loganalytics.io/v1"
# A connection opens in milliseconds or not at all; the answer may take as long as the query.
CONNECT_TIMEOUT_S = 10.0
# A query's own time limit on the server is this much inside kvmon's wait (KVMON_LOGS_TIMEOUT), so
# Log Analytics' error, which says the query ran out of time, arrives before kvmon stops listening.
ANSWER_MARGIN_S = 10
# azure-core tries a POST again only after a 500, 503 or 504 (never after a timeout or a 429), and
# a query that failed twice on the server is better reported than repeated.
RETRIES = 1

# The summary's columns, in the order the query groups them; the reader and the lab both use it.
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SourceTable", "string"),
    ("VaultId", "string"),
    ("CallerAddress", "string"),
    ("AddressAuthType", "string"),
    ("SubnetId", "string"),
    ("Outcome", "string"),
    ("AppId", "string"),
    ("ObjectId", "string"),
    ("Requests", "long"),
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
)

# The perimeter summary's columns (``monitor.sources.nsp_kql``), in the order its query groups them.
PERIMETER_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("VaultId", "string"),
    ("Category", "string"),
    ("SourceAddress", "string"),
    ("SourceAppId", "string"),
    ("MatchedRule", "string"),
    ("TrafficType", "string"),
    ("Profile", "string"),
    ("AccessRulesVersion", "string"),
    ("Requests", "long"),
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
)

# The storage summary's columns (``monitor.sources.storage.kql``): the grouping, then the aggregates.
STORAGE_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SourceTable", "string"),
    ("AccountId", "string"),
    ("CallerAddress", "string"),
    ("Outcome", "string"),
    ("StatusCode", "string"),
    ("StatusText", "string"),
    ("AuthenticationType", "string"),
    ("AppId", "string"),
    ("ObjectId", "string"),
    ("TlsVersion", "string"),
    ("Requests", "long"),
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
    ("SampleClientRequestId", "string"),
    ("SampleUri", "string"),
)

# ---------------------------------------------------------------------------
# The window
# ---------------------------------------------------------------------------


def logs_window(
    *,
    now: dt.datetime,
    previous_scan_end: dt.datetime | None,
    overlap: dt.timedelta = dt.timedelta(minutes=5),
    first_run: dt.timedelta = dt.timedelta(hours=24),
    cap: dt.timedelta = dt.timedelta(hours=24),
) -> tuple[dt.datetime, dt.datetime]:
    """The (start, end) a scan reads: since the previous scan minus ``overlap`` (late-arriving
    rows are not lost), never further back than ``cap``; ``first_run`` back when there was no
    previous scan. A previous end in the future (clock skew) counts as now."""
    for name, moment in (("now", now), ("previous_scan_end", previous_scan_end)):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    if overlap < dt.timedelta(0):
        raise ValueError(f"overlap must not be negative, got {overlap}")
    for name, span in (("first_run", first_run), ("cap", cap)):
        if span <= dt.timedelta(0):
            raise ValueError(f"{name} must be positive, got {span}")
    start = now - first_run if previous_scan_end is None else min(previous_scan_end, now) - overlap
    return max(start, now - cap), now


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@dataclass
class LogsReadResult:
    """One workspace's answer: evidence for every requested vault, and what went wrong."""

    workspace_id: str
    query: str
    evidence: dict[str, LogEvidence] = field(default_factory=dict)  # lower-cased vault id ->
    errors: list[ScanError] = field(default_factory=list)
    source_tables: tuple[str, ...] = ()  # the tables rows came from


class LogsReader:
    """Reads summarised access evidence with azure-monitor-query's ``LogsQueryClient``.

    ``endpoint`` is the Log Analytics query endpoint (sovereign clouds, the lab); the client
    accepts it with or without the ``/v1`` suffix. ``address_space`` is the one private/public
    helper kvmon shares with the probes.
    """

    def __init__(
        self,
        credential: TokenCredential,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        table: str = TABLE_AUTO,
        address_space: AddressSpace | None = None,
        connection_verify: str | bool = True,
        timeout_s: float = 130.0,
        retry_total: int = RETRIES,
        retry_backoff_factor: float = 0.8,
    ) -> None:
        """``timeout_s``: how long to wait for a query's answer (``KVMON_LOGS_TIMEOUT``)."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.table = normalise_table(table)
        self.address_space = address_space or AddressSpace()
        self.budget = RequestBudget(
            timeout_s=min(CONNECT_TIMEOUT_S, timeout_s),
            read_timeout_s=timeout_s,
            retries=retry_total,
            backoff_factor_s=retry_backoff_factor,
        )
        # Log Analytics allows 1 to 600 seconds.
        self.server_timeout_s = max(1, min(600, math.floor(timeout_s) - ANSWER_MARGIN_S))
        self._client = LogsQueryClient(
            credential,
            endpoint=endpoint.rstrip("/"),
            per_retry_policies=[EndpointPolicy(endpoint)],
            connection_verify=connection_verify,
            **self.budget.azure_core_options(),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LogsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_workspace(
        self,
        workspace_id: str,
        vault_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> LogsReadResult:
        """One query for all ``vault_ids`` (empty: every vault the workspace has rows for)."""
        _check_window(window_start, window_end)
        keys = normalise_vault_ids(vault_ids)
        query = build_summary_query(table=self.table, vault_ids=keys)
        result = LogsReadResult(workspace_id=workspace_id, query=query)
        window = _Window(workspace_id, window_start, window_end)

        answer = self._send(workspace_id, query, window_start, window_end)
        if answer.failed is not None:
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, answer.failed, answer.code))
            note = (f"evidence incomplete: {answer.failed}",)
            result.evidence = {key: window.evidence(key, complete=False, notes=note) for key in keys}
            return result
        if answer.partial is not None:
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, answer.partial, "PartialError"))

        parsed = _parse_tables(
            answer.tables, SUMMARY_COLUMNS, lambda values: _activity(values, self.address_space)
        )
        if parsed.problem is not None:
            result.errors.append(
                ScanError(ErrorSource.LOGS, workspace_id, parsed.problem, "UnexpectedResult")
            )
        result.source_tables = tuple(
            sorted({table for by_table in parsed.rows.values() for table in by_table})
        )

        wanted = keys or tuple(sorted(set(parsed.rows) | parsed.bad_vaults))
        for key in wanted:
            by_table = parsed.rows.get(key, {})
            notes: list[str] = []
            if len(by_table) > 1:
                notes.append(
                    f"rows in both {TABLE_RESOURCE_SPECIFIC} and {TABLE_LEGACY} (two diagnostic settings?): "
                    f"counted {TABLE_RESOURCE_SPECIFIC} only"
                )
            chosen = by_table.get(TABLE_RESOURCE_SPECIFIC) or next(iter(by_table.values()), [])
            reasons = parsed.reasons_for(key, partial=answer.partial)
            notes.extend(f"evidence incomplete: {reason}" for reason in reasons)
            result.evidence[key] = window.evidence(
                key, activity=tuple(_ordered(chosen)), complete=not reasons, notes=tuple(notes)
            )
        return result

    def read_perimeter_workspace(
        self,
        workspace_id: str,
        vault_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> PerimeterLogsReadResult:
        """One ``NSPAccessLogs`` query for all ``vault_ids`` (empty: every vault the workspace has
        perimeter rows for). A workspace without the table is a scan error with the code
        ``NSP_TABLE_MISSING``, and every requested vault's evidence incomplete."""
        _check_window(window_start, window_end)
        keys = normalise_vault_ids(vault_ids)
        query = nsp_kql.build_perimeter_query(vault_ids=keys)
        result = PerimeterLogsReadResult(workspace_id=workspace_id, query=query)

        def evidence(
            key: str, access: Sequence[PerimeterAccess] = (), *, reasons: Sequence[str] = ()
        ) -> PerimeterLogEvidence:
            return PerimeterLogEvidence(
                vault_id=key,
                workspace_id=workspace_id,
                window_start=window_start,
                window_end=window_end,
                access=tuple(access),
                complete=not reasons,
                notes=tuple(f"evidence incomplete: {reason}" for reason in reasons),
            )

        answer = self._send(workspace_id, query, window_start, window_end)
        if answer.failed is not None:
            reason, code = answer.failed, answer.code
            if answer.missing_table:
                code = NSP_TABLE_MISSING
                reason = (
                    f"workspace {workspace_id} has no {nsp_kql.TABLE} table: no perimeter's diagnostic "
                    "setting has written to it (add one on the vaults' perimeter, to a workspace inside "
                    "that perimeter); no perimeter log evidence from it"
                )
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, reason, code))
            result.evidence = {key: evidence(key, reasons=(reason,)) for key in keys}
            return result
        if answer.partial is not None:
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, answer.partial, "PartialError"))

        parsed = _parse_tables(
            answer.tables,
            PERIMETER_SUMMARY_COLUMNS,
            lambda values: _perimeter_access(values, self.address_space),
        )
        if parsed.problem is not None:
            result.errors.append(
                ScanError(ErrorSource.LOGS, workspace_id, parsed.problem, "UnexpectedResult")
            )
        for key in keys or tuple(sorted(set(parsed.rows) | parsed.bad_vaults)):
            rows = [item for group in parsed.rows.get(key, {}).values() for item in group]
            result.evidence[key] = evidence(
                key,
                sorted(
                    rows, key=lambda a: (-a.count, a.source_address, a.category.value, a.source_app_id or "")
                ),
                reasons=parsed.reasons_for(key, partial=answer.partial),
            )
        return result

    def read_storage_workspace(
        self,
        workspace_id: str,
        account_ids: Sequence[str],
        *,
        window_start: dt.datetime,
        window_end: dt.datetime,
    ) -> StorageLogsReadResult:
        """One query over the four storage tables for all ``account_ids`` (at least one). Faults
        are the vault read's: a failed read makes every account's evidence incomplete, a partial
        one or a bad row marks the accounts it may concern."""
        _check_window(window_start, window_end)
        keys = normalise_account_ids(account_ids)
        query = build_storage_query(account_ids=keys)
        result = StorageLogsReadResult(workspace_id=workspace_id, query=query)

        def evidence(
            key: str, activity: Sequence[StorageRequestActivity] = (), *, reasons: Sequence[str] = ()
        ) -> StorageLogEvidence:
            return StorageLogEvidence(
                account_id=key,
                workspace_id=workspace_id,
                window_start=window_start,
                window_end=window_end,
                activity=tuple(activity),
                complete=not reasons,
                notes=tuple(f"evidence incomplete: {reason}" for reason in reasons),
            )

        answer = self._send(workspace_id, query, window_start, window_end)
        if answer.failed is not None:
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, answer.failed, answer.code))
            result.evidence = {key: evidence(key, reasons=(answer.failed,)) for key in keys}
            return result
        if answer.partial is not None:
            result.errors.append(ScanError(ErrorSource.LOGS, workspace_id, answer.partial, "PartialError"))

        parsed = _parse_tables(
            answer.tables,
            STORAGE_SUMMARY_COLUMNS,
            lambda values: _storage_activity(values, self.address_space),
            key_column="AccountId",
        )
        if parsed.problem is not None:
            result.errors.append(
                ScanError(ErrorSource.LOGS, workspace_id, parsed.problem, "UnexpectedResult")
            )
        result.source_tables = tuple(
            sorted({table for by_table in parsed.rows.values() for table in by_table})
        )
        for key in keys:
            # Each table is another service of the account: every row counts.
            rows = [item for group in parsed.rows.get(key, {}).values() for item in group]
            result.evidence[key] = evidence(
                key,
                sorted(
                    rows,
                    key=lambda a: (
                        -a.count,
                        a.caller_address,
                        a.source_table,
                        a.outcome.value,
                        a.identity or "",
                    ),
                ),
                reasons=parsed.reasons_for(key, partial=answer.partial),
            )
        return result

    def _send(
        self, workspace_id: str, query: str, window_start: dt.datetime, window_end: dt.datetime
    ) -> _Answer:
        """The query's answer, or why there is none: faults become words, never exceptions."""
        statuses: list[int] = []  # of every answer, retries included: a failure's status
        try:
            response = self._client.query_workspace(
                workspace_id,
                query,
                timespan=(window_start, window_end),
                server_timeout=self.server_timeout_s,
                raw_response_hook=lambda pipeline_response: statuses.append(
                    pipeline_response.http_response.status_code
                ),
            )
        except HttpResponseError as exc:
            reason = _http_reason(exc)
            return _Answer(failed=reason, code=error_code(exc), missing_table=_missing_table(exc, reason))
        except AzureError as exc:
            reason = f"query failed: {first_line(str(exc)) or type(exc).__name__}"
            return _Answer(failed=reason, code=type(exc).__name__)
        except OffEndpointRequest as exc:
            return _Answer(failed=f"query stopped: {exc}", code=exc.code)
        except ValueError:
            # The SDK decodes error bodies as JSON; a gateway's HTML page or an empty body
            # raises here, outside its own error types.
            status = statuses[-1] if statuses else None
            reason = f"query failed (HTTP {status}): the answer was not JSON"
            return _Answer(failed=reason, code=str(status) if status else "InvalidResponse")
        if isinstance(response, LogsQueryPartialResult):
            return _Answer(tables=response.partial_data or [], partial=_partial_reason(response))
        return _Answer(tables=response.tables)


# The code of the scan error for a workspace without NSPAccessLogs.
NSP_TABLE_MISSING = "NSPAccessLogsNotFound"


@dataclass
class PerimeterLogsReadResult:
    """One workspace's perimeter access logs: evidence for every requested vault, and what went wrong."""

    workspace_id: str
    query: str
    evidence: dict[str, PerimeterLogEvidence] = field(default_factory=dict)  # lower-cased vault id ->
    errors: list[ScanError] = field(default_factory=list)


@dataclass
class StorageLogsReadResult:
    """One workspace's storage logs: evidence for every requested account, and what went wrong."""

    workspace_id: str
    query: str
    evidence: dict[str, StorageLogEvidence] = field(default_factory=dict)  # lower-cased account id ->
    errors: list[ScanError] = field(default_factory=list)
    source_tables: tuple[str, ...] = ()  # the tables rows came from


@dataclass(frozen=True)
class _Answer:
    tables: Sequence[LogsTable] = ()
    partial: str | None = None  # a partial result: why
    failed: str | None = None  # nothing was read: why
    code: str | None = None
    missing_table: bool = False  # "Failed to resolve table": the queried table does not exist


def _check_window(window_start: dt.datetime, window_end: dt.datetime) -> None:
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("window_start and window_end must be timezone-aware")
    if window_start >= window_end:
        raise ValueError(f"empty window: {window_start.isoformat()} is not before {window_end.isoformat()}")


def _missing_table(exc: HttpResponseError, reason: str) -> bool:
    """Log Analytics' semantic error for a table the workspace does not have: "'where' operator:
    Failed to resolve table or column expression named 'NSPAccessLogs'"."""
    return exc.status_code == 400 and "failed to resolve table" in reason.lower()


@dataclass(frozen=True)
class _Window:
    workspace_id: str
    start: dt.datetime
    end: dt.datetime

    def evidence(
        self,
        key: str,
        *,
        activity: tuple[CallerActivity, ...] = (),
        complete: bool = True,
        notes: tuple[str, ...] = (),
    ) -> LogEvidence:
        return LogEvidence(
            vault_id=key,
            workspace_id=self.workspace_id,
            window_start=self.start,
            window_end=self.end,
            activity=activity,
            complete=complete,
            notes=notes,
        )


_Item = TypeVar("_Item", CallerActivity, PerimeterAccess, StorageRequestActivity)


@dataclass
class _Parsed(Generic[_Item]):
    rows: dict[str, dict[str, list[_Item]]] = field(default_factory=lambda: defaultdict(dict))
    problem: str | None = None
    bad_vaults: set[str] = field(default_factory=set)
    unattributed: bool = False  # a bad row whose vault is unknown: every vault may be affected

    def reasons_for(self, key: str, *, partial: str | None) -> list[str]:
        """Why ``key``'s evidence is incomplete: a partial answer or a bad row whose vault is
        unknown concern every vault, a bad row of its own only this one."""
        reasons = [partial] if partial else []
        if self.problem is not None and (self.unattributed or key in self.bad_vaults):
            reasons.append(self.problem)
        return reasons


def _parse_tables(
    tables: Sequence[LogsTable],
    columns: Sequence[tuple[str, str]],
    read_row: Callable[[Mapping[str, Any]], tuple[str, _Item] | None],
    *,
    key_column: str = "VaultId",
) -> _Parsed[_Item]:
    """Rows by resource (``key_column``: the vault's, or the account's) and by ``SourceTable``
    (one group when the result has no such column); ``read_row`` gives (resource, item), None for
    a row it cannot read."""
    parsed: _Parsed[_Item] = _Parsed()
    bad_rows = 0
    for table in tables:
        if not table.rows:
            continue
        missing = [name for name, _ in columns if name not in table.columns]
        if missing:
            parsed.problem = f"result table {table.name!r} lacks columns {', '.join(missing)}"
            parsed.unattributed = True
            return parsed
        for row in table.rows:
            values = dict(zip(table.columns, row, strict=False))
            vault = _text(values.get(key_column)).lower()
            read = read_row(values) if vault else None
            if read is None:
                bad_rows += 1
                if vault:
                    parsed.bad_vaults.add(vault)
                else:
                    parsed.unattributed = True
                continue
            source = _text(values.get("SourceTable")) or "unknown"
            parsed.rows[vault].setdefault(source, []).append(read[1])
    if bad_rows:
        parsed.problem = f"{bad_rows} result row(s) could not be read"
    return parsed


def _activity(values: Mapping[str, Any], space: AddressSpace) -> tuple[str, CallerActivity] | None:
    try:
        outcome = Outcome(_text(values.get("Outcome")))
        count = int(values.get("Requests") or 0)
    except (TypeError, ValueError):
        return None
    vault = _text(values.get("VaultId")).lower()
    caller = _text(values.get("CallerAddress"))
    app_id = _text(values.get("AppId")) or None
    object_id = _text(values.get("ObjectId")) or None
    return vault, CallerActivity(
        vault_id=vault,
        caller_address=caller,
        address_private=space.is_private(caller),
        address_auth_type=_text(values.get("AddressAuthType")) or None,
        subnet_id=_text(values.get("SubnetId")).lower() or None,
        outcome=outcome,
        identity=app_id or object_id,
        count=count,
        first_seen=_moment(values.get("FirstSeen")),
        last_seen=_moment(values.get("LastSeen")),
        identity_object_id=object_id,
    )


def _perimeter_access(values: Mapping[str, Any], space: AddressSpace) -> tuple[str, PerimeterAccess] | None:
    try:
        category = PerimeterLogCategory.parse(_text(values.get("Category")))
        count = int(values.get("Requests") or 0)
    except (TypeError, ValueError):
        return None
    vault = _text(values.get("VaultId")).lower()
    source = _text(values.get("SourceAddress"))
    return vault, PerimeterAccess(
        vault_id=vault,
        category=category,
        source_address=source,
        address_private=bool(source) and space.is_private(source),
        source_app_id=_text(values.get("SourceAppId")) or None,
        matched_rule=_text(values.get("MatchedRule")) or None,
        traffic_type=_text(values.get("TrafficType")) or None,
        profile=_text(values.get("Profile")) or None,
        access_rules_version=_text(values.get("AccessRulesVersion")) or None,
        count=count,
        first_seen=_moment(values.get("FirstSeen")),
        last_seen=_moment(values.get("LastSeen")),
    )


def _storage_activity(
    values: Mapping[str, Any], space: AddressSpace
) -> tuple[str, StorageRequestActivity] | None:
    try:
        outcome = Outcome(_text(values.get("Outcome")))
        count = int(values.get("Requests") or 0)
    except (TypeError, ValueError):
        return None
    account = _text(values.get("AccountId")).lower()
    caller = _text(values.get("CallerAddress"))
    app_id = _text(values.get("AppId")) or None
    object_id = _text(values.get("ObjectId")) or None
    return account, StorageRequestActivity(
        account_id=account,
        source_table=_text(values.get("SourceTable")) or "unknown",
        caller_address=caller,
        address_private=bool(caller) and space.is_private(caller),
        outcome=outcome,
        status_code=_text(values.get("StatusCode")) or None,
        status_text=_text(values.get("StatusText")) or None,
        authentication_type=_text(values.get("AuthenticationType")) or None,
        identity=app_id or object_id,
        identity_object_id=object_id,
        tls_version=_text(values.get("TlsVersion")) or None,
        count=count,
        first_seen=_moment(values.get("FirstSeen")),
        last_seen=_moment(values.get("LastSeen")),
        sample_client_request_id=_text(values.get("SampleClientRequestId")) or None,
        sample_uri=_text(values.get("SampleUri")) or None,
    )


def _ordered(activity: Iterable[CallerActivity]) -> list[CallerActivity]:
    """Busiest first, then stable by address, so output and evidence do not shuffle."""
    return sorted(activity, key=lambda a: (-a.count, a.caller_address, a.outcome.value, a.identity or ""))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _moment(value: Any) -> dt.datetime | None:
    """A result time as an aware UTC datetime (the SDK parses ``datetime`` columns; strings
    are what it leaves when it cannot)."""
    if isinstance(value, str) and value:
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


def _http_reason(exc: HttpResponseError) -> str:
    """The status and what Log Analytics said (``service_error``: the innermost ``innererror`` is
    where it says what is wrong with the query)."""
    status = exc.status_code
    detail = service_error(exc) or first_line(exc.message or str(exc))
    if status == 429:
        return f"throttled by Log Analytics (HTTP 429) after retries: {detail}"
    return f"query failed (HTTP {status}): {detail}" if status else f"query failed: {detail}"


def _partial_reason(response: LogsQueryPartialResult) -> str:
    error = response.partial_error
    if error is None:
        return "partial result"
    parts = [part for part in (error.code, first_line(error.message or "")) if part]
    for detail in error.details or []:
        message = first_line(str(detail.get("message") or "")) if isinstance(detail, Mapping) else ""
        if message and message not in parts:
            parts.append(message)
            break
    return "partial result: " + ": ".join(parts)
