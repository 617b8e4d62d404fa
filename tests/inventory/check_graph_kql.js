// Checks kvmon's Resource Graph query with Microsoft's Kusto language service (npm
// @kusto/language-service-next) against the Resources and ResourceContainers tables, with the
// columns Resource Graph documents for them. (tests/kusto/check_kql.js holds the Log Analytics
// tables and has no way to add others, hence this sibling.)
//
// Input on stdin: JSON [{"name": "...", "query": "..."}, ...]
// Output on stdout: JSON [{"name": "...", "diagnostics": [{"severity", "message"}], "columns": [[name, type], ...]}]
"use strict";

const path = require("path");
const fs = require("fs");

const PACKAGE = path.join(__dirname, "..", "..", "node_modules", "@kusto", "language-service-next");
require(path.join(PACKAGE, "bridge.js"));
require(path.join(PACKAGE, "Kusto.Language.Bridge.js"));

const Symbols = Kusto.Language.Symbols;
const T = Symbols.ScalarTypes;

// Resource Graph's resource tables share one shape; systemData is not among the columns.
const RESOURCE_COLUMNS = {
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

function table(name) {
  const columns = Object.entries(RESOURCE_COLUMNS).map(([column, type]) => new Symbols.ColumnSymbol(column, type));
  return new Symbols.TableSymbol.$ctor4(name, columns);
}

const database = new Symbols.DatabaseSymbol.ctor("resourcegraph", [table("Resources"), table("ResourceContainers")]);
const state = Kusto.Language.GlobalState.Default.WithDatabase(database);

const items = JSON.parse(fs.readFileSync(0, "utf8"));
const results = items.map((item) => {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(String(item.query), state);
  const diagnostics = code.GetDiagnostics();
  const found = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    found.push({ severity: String(d.Severity), message: String(d.Message) });
  }
  const columns = [];
  const result = code.ResultType;
  if (result && result.Columns) {
    for (let i = 0; i < result.Columns.Count; i++) {
      const column = result.Columns.getItem(i);
      columns.push([String(column.Name), String(column.Type.Name)]);
    }
  }
  return { name: item.name, diagnostics: found, columns };
});
process.stdout.write(JSON.stringify(results));
