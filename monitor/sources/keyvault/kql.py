"""Key Vault's access summary in KQL: the one query ``LogsReader`` sends per workspace.

Two tables hold Key Vault's audit events, depending on the diagnostic setting's destination:
the resource-specific ``AZKVAuditLogs`` and the legacy ``AzureDiagnostics`` (filtered on
``ResourceProvider == "MICROSOFT.KEYVAULT"``), with different column names (``CallerIpAddress``
vs ``CallerIPAddress``, ``AddressAuthorizationType`` vs ``addrAuthType_s``, the ``Identity``
dynamic vs the flattened ``identity_claim_*_g`` guids...). With ``table="auto"`` the one query is
a fuzzy union of both (plus an always-resolvable empty leg), so a workspace that has only one of
them, or neither, still answers: detection costs no extra round trip. When a vault's events show
up in both tables (two diagnostic settings), ``LogsReader`` uses the resource-specific rows and
a note says so.

Outcome derivation (``KvmonOutcome`` in the query), from the HTTP status (``HttpStatusCode`` /
``httpStatusCode_d``, or ``ResultSignature`` when the status is null: OK 200, Unauthorized 401,
Forbidden 403, NotFound 404) and ``IsAddressAuthorized`` / ``isAddressAuthorized_b``:

- ``refused-firewall``: 403 and the address was not authorised: the network check refused it
  (firewall, public access disabled or a perimeter).
- ``admitted``: 403 with the address authorised (the network let it in; RBAC or an access policy
  refused it), or any other status from 200 to 499 except 401 and 429: the request reached the
  vault's own logic (a 404 means the network admitted the caller).
- ``refused-other``: everything else: 401 (authentication runs before the network check, so it
  says nothing about the firewall), 429, 5xx, a 403 whose address authorisation is unknown, and a
  missing status.

The query answers with the reader's ``SUMMARY_COLUMNS`` (``monitor.sources.logs``), in that order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

TABLE_AUTO = "auto"
TABLE_RESOURCE_SPECIFIC = "AZKVAuditLogs"
TABLE_LEGACY = "AzureDiagnostics"
TABLE_CHOICES = (TABLE_AUTO, TABLE_RESOURCE_SPECIFIC, TABLE_LEGACY)

# A vault id shown by ``kvmon logs --print-query`` when no vault is named.
PLACEHOLDER_VAULT_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/RESOURCE-GROUP"
    "/providers/Microsoft.KeyVault/vaults/VAULT-NAME"
)

# ARM vault ids: subscription, resource group (letters, digits, _ - . ( ), Unicode letters) and a
# vault name of 3-24 letters, digits and hyphens. Anything else never reaches a query string.
_VAULT_ID = re.compile(
    r"/subscriptions/[0-9A-Za-z-]+/resourceGroups/[^/\"\\\x00-\x1f]+"
    r"/providers/Microsoft\.KeyVault/vaults/[0-9A-Za-z-]{3,24}",
    re.IGNORECASE,
)

_OUTCOME_FUNCTION = """\
let KvmonOutcome = (status: int, signature: string, addressAuthorized: bool) {
    let code = coalesce(status, case(signature =~ "OK", 200, signature =~ "Unauthorized", 401,
        signature =~ "Forbidden", 403, signature =~ "NotFound", 404, int(null)));
    case(code == 403 and addressAuthorized == false, "refused-firewall",
        code == 403 and addressAuthorized == true, "admitted",
        code between (200 .. 499) and code !in (401, 403, 429), "admitted",
        "refused-other")
};"""

_LEGS = {
    TABLE_RESOURCE_SPECIFIC: """\
AZKVAuditLogs
| where {filter}
| project TimeGenerated, SourceTable = "AZKVAuditLogs", VaultId = tolower(_ResourceId),
    CallerAddress = CallerIpAddress,
    AddressAuthType = case(isnotempty(AddressAuthorizationType), AddressAuthorizationType,
        isnotempty(TrustedService), "TrustedService", ""),
    SubnetId = tolower(SubnetId),
    Outcome = KvmonOutcome(HttpStatusCode, ResultSignature, IsAddressAuthorized),
    AppId = tostring(Identity.claim.appid),
    ObjectId = coalesce(tostring(Identity.claim.oid),
        tostring(Identity.claim["http://schemas.microsoft.com/identity/claims/objectidentifier"]))""",
    TABLE_LEGACY: """\
AzureDiagnostics
| where ResourceProvider == "MICROSOFT.KEYVAULT" and {filter}
| project TimeGenerated, SourceTable = "AzureDiagnostics", VaultId = tolower(_ResourceId),
    CallerAddress = CallerIPAddress,
    AddressAuthType = case(isnotempty(addrAuthType_s), addrAuthType_s,
        isnotempty(trustedService_s), "TrustedService", ""),
    SubnetId = tolower(subnetId_s),
    Outcome = KvmonOutcome(toint(httpStatusCode_d), ResultSignature, isAddressAuthorized_b),
    AppId = tostring(identity_claim_appid_g),
    ObjectId = tostring(identity_claim_oid_g)""",
}

# Keeps the fuzzy union valid in a workspace that holds neither table (zero rows, not an error).
_EMPTY_LEG = (
    "datatable(TimeGenerated: datetime, SourceTable: string, VaultId: string, CallerAddress: string,\n"
    "    AddressAuthType: string, SubnetId: string, Outcome: string, AppId: string, ObjectId: string) []"
)

_SUMMARIZE = """\
| summarize Requests = count(), FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated)
    by SourceTable, VaultId, CallerAddress, AddressAuthType, SubnetId, Outcome, AppId, ObjectId"""

_FILTER_BY_LIST = "_ResourceId in~ (KvmonVaults)"
_FILTER_ALL_VAULTS = '_ResourceId contains "/providers/microsoft.keyvault/vaults/"'


def normalise_table(table: str) -> str:
    """``auto``, ``AZKVAuditLogs`` or ``AzureDiagnostics`` in any case; ValueError otherwise."""
    for choice in TABLE_CHOICES:
        if str(table).strip().lower() == choice.lower():
            return choice
    raise ValueError(f"table: {table!r} is not one of {', '.join(TABLE_CHOICES)}")


def normalise_vault_ids(vault_ids: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, de-duplicated, in order; ValueError names the first id that is not a vault's."""
    keys: dict[str, None] = {}
    for vault_id in vault_ids:
        text = str(vault_id).strip()
        if not _VAULT_ID.fullmatch(text):
            raise ValueError(f"not a Key Vault resource id: {vault_id!r}")
        keys.setdefault(text.lower(), None)
    return tuple(keys)


def build_summary_query(*, table: str, vault_ids: Sequence[str]) -> str:
    """The exact KQL kvmon sends for one workspace.

    ``table``: ``auto`` (fuzzy union of both tables), ``AZKVAuditLogs`` or ``AzureDiagnostics``.
    ``vault_ids``: the vaults to summarise; empty means every vault in the workspace.
    The window is not in the text: it travels as the request's ``timespan``.
    """
    table = normalise_table(table)
    keys = normalise_vault_ids(vault_ids)
    lines = [f"// kvmon: Key Vault access summary (table: {table})"]
    if keys:
        lines.append(f"let KvmonVaults = dynamic({json.dumps(list(keys), ensure_ascii=False)});")
    lines.append(_OUTCOME_FUNCTION)
    where = _FILTER_BY_LIST if keys else _FILTER_ALL_VAULTS
    if table == TABLE_AUTO:
        legs = [_EMPTY_LEG] + [_LEGS[name].format(filter=where) for name in _LEGS]
        body = "union isfuzzy=true\n" + ",\n".join(parenthesised(leg) for leg in legs)
    else:
        body = _LEGS[table].format(filter=where)
    lines.append(body)
    lines.append(_SUMMARIZE)
    return "\n".join(lines)


def parenthesised(leg: str) -> str:
    """A union leg in parentheses, indented under ``union`` (also the storage query's)."""
    first, *rest = leg.splitlines()
    return "\n".join(["    (" + first, *("        " + line for line in rest)]) + ")"
