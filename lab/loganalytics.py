"""Log Analytics' query API on loopback: ``POST /v1/workspaces/{id}/query`` in the real REST shape.

What this emulator is, honestly: it cannot run arbitrary KQL. It recognises kvmon's summary
query (``monitor.sources.keyvault.kql.build_summary_query``: the table choice and the vault list are
read from the text, and the text must be exactly what kvmon would build for them) and evaluates that
query's meaning in Python: the rows of ``AZKVAuditLogs`` and/or ``AzureDiagnostics`` for the
vaults whose diagnostic setting (``estate.diagnostics``) points at the workspace, filtered to the
request's ``timespan``, normalised and summarised with the same outcome derivation the KQL
states (documented in ``monitor.sources.keyvault.kql``). Anything else gets a 400 with a Log Analytics error
body. The KQL itself is verified by Microsoft's Kusto language service in the tests
(``tests/kusto``), against schemas of both tables: the two halves together stand in for a
workspace.

Raw rows come from the estate's access log (what the emulated vaults recorded), turned into
each table's columns, plus rows a test ingests directly (``ingest``) to exercise null columns.
Per workspace a test chooses which tables exist (``set_tables``), makes answers partial
(``set_partial``: a 200 with tables and an ``error`` object, as the service reports non-fatal
errors), and injects throttling or stalls through ``server.inject``.

The perimeters' access log ``NSPAccessLogs`` is answered the same way for kvmon's perimeter query
(``monitor.sources.nsp_kql.build_perimeter_query``). Its rows are what a perimeter's diagnostic
setting writes: the lab's data plane reports each decision (``PerimeterAccessRecord``) to
``perimeter_decided``, which writes it to the workspace the perimeter's diagnostic setting names
(``send_perimeter_logs``), or nowhere, as Azure does for a workspace outside the perimeter;
``record_perimeter_access`` writes one to a workspace directly and creates the table with its first
row as Azure does; ``ingest`` adds raw rows. A workspace without the table answers
kvmon's perimeter query with Log Analytics' "Failed to resolve table" error: the query is no fuzzy
union.

The storage services' tables (``StorageBlobLogs``, ``StorageFileLogs``, ``StorageQueueLogs``,
``StorageTableLogs``) answer kvmon's storage query (``monitor.sources.storage.kql.build_storage_query``)
as a fuzzy union: the lab's Storage data plane reports each request it answers to
``storage_request_served``, which writes it to the workspace the service's diagnostic setting names
(``send_storage_logs``, per account and table), or nowhere; ``record_storage_request`` writes one
request's row directly (``StorageRequestRecord``, in the
table's own columns: the caller with its port, the status as a string) and creates the table with
its first row; ``ingest`` adds raw rows. The port stripping and outcome derivation are the query's,
in Python (``storage_caller``, ``storage_outcome``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.estate import AccessRecord, Estate
from lab.http import LabServer, Request, Response
from monitor.sources import nsp_kql
from monitor.sources.keyvault.kql import (
    TABLE_AUTO,
    TABLE_LEGACY,
    TABLE_RESOURCE_SPECIFIC,
    build_summary_query,
)
from monitor.sources.logs import PERIMETER_SUMMARY_COLUMNS, STORAGE_SUMMARY_COLUMNS, SUMMARY_COLUMNS
from monitor.sources.storage import kql as storage_kql

TABLES = (TABLE_RESOURCE_SPECIFIC, TABLE_LEGACY)  # Key Vault's own access-log tables
NSP_TABLE = nsp_kql.TABLE
STORAGE_TABLES = storage_kql.TABLES
KNOWN_TABLES = (*TABLES, NSP_TABLE, *STORAGE_TABLES)
QUERY_PATH = r"/v1/workspaces/(?P<workspace>[^/]+)/query"

RawRow = dict[str, Any]

_ACCOUNT_LIST = re.compile(r"^let KvmonAccounts = dynamic\((\[.*?\])\);$", re.MULTILINE)
_VAULT_LIST = re.compile(r"^let KvmonVaults = dynamic\((\[.*?\])\);$", re.MULTILINE)
_TABLE_LINE = re.compile(r"^// kvmon: Key Vault access summary \(table: (\w+)\)$", re.MULTILINE)
_OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


@dataclass(frozen=True)
class RecordedQuery:
    """What a client sent: for tests that pin the request format."""

    workspace_id: str
    query: str
    timespan: str | None
    prefer: str | None
    body: Mapping[str, Any]


@dataclass(frozen=True)
class PerimeterAccessRecord:
    """One inbound decision a perimeter took for a vault, as its diagnostic setting writes it to
    ``NSPAccessLogs`` (Microsoft's "Diagnostic logs for Network Security Perimeter": ``count`` and
    ``time_end`` only on an aggregate of identical decisions)."""

    time: dt.datetime
    vault_id: str  # ServiceResourceId
    perimeter_id: str  # _ResourceId: the perimeter's diagnostic setting writes the row
    category: str  # NspPublicInboundPerimeterRulesAllowed, ...
    source_address: str = ""
    source_app_id: str = ""
    matched_rule: str = ""  # the access rule's name, written as {"accessRule": name}
    traffic_type: str = "Public"
    profile: str = "defaultProfile"
    access_rules_version: str = "1"
    location: str = "westeurope"
    operation: str = "SecretGet"
    count: int | None = None
    time_end: dt.datetime | None = None

    def row(self) -> RawRow:
        """The row in the table's own column names."""
        return {
            "TimeGenerated": self.time,
            "TimeGeneratedEndTime": self.time_end,
            "Count": self.count,
            "_ResourceId": self.perimeter_id.lower(),
            "Location": self.location,
            "OperationName": self.operation,
            "Category": self.category,
            "ResultDirection": "Inbound",
            "ResultAction": "Approved" if self.category.endswith("Allowed") else "Denied",
            "ServiceResourceId": self.vault_id,
            "Profile": self.profile,
            "AccessRuleVersion": self.access_rules_version,
            "MatchedRule": json.dumps({"accessRule": self.matched_rule}) if self.matched_rule else None,
            "SourceIpAddress": self.source_address or None,
            "SourceAppId": self.source_app_id or None,
            "TrafficType": self.traffic_type,
        }


# The service of a storage table, as its diagnostic setting's resource (the row's _ResourceId) names it.
_STORAGE_SERVICE = {
    "StorageBlobLogs": "blobServices",
    "StorageFileLogs": "fileServices",
    "StorageQueueLogs": "queueServices",
    "StorageTableLogs": "tableServices",
}


@dataclass(frozen=True)
class StorageRequestRecord:
    """One request a storage account's service logged, as its diagnostic setting writes it to the
    service's table (Azure Monitor's reference for StorageBlobLogs and its siblings): the caller's
    address with its port, the status as a string, the requester's ids from the OAuth token."""

    time: dt.datetime
    account_id: str
    table: str = "StorageBlobLogs"
    caller_address: str = ""  # "a.b.c.d:port" or "[v6]:port", as Storage writes it
    status_code: str = "200"
    status_text: str = "Success"
    authentication_type: str = "OAuth"
    requester_app_id: str = ""
    requester_object_id: str = ""
    client_request_id: str = ""
    uri: str = ""
    tls_version: str = "TLS 1.2"
    operation: str = "GetBlob"

    def row(self) -> RawRow:
        """The row in the table's own column names; the row's resource is the account's service."""
        if self.table not in _STORAGE_SERVICE:
            raise ValueError(f"table must be one of {', '.join(STORAGE_TABLES)}, got {self.table!r}")
        return {
            "TimeGenerated": self.time,
            "_ResourceId": f"{self.account_id}/{_STORAGE_SERVICE[self.table]}/default".lower(),
            "AccountName": storage_kql.account_name(self.account_id),
            "OperationName": self.operation,
            "CallerIpAddress": self.caller_address or None,
            "StatusCode": self.status_code or None,
            "StatusText": self.status_text or None,
            "AuthenticationType": self.authentication_type or None,
            "RequesterAppId": self.requester_app_id or None,
            "RequesterObjectId": self.requester_object_id or None,
            "ClientRequestId": self.client_request_id or None,
            "Uri": self.uri or None,
            "TlsVersion": self.tls_version or None,
        }


@dataclass
class _PartialMode:
    message: str
    keep_rows: int | None


@dataclass
class _Workspace:
    tables: tuple[str, ...] = (TABLE_RESOURCE_SPECIFIC,)
    ingested: dict[str, list[RawRow]] = field(default_factory=lambda: {name: [] for name in KNOWN_TABLES})
    partial: _PartialMode | None = None


class BadQuery(Exception):
    """The request cannot be answered; carries the Log Analytics error body."""

    def __init__(self, status: int, code: str, message: str, inner_code: str, inner_message: str) -> None:
        super().__init__(inner_message)
        self.status = status
        self.body = {
            "error": {
                "code": code,
                "message": message,
                "innererror": {"code": inner_code, "message": inner_message},
            }
        }


class LogAnalyticsEmulator:
    def __init__(self, estate: Estate, *, latency_s: float = 0.0) -> None:
        self.estate = estate
        self.server = LabServer(name="loganalytics", latency_s=latency_s)
        self.server.route("POST", QUERY_PATH, self._query, name="query")
        self.queries: list[RecordedQuery] = []
        self._workspaces: dict[str, _Workspace] = {}
        self._perimeter_logs: dict[str, str] = {}  # lower-cased perimeter id -> workspace id
        # (lower-cased account id, table) -> workspace id: a diagnostic setting per service
        self._storage_logs: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> LogAnalyticsEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> LogAnalyticsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """What ``LogsQueryClient(endpoint=...)`` takes, as the public cloud's ``.../v1``."""
        return f"{self.server.url}/v1"

    # -- configuration -------------------------------------------------------------------------

    def set_tables(self, workspace_id: str, *tables: str) -> None:
        """Which access-log tables exist in the workspace (default: ``AZKVAuditLogs`` only; none
        at all is a workspace no diagnostic setting ever wrote to)."""
        unknown = [name for name in tables if name not in KNOWN_TABLES]
        if unknown:
            raise ValueError(f"tables must be some of {', '.join(KNOWN_TABLES)}, got {tables!r}")
        with self._lock:
            self._workspace(workspace_id).tables = tuple(tables)

    def set_partial(self, workspace_id: str, message: str | None, *, keep_rows: int | None = None) -> None:
        """Answer with a partial result (``message`` as the error detail) keeping ``keep_rows``
        rows (all when None); ``message`` None returns to complete answers."""
        with self._lock:
            self._workspace(workspace_id).partial = (
                None if message is None else _PartialMode(message, keep_rows)
            )

    def ingest(self, workspace_id: str, table: str, row: Mapping[str, Any]) -> None:
        """Add one raw row in ``table``'s own column names; absent columns are null. The row is
        read only while the workspace has the table (``set_tables``)."""
        if table not in KNOWN_TABLES:
            raise ValueError(f"table must be one of {', '.join(KNOWN_TABLES)}, got {table!r}")
        with self._lock:
            self._workspace(workspace_id).ingested[table].append(dict(row))

    def send_perimeter_logs(self, perimeter_id: str, workspace_id: str | None) -> None:
        """A diagnostic setting on the perimeter sends its access log to ``workspace_id`` (None: no
        setting, or one to a workspace outside the perimeter, which Azure never delivers to)."""
        with self._lock:
            if workspace_id is None:
                self._perimeter_logs.pop(perimeter_id.lower(), None)
            else:
                self._perimeter_logs[perimeter_id.lower()] = workspace_id

    def perimeter_decided(self, record: PerimeterAccessRecord) -> str | None:
        """What the lab's data plane calls for each inbound decision a perimeter takes: the row goes
        to the workspace the perimeter's diagnostic setting names (returned), or nowhere (None)."""
        with self._lock:
            workspace_id = self._perimeter_logs.get(record.perimeter_id.lower())
        if workspace_id is not None:
            self.record_perimeter_access(workspace_id, record)
        return workspace_id

    def record_perimeter_access(self, workspace_id: str, record: PerimeterAccessRecord) -> None:
        """A perimeter's diagnostic setting writes one decision to the workspace; the first row
        creates ``NSPAccessLogs`` there, as Azure creates a resource-specific table."""
        with self._lock:
            workspace = self._workspace(workspace_id)
            if NSP_TABLE not in workspace.tables:
                workspace.tables = (*workspace.tables, NSP_TABLE)
            workspace.ingested[NSP_TABLE].append(record.row())

    def send_storage_logs(
        self, account_id: str, workspace_id: str | None, *, tables: Iterable[str] = STORAGE_TABLES
    ) -> None:
        """Diagnostic settings on the account's services (one per table's service) send their logs to
        ``workspace_id`` (None: no setting, or one to a workspace outside the account's perimeter)."""
        chosen = tuple(tables)
        unknown = [name for name in chosen if name not in STORAGE_TABLES]
        if unknown:
            raise ValueError(f"tables must be some of {', '.join(STORAGE_TABLES)}, got {chosen!r}")
        with self._lock:
            for table in chosen:
                key = (account_id.lower(), table)
                if workspace_id is None:
                    self._storage_logs.pop(key, None)
                else:
                    self._storage_logs[key] = workspace_id

    def storage_request_served(self, record: StorageRequestRecord) -> str | None:
        """What the lab's Storage data plane calls for each request it answers: the row goes to the
        workspace the service's diagnostic setting names (returned), or nowhere (None)."""
        with self._lock:
            workspace_id = self._storage_logs.get((record.account_id.lower(), record.table))
        if workspace_id is not None:
            self.record_storage_request(workspace_id, record)
        return workspace_id

    def record_storage_request(self, workspace_id: str, record: StorageRequestRecord) -> None:
        """A storage service's diagnostic setting writes one request to the workspace; the first
        row creates the service's table there, as Azure creates a resource-specific table."""
        row = record.row()
        with self._lock:
            workspace = self._workspace(workspace_id)
            if record.table not in workspace.tables:
                workspace.tables = (*workspace.tables, record.table)
            workspace.ingested[record.table].append(row)

    def reset(self, estate: Estate | None = None) -> None:
        """Forget workspace settings, ingested rows, recorded queries, request counts and faults
        (and answer from ``estate`` when given): one running server serves many tests."""
        with self._lock:
            if estate is not None:
                self.estate = estate
            self._workspaces.clear()
            self._perimeter_logs.clear()
            self._storage_logs.clear()
            self.queries.clear()
        self.server.clear_faults()
        self.server.request_counts.clear()

    def _workspace(self, workspace_id: str) -> _Workspace:
        return self._workspaces.setdefault(workspace_id.lower(), _Workspace())

    # -- the API -------------------------------------------------------------------------------

    def _query(self, request: Request) -> Response:
        workspace_id = request.params["workspace"]
        authorization = request.header("Authorization") or ""
        if not authorization.lower().startswith("bearer "):
            return Response(
                401,
                {
                    "error": {
                        "code": "AuthenticationFailed",
                        "message": "Authentication failed. The 'Authorization' header is missing.",
                    }
                },
            )
        try:
            body = request.json()
        except ValueError:
            body = None
        try:
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise _bad_argument("InvalidRequest", "The request body must be JSON with a 'query' string.")
            timespan = body.get("timespan")
            with self._lock:
                self.queries.append(
                    RecordedQuery(workspace_id, body["query"], timespan, request.header("Prefer"), body)
                )
                workspace = self._workspace(workspace_id)
                tables, partial = workspace.tables, workspace.partial
                ingested = {name: list(rows) for name, rows in workspace.ingested.items()}
            start, end = parse_timespan(timespan, now=self.estate.now())
            if body["query"].startswith(storage_kql.HEADER):
                account_ids = recognise_storage(body["query"])
                rows = _evaluate_storage(tables, ingested, account_ids, start, end)
                columns = STORAGE_SUMMARY_COLUMNS
            elif body["query"].startswith(nsp_kql.HEADER):
                vault_ids = recognise_perimeter(body["query"])
                rows = _evaluate_perimeter(tables, ingested[NSP_TABLE], vault_ids, start, end)
                columns = PERIMETER_SUMMARY_COLUMNS
            else:
                table, vault_ids = recognise(body["query"])
                rows = self._evaluate(workspace_id, tables, ingested, table, vault_ids, start, end)
                columns = SUMMARY_COLUMNS
        except BadQuery as exc:
            return Response(exc.status, exc.body)
        answer: dict[str, Any] = {
            "tables": [_primary_result(columns, rows if partial is None else rows[: partial.keep_rows])]
        }
        if partial is not None:
            answer["error"] = {
                "code": "PartialError",
                "message": "There were some errors when processing your query.",
                "details": [
                    {
                        "code": "EngineError",
                        "message": partial.message,
                        "innererror": {
                            "code": "-2133196797",
                            "message": partial.message,
                            "severity": 2,
                            "severityName": "Error",
                        },
                    }
                ],
            }
        return Response(200, answer)

    def _evaluate(
        self,
        workspace_id: str,
        tables: tuple[str, ...],
        ingested: Mapping[str, list[RawRow]],
        table: str,
        vault_ids: tuple[str, ...],
        start: dt.datetime | None,
        end: dt.datetime | None,
    ) -> list[list[Any]]:
        wanted = (table,) if table != TABLE_AUTO else TABLES
        missing = [name for name in wanted if name not in tables]
        if table != TABLE_AUTO and missing:
            raise _bad_argument(
                "SemanticError",
                f"'where' operator: Failed to resolve table or column expression named '{table}'",
            )
        records = self._records_for(workspace_id)
        # Built once per query: the filter runs for every row, and the list can hold 10,000 vaults.
        wanted_vaults = frozenset(v.lower() for v in vault_ids)
        normalised: list[dict[str, Any]] = []
        for name in wanted:
            if name not in tables:
                continue  # a fuzzy union leg that does not resolve contributes nothing
            raw = [_RAW_ROW[name](record) for record in records] + ingested[name]
            for row in raw:
                if not _in_window(row.get("TimeGenerated"), start, end) or not _LEG_FILTER[name](
                    row, wanted_vaults
                ):
                    continue
                normalised.append(_NORMALISE[name](row))
        return _summarise(normalised)

    def _records_for(self, workspace_id: str) -> list[AccessRecord]:
        settings = dict(self.estate.diagnostics)
        logged = {key for key, target in settings.items() if target.lower() == workspace_id.lower()}
        return [record for record in self.estate.access_records() if record.vault_id.lower() in logged]


# -- recognising kvmon's query -------------------------------------------------------------------


def recognise(query: str) -> tuple[str, tuple[str, ...]]:
    """(table choice, vault ids) of a kvmon summary query; BadQuery for anything else."""
    table_line = _TABLE_LINE.search(query)
    vault_list = _VAULT_LIST.search(query)
    try:
        table = table_line.group(1) if table_line else ""
        vault_ids = tuple(json.loads(vault_list.group(1))) if vault_list else ()
        expected = build_summary_query(table=table, vault_ids=vault_ids)
    except ValueError:
        expected = None
    if expected != query:
        raise _bad_argument(
            "SyntaxError",
            "This lab endpoint evaluates only kvmon's access summary query (monitor.sources.keyvault.kql.build_summary_query).",
        )
    return table, vault_ids


def recognise_perimeter(query: str) -> tuple[str, ...]:
    """The vault ids of a kvmon perimeter query; BadQuery for anything else."""
    vault_list = _VAULT_LIST.search(query)
    try:
        vault_ids = tuple(json.loads(vault_list.group(1))) if vault_list else ()
        expected = nsp_kql.build_perimeter_query(vault_ids=vault_ids)
    except ValueError:
        expected = None
    if expected != query:
        raise _bad_argument(
            "SyntaxError",
            "This lab endpoint evaluates only kvmon's perimeter access summary query "
            "(monitor.sources.nsp_kql.build_perimeter_query).",
        )
    return vault_ids


def recognise_storage(query: str) -> tuple[str, ...]:
    """The account ids of a kvmon storage query; BadQuery for anything else."""
    account_list = _ACCOUNT_LIST.search(query)
    try:
        account_ids = tuple(json.loads(account_list.group(1))) if account_list else ()
        expected = storage_kql.build_storage_query(account_ids=account_ids)
    except ValueError:
        expected = None
    if expected != query:
        raise _bad_argument(
            "SyntaxError",
            "This lab endpoint evaluates only kvmon's storage access summary query "
            "(monitor.sources.storage.kql.build_storage_query).",
        )
    return account_ids


def parse_timespan(
    timespan: Any, *, now: dt.datetime | None = None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``start/end``, ``start/duration`` or a duration back from ``now`` (the lab's clock;
    ISO 8601), as azure-monitor-query sends them; None: no limit."""
    if timespan is None:
        return None, None
    if not isinstance(timespan, str):
        raise _bad_argument("InvalidTimespan", f"timespan {timespan!r} is not a string")
    try:
        if "/" not in timespan:
            end = now or dt.datetime.now(dt.UTC)
            return end - _duration(timespan), end
        first, second = timespan.split("/", 1)
        start = _instant(first)
        return start, start + _duration(second) if second.upper().startswith("P") else _instant(second)
    except ValueError:
        raise _bad_argument(
            "InvalidTimespan", f"timespan {timespan!r} is not 'start/end', 'start/duration' or a duration"
        ) from None


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _duration(text: str) -> dt.timedelta:
    match = re.fullmatch(
        r"PT?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?", text.strip().upper()
    )
    if not match or not any(match.groups()):
        raise ValueError(text)
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _bad_argument(inner_code: str, inner_message: str) -> BadQuery:
    return BadQuery(
        400, "BadArgumentError", "The request had some invalid properties", inner_code, inner_message
    )


# -- the tables' raw rows ------------------------------------------------------------------------


def _audit_row(record: AccessRecord) -> RawRow:
    claim = {k: v for k, v in (("oid", record.identity_oid), ("appid", record.identity_appid)) if v}
    return {
        "TimeGenerated": record.time,
        "_ResourceId": record.vault_id.lower(),
        "OperationName": record.operation,
        "CallerIpAddress": record.caller_address,
        "HttpStatusCode": record.http_status,
        "ResultSignature": record.result_signature,
        "ResultType": record.result_type,
        "ResultDescription": record.result_description,
        "Identity": {"claim": claim} if claim else None,
        "RequestUri": record.request_uri,
        "CorrelationId": record.correlation_id,
        "DurationMs": record.duration_ms,
        "AddressAuthorizationType": record.address_auth_type,
        "IsAddressAuthorized": record.is_address_authorized,
        "SubnetId": record.subnet_id,
        "TrustedService": "",
    }


def _diagnostics_row(record: AccessRecord) -> RawRow:
    return {
        "TimeGenerated": record.time,
        "Resource": record.vault_name.upper(),
        "ResourceProvider": "MICROSOFT.KEYVAULT",
        "_ResourceId": record.vault_id.lower(),
        "OperationName": record.operation,
        "CallerIPAddress": record.caller_address,
        "ResultSignature": record.result_signature,
        "ResultType": record.result_type,
        "httpStatusCode_d": float(record.http_status),
        "requestUri_s": record.request_uri,
        "isAddressAuthorized_b": record.is_address_authorized,
        "addrAuthType_s": record.address_auth_type,
        "subnetId_s": record.subnet_id,
        "privateEndpointId_s": record.private_endpoint_id,
        "trustedService_s": "",
        "identity_claim_oid_g": record.identity_oid or None,
        "identity_claim_appid_g": record.identity_appid or None,
        "DurationMs": record.duration_ms,
    }


_RAW_ROW: dict[str, Callable[[AccessRecord], RawRow]] = {
    TABLE_RESOURCE_SPECIFIC: _audit_row,
    TABLE_LEGACY: _diagnostics_row,
}


# -- the query's meaning, in Python (Kusto semantics: a null string is "", null compares false) ---


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _in_window(moment: Any, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    if not isinstance(moment, dt.datetime):
        return False
    return (start is None or moment >= start) and (end is None or moment <= end)


def _resource_filter(row: RawRow, vault_ids: frozenset[str]) -> bool:
    """``vault_ids`` lower-cased; empty means every vault."""
    resource = _s(row.get("_ResourceId")).lower()
    if vault_ids:
        return resource in vault_ids
    return "/providers/microsoft.keyvault/vaults/" in resource


_LEG_FILTER: dict[str, Callable[[RawRow, frozenset[str]], bool]] = {
    TABLE_RESOURCE_SPECIFIC: _resource_filter,
    TABLE_LEGACY: lambda row, ids: (
        row.get("ResourceProvider") == "MICROSOFT.KEYVAULT" and _resource_filter(row, ids)
    ),
}

_SIGNATURE_STATUS = {"ok": 200, "unauthorized": 401, "forbidden": 403, "notfound": 404}


def outcome(status: int | None, signature: str | None, address_authorized: bool | None) -> str:
    """``KvmonOutcome`` of the query, with Kusto's null semantics."""
    code = status if status is not None else _SIGNATURE_STATUS.get(_s(signature).lower())
    if code == 403 and address_authorized is False:
        return "refused-firewall"
    if code == 403 and address_authorized is True:
        return "admitted"
    if code is not None and 200 <= code <= 499 and code not in (401, 403, 429):
        return "admitted"
    return "refused-other"


def _address_auth_type(auth_type: Any, trusted_service: Any) -> str:
    if _s(auth_type):
        return _s(auth_type)
    return "TrustedService" if _s(trusted_service) else ""


def _normalise_audit(row: RawRow) -> dict[str, Any]:
    identity = row.get("Identity")
    claim = identity.get("claim") if isinstance(identity, dict) else None
    claim = claim if isinstance(claim, dict) else {}
    status = row.get("HttpStatusCode")
    return {
        "TimeGenerated": row["TimeGenerated"],
        "SourceTable": TABLE_RESOURCE_SPECIFIC,
        "VaultId": _s(row.get("_ResourceId")).lower(),
        "CallerAddress": _s(row.get("CallerIpAddress")),
        "AddressAuthType": _address_auth_type(row.get("AddressAuthorizationType"), row.get("TrustedService")),
        "SubnetId": _s(row.get("SubnetId")).lower(),
        "Outcome": outcome(
            None if status is None else int(status),
            row.get("ResultSignature"),
            row.get("IsAddressAuthorized"),
        ),
        "AppId": _s(claim.get("appid")),
        "ObjectId": _s(claim.get("oid")) or _s(claim.get(_OBJECT_ID_CLAIM)),
    }


def _normalise_diagnostics(row: RawRow) -> dict[str, Any]:
    status = row.get("httpStatusCode_d")
    return {
        "TimeGenerated": row["TimeGenerated"],
        "SourceTable": TABLE_LEGACY,
        "VaultId": _s(row.get("_ResourceId")).lower(),
        "CallerAddress": _s(row.get("CallerIPAddress")),
        "AddressAuthType": _address_auth_type(row.get("addrAuthType_s"), row.get("trustedService_s")),
        "SubnetId": _s(row.get("subnetId_s")).lower(),
        "Outcome": outcome(
            None if status is None else int(status),
            row.get("ResultSignature"),
            row.get("isAddressAuthorized_b"),
        ),
        "AppId": _s(row.get("identity_claim_appid_g")),
        "ObjectId": _s(row.get("identity_claim_oid_g")),
    }


_NORMALISE: dict[str, Callable[[RawRow], dict[str, Any]]] = {
    TABLE_RESOURCE_SPECIFIC: _normalise_audit,
    TABLE_LEGACY: _normalise_diagnostics,
}

_GROUP_BY = tuple(name for name, _ in SUMMARY_COLUMNS[:8])


def _summarise(rows: Iterable[dict[str, Any]]) -> list[list[Any]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], dt.datetime] = {}
    last: dict[tuple[Any, ...], dt.datetime] = {}
    for row in rows:
        key = tuple(row[name] for name in _GROUP_BY)
        moment = row["TimeGenerated"]
        counts[key] += 1
        first[key] = min(first.get(key, moment), moment)
        last[key] = max(last.get(key, moment), moment)
    return [[*key, counts[key], _iso(first[key]), _iso(last[key])] for key in sorted(counts)]


# -- the perimeter query's meaning, in Python -----------------------------------------------------

_CATEGORIES = frozenset(category.lower() for category in nsp_kql.CATEGORIES)
_PERIMETER_GROUP_BY = tuple(name for name, _ in PERIMETER_SUMMARY_COLUMNS[:8])


def _evaluate_perimeter(
    tables: tuple[str, ...],
    raw: Iterable[RawRow],
    vault_ids: tuple[str, ...],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> list[list[Any]]:
    if NSP_TABLE not in tables:
        raise _bad_argument(
            "SemanticError",
            f"'where' operator: Failed to resolve table or column expression named '{NSP_TABLE}'",
        )
    wanted = frozenset(v.lower() for v in vault_ids)
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], dt.datetime] = {}
    last: dict[tuple[Any, ...], dt.datetime] = {}
    for row in raw:
        service = _s(row.get("ServiceResourceId")).lower()
        in_scope = service in wanted if wanted else "/providers/microsoft.keyvault/vaults/" in service
        if not in_scope or _s(row.get("Category")).lower() not in _CATEGORIES:
            continue
        moment = row.get("TimeGenerated")
        if not _in_window(moment, start, end):
            continue
        assert isinstance(moment, dt.datetime)
        projected = {
            "VaultId": service,
            "Category": _s(row.get("Category")),
            "SourceAddress": _s(row.get("SourceIpAddress")),
            "SourceAppId": _s(row.get("SourceAppId")),
            "MatchedRule": _matched_rule(row.get("MatchedRule")),
            "TrafficType": _s(row.get("TrafficType")),
            "Profile": _s(row.get("Profile")),
            "AccessRulesVersion": _s(row.get("AccessRuleVersion")),
        }
        key = tuple(projected[name] for name in _PERIMETER_GROUP_BY)
        events = row.get("Count")
        counts[key] += 1 if events is None else int(events)
        ended = row.get("TimeGeneratedEndTime")
        ended = ended if isinstance(ended, dt.datetime) else moment
        first[key] = min(first.get(key, moment), moment)
        last[key] = max(last.get(key, ended), ended)
    return [[*key, counts[key], _iso(first[key]), _iso(last[key])] for key in sorted(counts)]


def _matched_rule(raw: Any) -> str:
    """``coalesce(tostring(parse_json(MatchedRule).accessRule), MatchedRule)``: the rule's name
    from the property bag, else the text as written."""
    text = _s(raw)
    try:
        bag = json.loads(text)
    except ValueError:
        return text
    name = bag.get("accessRule") if isinstance(bag, dict) else None
    if name is None:
        return text
    named = name if isinstance(name, str) else json.dumps(name)  # tostring() of a non-string
    return named or text


# -- the storage query's meaning, in Python ------------------------------------------------------

_STORAGE_GROUP_BY = tuple(name for name, _ in STORAGE_SUMMARY_COLUMNS[:10])
_ACCOUNT_OF_SERVICE = re.compile(
    r"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.storage/storageaccounts/[^/]+)"
)
_CALLER_V6 = re.compile(r"^\[([^\]]+)\](:[0-9]+)?$")
_CALLER_V4 = re.compile(r"^([0-9]{1,3}(\.[0-9]{1,3}){3})(:[0-9]+)?$")


def storage_caller(raw: Any) -> str:
    """The query's ``CallerAddress``: the address without its port; any other shape as written."""
    text = _s(raw)
    for pattern in (_CALLER_V6, _CALLER_V4):
        match = pattern.match(text)
        if match:
            return match.group(1)
    return text


def storage_outcome(status: Any, text: Any) -> str:
    """``KvmonStorageOutcome`` of the query: ``toint`` of the string status (null when not a number)."""
    try:
        code: int | None = int(_s(status))
    except ValueError:
        code = None
    folded = _s(text).lower()
    if code == 403 and folded in {t.lower() for t in storage_kql.REFUSED_BY_NETWORK_TEXTS}:
        return "refused-firewall"
    if code == 403 and folded in {t.lower() for t in storage_kql.ADMITTED_403_TEXTS}:
        return "admitted"
    if code is not None and 200 <= code <= 499 and code not in (401, 403, 429):
        return "admitted"
    return "refused-other"


def _evaluate_storage(
    tables: tuple[str, ...],
    ingested: Mapping[str, list[RawRow]],
    account_ids: tuple[str, ...],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> list[list[Any]]:
    """The fuzzy union of the four tables: one the workspace lacks contributes nothing."""
    wanted = frozenset(account_ids)
    names = frozenset(storage_kql.account_name(key) for key in account_ids)
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], dt.datetime] = {}
    last: dict[tuple[Any, ...], dt.datetime] = {}
    samples: dict[tuple[Any, ...], tuple[str, str]] = {}
    for table in STORAGE_TABLES:
        if table not in tables:
            continue
        for row in ingested[table]:
            moment = row.get("TimeGenerated")
            if _s(row.get("AccountName")).lower() not in names or not _in_window(moment, start, end):
                continue
            assert isinstance(moment, dt.datetime)
            match = _ACCOUNT_OF_SERVICE.match(_s(row.get("_ResourceId")).lower())
            account = match.group(1) if match else ""
            if account not in wanted:
                continue
            projected = {
                "SourceTable": table,
                "AccountId": account,
                "CallerAddress": storage_caller(row.get("CallerIpAddress")),
                "Outcome": storage_outcome(row.get("StatusCode"), row.get("StatusText")),
                "StatusCode": _s(row.get("StatusCode")),
                "StatusText": _s(row.get("StatusText")),
                "AuthenticationType": _s(row.get("AuthenticationType")),
                "AppId": _s(row.get("RequesterAppId")),
                "ObjectId": _s(row.get("RequesterObjectId")),
                "TlsVersion": _s(row.get("TlsVersion")),
            }
            key = tuple(projected[name] for name in _STORAGE_GROUP_BY)
            counts[key] += 1
            first[key] = min(first.get(key, moment), moment)
            last[key] = max(last.get(key, moment), moment)
            samples.setdefault(key, (_s(row.get("ClientRequestId")), _s(row.get("Uri")).split("?")[0]))
    return [[*key, counts[key], _iso(first[key]), _iso(last[key]), *samples[key]] for key in sorted(counts)]


def _primary_result(columns: Iterable[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "name": "PrimaryResult",
        "columns": [{"name": name, "type": kind} for name, kind in columns],
        "rows": rows,
    }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
