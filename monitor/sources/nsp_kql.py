"""Network Security Perimeter's inbound access summary in KQL: the one ``NSPAccessLogs`` query
``LogsReader.read_perimeter_workspace`` sends per workspace.

A diagnostic setting on a perimeter (not on the vault) writes ``NSPAccessLogs``: one row per
access decision, or per aggregate of identical decisions, for every resource associated with the
perimeter. The columns kvmon reads, as Azure Monitor's table reference lists them
(https://learn.microsoft.com/en-us/azure/azure-monitor/reference/tables/nspaccesslogs; its 2024
column list is MicrosoftDocs/azure-reference-other, ``azure-monitor-ref/tables/includes/
nspaccesslogs-include.md`` at f2e3534e): ``ServiceResourceId`` (the vault), ``Category``,
``SourceIpAddress``, ``SourceAppId``, ``MatchedRule`` (a JSON property bag
``{"accessRule": "<rule name>"}``), ``TrafficType``, ``Profile``, ``AccessRuleVersion``,
``TimeGenerated``. The reference has grown ``Count`` and ``TimeGeneratedEndTime`` for aggregated
rows since; Microsoft's diagnostic-logs article
(https://learn.microsoft.com/en-us/azure/private-link/network-security-perimeter-diagnostic-logs)
says to count a row without them as one event. The query reads both through ``column_ifexists``,
so it answers in a workspace whose table predates them.

Only the inbound categories (``CATEGORIES``) are read; the outbound ones say nothing about who
reached a vault. With no vault named, every Key Vault's rows are summarised.

The query answers with the reader's ``PERIMETER_SUMMARY_COLUMNS`` (``monitor.sources.logs``).
Unlike the Key Vault query it is no fuzzy union: a workspace that has no ``NSPAccessLogs`` table
answers "Failed to resolve table", which the reader names as a scan error rather than reading as
"nobody got in".
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from monitor.model import PerimeterLogCategory
from monitor.sources.keyvault.kql import normalise_vault_ids

TABLE = "NSPAccessLogs"
CATEGORIES: tuple[str, ...] = tuple(category.value for category in PerimeterLogCategory)
HEADER = f"// kvmon: Network Security Perimeter inbound access summary (table: {TABLE})"

_FILTER_BY_LIST = "ServiceResourceId in~ (KvmonVaults)"
_FILTER_ALL_VAULTS = 'ServiceResourceId contains "/providers/microsoft.keyvault/vaults/"'

_BODY = """\
NSPAccessLogs
| where {filter} and Category in~ (KvmonCategories)
| extend KvmonMatched = parse_json(MatchedRule)
| project TimeGenerated,
    EndTime = column_ifexists("TimeGeneratedEndTime", datetime(null)),
    Events = column_ifexists("Count", int(null)),
    VaultId = tolower(ServiceResourceId),
    Category,
    SourceAddress = SourceIpAddress,
    SourceAppId,
    MatchedRule = coalesce(tostring(KvmonMatched.accessRule), MatchedRule),
    TrafficType,
    Profile,
    AccessRulesVersion = AccessRuleVersion
| summarize Requests = sum(coalesce(Events, 1)), FirstSeen = min(TimeGenerated),
    LastSeen = max(coalesce(EndTime, TimeGenerated))
    by VaultId, Category, SourceAddress, SourceAppId, MatchedRule, TrafficType, Profile, AccessRulesVersion"""


def build_perimeter_query(*, vault_ids: Sequence[str]) -> str:
    """The exact KQL kvmon sends for one workspace's perimeter access logs.

    ``vault_ids``: the vaults to summarise; empty means every vault in the workspace. The window
    is not in the text: it travels as the request's ``timespan``.
    """
    keys = normalise_vault_ids(vault_ids)
    lines = [HEADER]
    if keys:
        lines.append(f"let KvmonVaults = dynamic({json.dumps(list(keys), ensure_ascii=False)});")
    lines.append(f"let KvmonCategories = dynamic({json.dumps(list(CATEGORIES))});")
    lines.append(_BODY.format(filter=_FILTER_BY_LIST if keys else _FILTER_ALL_VAULTS))
    return "\n".join(lines)
