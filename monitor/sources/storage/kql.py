"""Storage's access summary in KQL: the one query ``LogsReader.read_storage_workspace`` sends per
workspace, for every storage account kvmon reads there.

A diagnostic setting on each of an account's services (``blobServices/default``,
``fileServices/default``, ``queueServices/default``, ``tableServices/default``) writes its own
resource-specific table: ``StorageBlobLogs``, ``StorageFileLogs``, ``StorageQueueLogs``,
``StorageTableLogs`` (Azure Monitor's table reference; their column lists are MicrosoftDocs/
azure-reference-other ``azure-monitor-ref/tables/includes/storage{blob,file,queue,table}logs-include.md``
at 0f8cea78, 431071fd, 0fc1b861, c770f3fe, which ``tests/kusto/check_kql.js`` carries). A row's
``_ResourceId`` is the service's id, so the query derives the account's id from it; it filters
first on ``AccountName`` (the reference's own column) and then on that id. The query is a fuzzy
union of the four tables plus an always-resolvable empty leg: an account that logs blob only, or a
workspace no storage setting ever wrote to, still answers.

``CallerIpAddress`` carries the port ("The IP address of the requester, including the port
number"): ``a.b.c.d:port`` for IPv4, ``[v6]:port`` for IPv6; the query strips it, and leaves any other
shape as it is. ``StatusCode`` is a string ("Unknown" when the request was interrupted). ``Uri`` keeps
its path only: a SAS request's query string carries its signature, which kvmon never reads back.

Outcome derivation (``KvmonStorageOutcome``), from ``StatusCode`` and ``StatusText``; no column says
whether the network rules admitted the address (Key Vault's ``IsAddressAuthorized`` has no storage
counterpart), so the text decides for a 403:

- ``refused-firewall``: 403 with ``AuthorizationFailure``, the error code Storage answers a caller its
  network rules refuse with ("This request is not authorized to perform this operation"). Microsoft
  does not document that this is the only cause of that code, nor that StatusText carries the
  response's error code; see ST202's rationale for what is and is not known.
- ``admitted``: 403 with ``AuthorizationPermissionMismatch`` (the network let the caller in; RBAC
  refused it), or any other status from 200 to 499 except 401, 403 and 429: the request reached the
  service's own logic.
- ``refused-other``: everything else: 401, any other 403 (``AuthenticationFailed``,
  ``KeyBasedAuthenticationNotPermitted``... say nothing documented about the network), 429, 5xx,
  ``Unknown`` and a missing status.

The query answers with the reader's ``STORAGE_SUMMARY_COLUMNS`` (``monitor.sources.logs``), in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from monitor.model import Outcome
from monitor.model_storage import STORAGE_LOG_TABLES
from monitor.sources.keyvault.kql import parenthesised

TABLES = STORAGE_LOG_TABLES
HEADER = "// kvmon: Storage access summary (tables: " + ", ".join(TABLES) + ")"

# The StatusText of a 403 that says the network rules refused the caller, and of one that says they
# admitted it (the identity lacked a data role); compared case-insensitively.
REFUSED_BY_NETWORK_TEXTS: tuple[str, ...] = ("AuthorizationFailure",)
ADMITTED_403_TEXTS: tuple[str, ...] = ("AuthorizationPermissionMismatch",)

# A storage account's ARM id: subscription, resource group (as Key Vault's) and a name of 3-24
# lower-case letters and digits. Anything else never reaches a query string.
_ACCOUNT_ID = re.compile(
    r"/subscriptions/[0-9A-Za-z-]+/resourceGroups/[^/\"\\\x00-\x1f]+"
    r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[0-9A-Za-z]{3,24})",
    re.IGNORECASE,
)

_OUTCOME_FUNCTION = f"""\
let KvmonStorageOutcome = (status: string, text: string) {{
    let code = toint(status);
    case(code == 403 and text in~ ({", ".join(json.dumps(t) for t in REFUSED_BY_NETWORK_TEXTS)}), "{Outcome.REFUSED_FIREWALL}",
        code == 403 and text in~ ({", ".join(json.dumps(t) for t in ADMITTED_403_TEXTS)}), "{Outcome.ADMITTED}",
        code between (200 .. 499) and code !in (401, 403, 429), "{Outcome.ADMITTED}",
        "{Outcome.REFUSED_OTHER}")
}};"""

# The address without its port: "[v6]:port" and "a.b.c.d:port"; any other shape unchanged.
_CALLER = (
    r'coalesce(extract(@"^\[([^\]]+)\](:[0-9]+)?$", 1, CallerIpAddress),'
    "\n        "
    r'extract(@"^([0-9]{1,3}(\.[0-9]{1,3}){3})(:[0-9]+)?$", 1, CallerIpAddress), CallerIpAddress)'
)

_LEG = """\
{table}
| where AccountName in~ (KvmonAccountNames)
| project TimeGenerated, SourceTable = "{table}",
    AccountId = extract(@"^(/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\\.storage/storageaccounts/[^/]+)", 1, tolower(_ResourceId)),
    CallerAddress = {caller},
    Outcome = KvmonStorageOutcome(StatusCode, StatusText),
    StatusCode, StatusText, AuthenticationType,
    AppId = RequesterAppId, ObjectId = RequesterObjectId, TlsVersion,
    ClientRequestId, Uri = tostring(split(Uri, "?")[0])"""

_EMPTY_LEG = (
    "datatable(TimeGenerated: datetime, SourceTable: string, AccountId: string, CallerAddress: string,\n"
    "    Outcome: string, StatusCode: string, StatusText: string, AuthenticationType: string, AppId: string,\n"
    "    ObjectId: string, TlsVersion: string, ClientRequestId: string, Uri: string) []"
)

_SUMMARIZE = """\
| where AccountId in (KvmonAccounts)
| summarize Requests = count(), FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated),
    SampleClientRequestId = take_any(ClientRequestId), SampleUri = take_any(Uri)
    by SourceTable, AccountId, CallerAddress, Outcome, StatusCode, StatusText, AuthenticationType,
    AppId, ObjectId, TlsVersion"""


def normalise_account_ids(account_ids: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated, in order; ValueError names the first id that is not an account's."""
    keys: dict[str, None] = {}
    for account_id in account_ids:
        text = str(account_id).strip()
        if not _ACCOUNT_ID.fullmatch(text):
            raise ValueError(f"not a storage account resource id: {account_id!r}")
        keys.setdefault(text.lower(), None)
    return tuple(keys)


def account_name(account_id: str) -> str:
    """The account's name, lower-cased, from its (valid) resource id."""
    match = _ACCOUNT_ID.fullmatch(account_id.strip())
    if match is None:
        raise ValueError(f"not a storage account resource id: {account_id!r}")
    return match["name"].lower()


def build_storage_query(*, account_ids: Sequence[str]) -> str:
    """The exact KQL kvmon sends for one workspace's storage accounts.

    ``account_ids``: the accounts to summarise, at least one (a workspace is read for the accounts
    whose diagnostic settings name it). The window is not in the text: it travels as the request's
    ``timespan``.
    """
    keys = normalise_account_ids(account_ids)
    if not keys:
        raise ValueError("account_ids: name at least one storage account")
    names = list(dict.fromkeys(account_name(key) for key in keys))
    legs = [_EMPTY_LEG] + [_LEG.format(table=table, caller=_CALLER) for table in TABLES]
    return "\n".join(
        [
            HEADER,
            f"let KvmonAccounts = dynamic({json.dumps(list(keys), ensure_ascii=False)});",
            f"let KvmonAccountNames = dynamic({json.dumps(names)});",
            _OUTCOME_FUNCTION,
            "union isfuzzy=true\n" + ",\n".join(parenthesised(leg) for leg in legs),
            _SUMMARIZE,
        ]
    )
