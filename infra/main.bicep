// kvmon in Azure: the monitor (inside vantage point, VNet-integrated), the outside vantage point,
// their storage, Log Analytics and Application Insights, and a least-privilege identity.
// Deploy into a resource group:
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.example.json
// See infra/README.md for prerequisites, parameters and what each role assignment is for.
targetScope = 'resourceGroup'

@description('Region for every resource (must offer Flex Consumption: az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short lower-case prefix for resource names (letters and digits).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'kvmon'

@description('Subnet the monitor integrates with: the inside vantage point. Delegated to Microsoft.App/environments, in a VNet of the same region.')
@minLength(1)
param monitorSubnetId string

@description('Name of the monitor\'s own vantage point (KVMON_VANTAGE), as the baseline\'s vantages section names it.')
param insideVantageName string = 'inside'

@description('Name of the outside vantage point (the second Function App, on the internet).')
param outsideVantageName string = 'internet'

@description('Subscriptions whose vaults kvmon watches (KVMON_SUBSCRIPTIONS). Defaults to this one.')
param monitoredSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Subscriptions that hold Network Security Perimeters for the monitored vaults besides their own (KVMON_PERIMETER_SUBSCRIPTIONS), e.g. a central network subscription: the monitor gets Reader there too, which reads perimeters, profiles, access rules, associations and links.')
param perimeterSubscriptionIds array = []

@description('Grant Reader on each monitored subscription from this deployment. Set false when Reader comes from a management group (infra/reader-management-group.bicep).')
param assignSubscriptionReader bool = true

@description('How vault changes reach the monitor as events: `function` (Event Grid pushes to vault_changed), `queue` (Event Grid writes to eventQueueName, read by vault_changed_queue: for a monitor without public inbound), `none` (no event subscription; the timer alone, e.g. for the first deployment before the code is published).')
@allowed([
  'function'
  'queue'
  'none'
])
param eventDelivery string = 'function'

@description('Storage queue for queue delivery of vault change events (KVMON_EVENT_QUEUE), in the monitor\'s storage.')
param eventQueueName string = 'kvmon-vault-events'

@description('Resource group created in each monitored subscription to hold its new Event Grid system topic (ARM writes as events).')
param eventTopicResourceGroupName string = 'rg-${namePrefix}-events'

@description('Monitored subscription id -> resource id of the Microsoft.Resources.Subscriptions system topic it already has (Azure allows one per subscription). Those subscriptions get no new topic, only kvmon\'s event subscription.')
param existingEventTopicIds object = {}

@description('Resource id of an existing Log Analytics workspace holding the vaults\' audit logs. Empty: create one.')
param existingWorkspaceResourceId string = ''

@description('Retention of a workspace this template creates, days.')
@minValue(30)
@maxValue(730)
param workspaceRetentionDays int = 30

@description('Resource ids of vaults whose audit logs this deployment should send to the workspace (optional).')
param diagnosticVaultIds array = []

@description('Resource ids of storage accounts whose access logs (StorageRead, StorageWrite, StorageDelete of blob, file, queue and table) this deployment should send to the workspace (optional).')
param diagnosticStorageAccountIds array = []

@description('Resource ids of Network Security Perimeters whose access logs (NSPAccessLogs) this deployment should send to the workspace (optional); the workspace must sit inside each perimeter. Non-empty: the monitor reads them (KVMON_NSP_WORKSPACES).')
param diagnosticPerimeterIds array = []

@description('NCRONTAB schedule of the scheduled scan (six fields).')
param scanSchedule string = '0 */15 * * * *'

@description('Storage queue the scheduled scan fans out to, one message per subscription.')
param scanQueueName string = 'kvmon-scan-jobs'

@description('Baseline for KVMON_BASELINE: a path inside the deployed package, e.g. examples/baseline-azure-lab.yaml. Empty: rule defaults.')
param baseline string = ''

@description('Teams Workflows webhook URL (secret). Empty: no Teams channel.')
@secure()
param teamsWebhookUrl string = ''

@description('Slack incoming webhook URL (secret). Empty: no Slack channel.')
@secure()
param slackWebhookUrl string = ''

@description('Lowest severity the channels are told about.')
@allowed([
  'info'
  'low'
  'medium'
  'high'
  'critical'
])
param notifyMinSeverity string = 'medium'

param tags object = {
  workload: 'kvmon'
}

// Built-in role definition GUIDs, the only roles this template grants. No Key Vault role is here:
// a probe needs a token for https://vault.azure.net, not a permission, because the firewall
// answers (admits or refuses) before authorisation does. The same holds for monitored storage
// accounts (a token for https://storage.azure.com): the storage data roles below are on the
// monitor's and the probe's own accounts only.
var roles = {
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // For the system topics' identities: dead letters into one container...
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // ... and, for queue delivery, messages into one queue.
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var token = uniqueString(resourceGroup().id, namePrefix)
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'kvmon-dead-letters'
// Each scan's whole report document (KVMON_REPORT_CONTAINER); kvmon would create it, the
// deployment does so the identity's role need not.
var reportContainerName = 'kvmon-reports'
var monitorAppName = 'func-${namePrefix}-monitor-${token}'
var probeAppName = 'func-${namePrefix}-probe-${token}'
var workspaceName = 'log-${namePrefix}-${token}'
var createWorkspace = empty(existingWorkspaceResourceId)
var workspaceResourceId = createWorkspace ? resourceId('Microsoft.OperationalInsights/workspaces', workspaceName) : existingWorkspaceResourceId
var workspaceSubscriptionId = createWorkspace ? subscription().subscriptionId : split(existingWorkspaceResourceId, '/')[2]
var workspaceResourceGroup = createWorkspace ? resourceGroup().name : split(existingWorkspaceResourceId, '/')[4]
var probeKeySetting = 'KVMON_PROBE_KEY_${replace(replace(toUpper(outsideVantageName), '-', '_'), '.', '_')}'

// --- identities ----------------------------------------------------------------------------------

// The monitor's identity: reads ARM (Reader) and logs (Log Analytics Reader), uses its own storage.
resource monitorIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-monitor'
  location: location
  tags: tags
}

// The outside vantage's identity: only its own storage and telemetry. It needs no ARM access.
resource probeIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-probe'
  location: location
  tags: tags
}

// --- observability -------------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (createWorkspace) {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: workspaceRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${namePrefix}-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    // Telemetry is sent with the apps' Entra ID tokens; the instrumentation key alone is refused.
    DisableLocalAuth: true
  }
  dependsOn: [
    workspace
  ]
}

resource monitorTelemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, monitorIdentity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: monitorIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    description: 'kvmon monitor: send telemetry to Application Insights with Entra ID'
  }
}

resource probeTelemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, probeIdentity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: probeIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    description: 'kvmon outside vantage: send telemetry to Application Insights with Entra ID'
  }
}

module workspaceAccess 'modules/workspace-reader.bicep' = {
  name: 'kvmon-workspace-reader-${token}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: last(split(workspaceResourceId, '/'))
    principalId: monitorIdentity.properties.principalId
    roleDefinitionId: roles.logAnalyticsReader
  }
  dependsOn: [
    workspace
  ]
}

module perimeterDiagnostics 'modules/perimeter-diagnostics.bicep' = [
  for perimeterId in diagnosticPerimeterIds: {
    name: 'kvmon-nspdiag-${uniqueString(perimeterId)}'
    scope: resourceGroup(split(perimeterId, '/')[2], split(perimeterId, '/')[4])
    params: {
      perimeterName: last(split(perimeterId, '/'))
      workspaceResourceId: workspaceResourceId
    }
    dependsOn: [
      workspace
    ]
  }
]

module vaultDiagnostics 'modules/vault-diagnostics.bicep' = [
  for vaultId in diagnosticVaultIds: {
    name: 'kvmon-diag-${uniqueString(vaultId)}'
    scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
    params: {
      vaultName: last(split(vaultId, '/'))
      workspaceResourceId: workspaceResourceId
    }
    dependsOn: [
      workspace
    ]
  }
]

module storageDiagnostics 'modules/storage-diagnostics.bicep' = [
  for accountId in diagnosticStorageAccountIds: {
    name: 'kvmon-stdiag-${uniqueString(accountId)}'
    scope: resourceGroup(split(accountId, '/')[2], split(accountId, '/')[4])
    params: {
      storageAccountName: last(split(accountId, '/'))
      workspaceResourceId: workspaceResourceId
    }
    dependsOn: [
      workspace
    ]
  }
]

// --- access to the monitored estate --------------------------------------------------------------

// A role assignment at subscription scope needs a deployment at that scope: one module deployment
// per monitored subscription (a resource-group deployment may target a subscription this way).
module subscriptionReaders 'modules/subscription-reader.bicep' = [
  for subscriptionId in monitoredSubscriptionIds: if (assignSubscriptionReader) {
    name: 'kvmon-reader-${uniqueString(subscriptionId, token)}'
    scope: subscription(subscriptionId)
    params: {
      principalId: monitorIdentity.properties.principalId
      roleDefinitionId: roles.reader
    }
  }
]

// Reader where perimeters live for the monitored vaults: the perimeter reader lists them there.
module perimeterReaders 'modules/subscription-reader.bicep' = [
  for subscriptionId in perimeterSubscriptionIds: if (assignSubscriptionReader && !contains(monitoredSubscriptionIds, subscriptionId)) {
    name: 'kvmon-nsp-reader-${uniqueString(subscriptionId, token)}'
    scope: subscription(subscriptionId)
    params: {
      principalId: monitorIdentity.properties.principalId
      roleDefinitionId: roles.reader
    }
  }
]

// --- storage: one account per app, identity-only ---------------------------------------------------

module monitorStorage 'modules/storage.bicep' = {
  name: 'kvmon-monitor-storage-${token}'
  params: {
    name: toLower('${namePrefix}m${token}')
    location: location
    tags: tags
    containers: [
      deploymentContainerName
      deadLetterContainerName
      reportContainerName
    ]
    queues: [
      scanQueueName
      // The monitor's vault_changed_queue trigger listens on it whatever eventDelivery is.
      eventQueueName
    ]
    roleAssignments: [
      {
        principalId: monitorIdentity.properties.principalId
        roleDefinitionId: roles.storageBlobDataOwner
        description: 'kvmon monitor: deployment package, Functions host state (AzureWebJobsStorage) and whole report documents (KVMON_REPORT_CONTAINER)'
      }
      {
        principalId: monitorIdentity.properties.principalId
        roleDefinitionId: roles.storageQueueDataContributor
        description: 'kvmon monitor: scan fan-out queue and its queue trigger'
      }
      {
        principalId: monitorIdentity.properties.principalId
        roleDefinitionId: roles.storageTableDataContributor
        description: 'kvmon monitor: findings store (KVMON_STORAGE_ACCOUNT_URL)'
      }
    ]
  }
}

module probeStorage 'modules/storage.bicep' = {
  name: 'kvmon-probe-storage-${token}'
  params: {
    name: toLower('${namePrefix}p${token}')
    location: location
    tags: tags
    containers: [
      deploymentContainerName
    ]
    roleAssignments: [
      {
        principalId: probeIdentity.properties.principalId
        roleDefinitionId: roles.storageBlobDataOwner
        description: 'kvmon outside vantage: deployment package and Functions host state (AzureWebJobsStorage)'
      }
    ]
  }
}

// --- the two vantage points --------------------------------------------------------------------

var commonSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // The timer and queue triggers name these settings; they must resolve in both apps.
  KVMON_SCAN_SCHEDULE: scanSchedule
  KVMON_SCAN_QUEUE: scanQueueName
  KVMON_EVENT_QUEUE: eventQueueName
}

// The outside vantage only answers POST /api/probe (and the anonymous health check): every other
// function of the package is switched off there. It has no ARM access and no findings store.
var probeAppDisabledFunctions = {
  'AzureWebJobs.scheduled_scan.Disabled': 'true'
  'AzureWebJobs.scan_worker.Disabled': 'true'
  'AzureWebJobs.poison_scan_jobs.Disabled': 'true'
  'AzureWebJobs.vault_changed.Disabled': 'true'
  'AzureWebJobs.vault_changed_queue.Disabled': 'true'
  'AzureWebJobs.poison_vault_changes.Disabled': 'true'
  'AzureWebJobs.check_vault.Disabled': 'true'
  'AzureWebJobs.findings.Disabled': 'true'
  'AzureWebJobs.report.Disabled': 'true'
}

// The outside vantage point: same package, no VNet integration, answers only POST /api/probe.
module probeApp 'modules/function-app.bicep' = {
  name: 'kvmon-probe-app-${token}'
  params: {
    name: probeAppName
    location: location
    tags: tags
    identityId: probeIdentity.id
    storageAccountName: probeStorage.outputs.name
    storageBlobEndpoint: probeStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    appSettings: union(commonSettings, probeAppDisabledFunctions, {
      AzureWebJobsStorage__accountName: probeStorage.outputs.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: probeIdentity.properties.clientId
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${probeIdentity.properties.clientId};Authorization=AAD'
      AZURE_CLIENT_ID: probeIdentity.properties.clientId
      KVMON_ROLE: 'probe'
      KVMON_VANTAGE: outsideVantageName
    })
  }
}

// Where the monitor probes from: here (inside) and, through the probe app's API, the internet.
var vantages = [
  {
    name: insideVantageName
    inside: true
    subnet_id: monitorSubnetId
  }
  {
    name: outsideVantageName
    inside: false
    endpoint: 'https://${probeApp.outputs.hostName}/api/probe'
    key_setting: probeKeySetting
  }
]

var teamsChannel = empty(teamsWebhookUrl) ? [] : [
  {
    name: 'teams'
    kind: 'teams'
    url_setting: 'KVMON_TEAMS_URL'
    min_severity: notifyMinSeverity
  }
]

var slackChannel = empty(slackWebhookUrl) ? [] : [
  {
    name: 'slack'
    kind: 'slack'
    url_setting: 'KVMON_SLACK_URL'
    min_severity: notifyMinSeverity
  }
]

// The inside vantage point and the monitor: VNet-integrated, all outbound traffic through the VNet.
module monitorApp 'modules/function-app.bicep' = {
  name: 'kvmon-monitor-app-${token}'
  params: {
    name: monitorAppName
    location: location
    tags: tags
    identityId: monitorIdentity.id
    storageAccountName: monitorStorage.outputs.name
    storageBlobEndpoint: monitorStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    subnetId: monitorSubnetId
    appSettings: union(commonSettings, {
      AzureWebJobsStorage__accountName: monitorStorage.outputs.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: monitorIdentity.properties.clientId
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${monitorIdentity.properties.clientId};Authorization=AAD'
      AZURE_CLIENT_ID: monitorIdentity.properties.clientId
      KVMON_ROLE: 'monitor'
      KVMON_VANTAGE: insideVantageName
      KVMON_VANTAGES: string(vantages)
      KVMON_SUBSCRIPTIONS: join(monitoredSubscriptionIds, ',')
      KVMON_PERIMETER_SUBSCRIPTIONS: join(perimeterSubscriptionIds, ',')
      // With an event subscription delivering, a change only the timer finds is reported (KV303).
      KVMON_EVENT_FEED: (eventDelivery == 'none') ? 'false' : 'true'
      KVMON_STORAGE_ACCOUNT_URL: monitorStorage.outputs.tableEndpoint
      KVMON_BLOB_ACCOUNT_URL: monitorStorage.outputs.blobEndpoint
      KVMON_REPORT_CONTAINER: reportContainerName
      KVMON_WORKSPACES: workspaceAccess.outputs.customerId
      // The perimeters' access logs go to the same workspace when this deployment sends them.
      KVMON_NSP_WORKSPACES: empty(diagnosticPerimeterIds) ? '' : workspaceAccess.outputs.customerId
      KVMON_BASELINE: baseline
      KVMON_CHANNELS: string(concat(teamsChannel, slackChannel))
      KVMON_TEAMS_URL: teamsWebhookUrl
      KVMON_SLACK_URL: slackWebhookUrl
      // The outside vantage's host key, read at deployment time (see infra/README.md on why an app
      // setting and not a Key Vault reference). Redeploy to pick up a rotated key.
      '${probeKeySetting}': listKeys('${probeApp.outputs.id}/host/default', '2024-04-01').functionKeys.default
    })
  }
}

// --- vault changes as events -----------------------------------------------------------------------

// Every ARM write in a monitored subscription is an event on that subscription's system topic. The
// topic sits in a resource group of the monitored subscription, so, like Reader above, one module
// deployment per monitored subscription, at subscription scope (it may create that group).
module vaultEvents 'modules/vault-events.bicep' = [
  for subscriptionId in monitoredSubscriptionIds: if (eventDelivery != 'none') {
    name: 'kvmon-events-${uniqueString(subscriptionId, token)}'
    scope: subscription(subscriptionId)
    params: {
      topicResourceGroupName: eventTopicResourceGroupName
      location: location
      existingTopicId: contains(existingEventTopicIds, subscriptionId) ? existingEventTopicIds[subscriptionId] : ''
      newTopicName: '${namePrefix}-arm-events'
      eventSubscriptionName: '${namePrefix}-vaults-${token}'
      eventDelivery: eventDelivery
      functionResourceId: '${monitorApp.outputs.id}/functions/vault_changed'
      eventQueueName: eventQueueName
      storageAccountId: monitorStorage.outputs.id
      deadLetterContainerName: deadLetterContainerName
      deadLetterRoleDefinitionId: roles.storageBlobDataContributor
      queueSenderRoleDefinitionId: roles.storageQueueDataMessageSender
      tags: tags
    }
  }
]

output monitorAppName string = monitorAppName
output probeAppName string = probeAppName
output monitorIdentityPrincipalId string = monitorIdentity.properties.principalId
output monitorIdentityClientId string = monitorIdentity.properties.clientId
output probeEndpoint string = 'https://${probeApp.outputs.hostName}/api/probe'
output workspaceResourceId string = workspaceResourceId
output workspaceCustomerId string = workspaceAccess.outputs.customerId
output monitorStorageAccountName string = monitorStorage.outputs.name
