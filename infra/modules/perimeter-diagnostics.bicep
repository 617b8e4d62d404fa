// Sends one Network Security Perimeter's access log to a Log Analytics workspace (table NSPAccessLogs):
// the inbound categories kvmon's perimeter log evidence reads (KVMON_NSP_WORKSPACES). The perimeter,
// not the vault, logs who its rules let in.
// Deployed into the perimeter's resource group; the deploying user needs
// Microsoft.Insights/diagnosticSettings/write on the perimeter (Monitoring Contributor, for example).
// The workspace must sit inside the same perimeter (associate it with the perimeter's profile):
// Microsoft: "the log destinations must be within the same network security perimeter as the PaaS
// resource", so a workspace outside it receives nothing and kvmon reports no evidence (KV207).

@description('Name of the network security perimeter (in this module\'s resource group).')
param perimeterName string

@description('Resource id of the Log Analytics workspace.')
param workspaceResourceId string

@description('Name of the diagnostic setting.')
param settingName string = 'kvmon-nsp'

// The inbound categories of Microsoft's "Diagnostic logs for Network Security Perimeter" (monitor.model.PerimeterLogCategory).
var inboundCategories = [
  'NspPublicInboundPerimeterRulesAllowed'
  'NspPublicInboundPerimeterRulesDenied'
  'NspPublicInboundResourceRulesAllowed'
  'NspPublicInboundResourceRulesDenied'
  'NspPrivateInboundAllowed'
  'NspIntraPerimeterInboundAllowed'
  'NspCrossPerimeterInboundAllowed'
]

resource perimeter 'Microsoft.Network/networkSecurityPerimeters@2024-07-01' existing = {
  name: perimeterName
}

resource accessToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: perimeter
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      for category in inboundCategories: {
        category: category
        enabled: true
      }
    ]
  }
}
