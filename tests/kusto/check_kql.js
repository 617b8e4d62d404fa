// Checks KQL with Microsoft's Kusto language service (npm @kusto/language-service-next) against
// the schemas kvmon queries: a Log Analytics workspace with the two Key Vault access-log tables
// (as AZURE-NOTES.md lists their columns and Azure Monitor's table reference types them) and the
// perimeters' NSPAccessLogs and the storage services' StorageBlobLogs, StorageFileLogs, StorageQueueLogs
// and StorageTableLogs; with "workspace-2024", NSPAccessLogs as its reference of 2024 listed it;
// with "resourcegraph", Resource Graph's Resources, ResourceContainers and resourcechanges tables.
//
// Usage: node check_kql.js [workspace|workspace-2024|resourcegraph]
// Input on stdin: JSON [{"name": "...", "query": "..."}, ...]
// Output on stdout: JSON [{"name": "...", "diagnostics": [{"severity", "code", "message", "start", "length"}],
//                         "columns": [[name, type], ...] (the result's schema, or null when not a table)}]
// Exit status 0 when every query was analysed (whatever it found); 2 on bad input.
"use strict";

const path = require("path");
const fs = require("fs");

const PACKAGE = path.join(__dirname, "..", "..", "node_modules", "@kusto", "language-service-next");
require(path.join(PACKAGE, "bridge.js"));
require(path.join(PACKAGE, "Kusto.Language.Bridge.js"));

const Symbols = Kusto.Language.Symbols;
const T = Symbols.ScalarTypes;

// Resource-specific table (Azure Monitor reference: AZKVAuditLogs).
const AZKV_AUDIT_LOGS = {
  TimeGenerated: T.DateTime,
  _ResourceId: T.String,
  OperationName: T.String,
  CallerIpAddress: T.String,
  HttpStatusCode: T.Int,
  ResultSignature: T.String,
  ResultType: T.String,
  ResultDescription: T.String,
  Identity: T.Dynamic,
  RequestUri: T.String,
  Id: T.String,
  CorrelationId: T.String,
  ClientInfo: T.String,
  DurationMs: T.Int,
  AddressAuthorizationType: T.String,
  IsAddressAuthorized: T.Bool,
  SubnetId: T.String,
  TrustedService: T.String,
  NetworkAcls: T.Dynamic,
  Nsp: T.Dynamic,
  IsRbacAuthorized: T.Bool,
  IsAccessPolicyMatch: T.Bool,
};

// Legacy table; Log Analytics types flattened fields by suffix: _s string, _d real, _b bool, _g guid.
const AZURE_DIAGNOSTICS = {
  TimeGenerated: T.DateTime,
  Resource: T.String,
  ResourceProvider: T.String,
  _ResourceId: T.String,
  OperationName: T.String,
  CallerIPAddress: T.String,
  ResultSignature: T.String,
  ResultType: T.String,
  httpStatusCode_d: T.Real,
  requestUri_s: T.String,
  isAddressAuthorized_b: T.Bool,
  addrAuthType_s: T.String,
  subnetId_s: T.String,
  privateEndpointId_s: T.String,
  trustedService_s: T.String,
  identity_claim_oid_g: T.Guid,
  identity_claim_appid_g: T.Guid,
  clientInfo_s: T.String,
  DurationMs: T.Long,
};

// A perimeter's access log (Azure Monitor reference: NSPAccessLogs, as
// https://learn.microsoft.com/en-us/azure/azure-monitor/reference/tables/nspaccesslogs lists it;
// MicrosoftDocs/azure-reference-other azure-monitor-ref/tables/includes/nspaccesslogs-include.md at
// f2e3534e is the list of 2024, without Count and TimeGeneratedEndTime: NSP_ACCESS_LOGS_2024).
const NSP_ACCESS_LOGS_2024 = {
  _BilledSize: T.Real,
  _IsBillable: T.String,
  _ResourceId: T.String,
  _SubscriptionId: T.String,
  AccessRuleVersion: T.String,
  AppId: T.String,
  Category: T.String,
  DestinationEmailAddress: T.String,
  DestinationFqdn: T.String,
  DestinationParameters: T.String,
  DestinationPhoneNumber: T.String,
  DestinationPort: T.String,
  DestinationProtocol: T.String,
  DestinationResourceId: T.String,
  Location: T.String,
  MatchedRule: T.String,
  OperationName: T.String,
  OperationVersion: T.String,
  Parameters: T.String,
  Profile: T.String,
  ResultAction: T.String,
  ResultDescription: T.String,
  ResultDirection: T.String,
  RuleType: T.String,
  ServiceFqdn: T.String,
  ServiceResourceId: T.String,
  SourceAppId: T.String,
  SourceIpAddress: T.String,
  SourceParameters: T.String,
  SourcePerimeterGuids: T.String,
  SourcePort: T.String,
  SourceProtocol: T.String,
  SourceResourceId: T.String,
  SourceSystem: T.String,
  TenantId: T.String,
  TimeGenerated: T.DateTime,
  TrafficType: T.String,
  Type: T.String,
};

// Aggregated rows: the events counted and the last one's time.
const NSP_ACCESS_LOGS = {
  ...NSP_ACCESS_LOGS_2024,
  Count: T.Int,
  TimeGeneratedEndTime: T.DateTime,
};

// The storage services' resource logs, as Azure Monitor's table reference lists them
// (https://learn.microsoft.com/en-us/azure/azure-monitor/reference/tables/storagebloblogs and
// storagefilelogs, storagequeuelogs, storagetablelogs; the column lists are MicrosoftDocs/
// azure-reference-other azure-monitor-ref/tables/includes/storage{blob,file,queue,table}logs-include.md
// at 0f8cea78, 431071fd, 0fc1b861, c770f3fe). Queue and Table have these columns; Blob and File add
// their own. StatusCode is a string (the reference: "Unknown" when the request was interrupted).
const STORAGE_LOGS_COMMON = {
  AccountName: T.String,
  AuthenticationHash: T.String,
  AuthenticationType: T.String,
  AuthorizationDetails: T.Dynamic,
  _BilledSize: T.Real,
  CallerIpAddress: T.String,
  Category: T.String,
  ClientRequestId: T.String,
  ConditionsUsed: T.String,
  ContentLengthHeader: T.Long,
  CorrelationId: T.String,
  DurationMs: T.Real,
  Etag: T.String,
  _IsBillable: T.String,
  LastModifiedTime: T.DateTime,
  Location: T.String,
  MetricResponseType: T.String,
  ObjectKey: T.String,
  OperationCount: T.Int,
  OperationName: T.String,
  OperationVersion: T.String,
  Protocol: T.String,
  ReferrerHeader: T.String,
  RequestBodySize: T.Long,
  RequesterAppId: T.String,
  RequesterAudience: T.String,
  RequesterObjectId: T.String,
  RequesterTenantId: T.String,
  RequesterTokenIssuer: T.String,
  RequesterUpn: T.String,
  RequestHeaderSize: T.Long,
  RequestMd5: T.String,
  _ResourceId: T.String,
  ResponseBodySize: T.Long,
  ResponseHeaderSize: T.Long,
  ResponseMd5: T.String,
  SasExpiryStatus: T.String,
  SchemaVersion: T.String,
  ServerLatencyMs: T.Real,
  ServiceType: T.String,
  SourceSystem: T.String,
  StatusCode: T.String,
  StatusText: T.String,
  _SubscriptionId: T.String,
  TenantId: T.String,
  TimeGenerated: T.DateTime,
  TlsVersion: T.String,
  Type: T.String,
  Uri: T.String,
  UserAgentHeader: T.String,
};

const STORAGE_BLOB_LOGS = {
  ...STORAGE_LOGS_COMMON,
  AccessTier: T.String,
  DestinationUri: T.String,
  RehydratePriority: T.String,
  SourceAccessTier: T.String,
  SourceUri: T.String,
};

const STORAGE_FILE_LOGS = {
  ...STORAGE_LOGS_COMMON,
  RequesterUserName: T.String,
  SmbCommandDetail: T.String,
  SmbCommandMajor: T.Int,
  SmbCommandMinor: T.String,
  SmbCreditsConsumed: T.Int,
  SmbFileId: T.String,
  SmbMessageID: T.String,
  SmbPersistentHandleID: T.String,
  SmbPrimarySID: T.String,
  SmbSessionID: T.String,
  SmbStatusCode: T.String,
  SmbTreeConnectID: T.String,
  SmbVolatileHandleID: T.String,
};

// Resource Graph's resource tables share one shape; systemData is not among the columns.
const RESOURCE_GRAPH_RESOURCES = {
  id: T.String,
  name: T.String,
  type: T.String,
  tenantId: T.String,
  kind: T.String,
  location: T.String,
  resourceGroup: T.String,
  subscriptionId: T.String,
  managedBy: T.String,
  sku: T.Dynamic,
  plan: T.Dynamic,
  properties: T.Dynamic,
  tags: T.Dynamic,
  identity: T.Dynamic,
  zones: T.Dynamic,
  extendedLocation: T.Dynamic,
};

function table(name, columns) {
  const symbols = Object.entries(columns).map(([column, type]) => new Symbols.ColumnSymbol(column, type));
  return new Symbols.TableSymbol.$ctor4(name, symbols);
}

const DATABASES = {
  workspace: () => new Symbols.DatabaseSymbol.ctor("workspace", [
    table("AZKVAuditLogs", AZKV_AUDIT_LOGS),
    table("AzureDiagnostics", AZURE_DIAGNOSTICS),
    table("NSPAccessLogs", NSP_ACCESS_LOGS),
    table("StorageBlobLogs", STORAGE_BLOB_LOGS),
    table("StorageFileLogs", STORAGE_FILE_LOGS),
    table("StorageQueueLogs", STORAGE_LOGS_COMMON),
    table("StorageTableLogs", STORAGE_LOGS_COMMON),
  ]),
  // A workspace whose perimeter access log has the columns of 2024 only.
  "workspace-2024": () => new Symbols.DatabaseSymbol.ctor("workspace", [
    table("NSPAccessLogs", NSP_ACCESS_LOGS_2024),
  ]),
  resourcegraph: () => new Symbols.DatabaseSymbol.ctor("resourcegraph", [
    table("Resources", RESOURCE_GRAPH_RESOURCES),
    table("ResourceContainers", RESOURCE_GRAPH_RESOURCES),
    // The change history: one Microsoft.Resources/changes row per change, its detail in properties.
    table("resourcechanges", RESOURCE_GRAPH_RESOURCES),
  ]),
};

function globals(schema) {
  const database = DATABASES[schema];
  if (!database) {
    process.stderr.write(`check_kql: unknown schema ${schema}: use ${Object.keys(DATABASES).join(" or ")}\n`);
    process.exit(2);
  }
  return Kusto.Language.GlobalState.Default.WithDatabase(database());
}

function check(query, state) {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(query, state);
  const diagnostics = code.GetDiagnostics();
  const found = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    found.push({ severity: String(d.Severity), code: String(d.Code), message: String(d.Message), start: d.Start, length: d.Length });
  }
  let columns = null;
  const result = code.ResultType;
  if (result && result.Columns) {
    columns = [];
    for (let i = 0; i < result.Columns.Count; i++) {
      const column = result.Columns.getItem(i);
      columns.push([String(column.Name), String(column.Type.Name)]);
    }
  }
  return { diagnostics: found, columns };
}

function main() {
  let items;
  try {
    items = JSON.parse(fs.readFileSync(0, "utf8"));
    if (!Array.isArray(items)) throw new Error("expected a JSON array");
  } catch (err) {
    process.stderr.write(`check_kql: bad input: ${err.message}\n`);
    process.exit(2);
  }
  const state = globals(process.argv[2] || "workspace");
  const results = items.map((item) => ({ name: item.name, ...check(String(item.query), state) }));
  process.stdout.write(JSON.stringify(results));
}

main();
