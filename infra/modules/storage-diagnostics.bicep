// Sends one monitored storage account's access logs to a Log Analytics workspace: a diagnostic
// setting on each of its services (blob, file, queue, table), with the categories StorageRead,
// StorageWrite and StorageDelete, which land in StorageBlobLogs, StorageFileLogs, StorageQueueLogs and
// StorageTableLogs (always resource-specific tables for Storage: there is no destination type to set).
// A request to the dfs or web endpoint is logged by the blob service. The setting sits on the service,
// not on the account: the account itself only has metrics.
// Deployed into the account's resource group; the deploying user needs
// Microsoft.Insights/diagnosticSettings/write on the account (Monitoring Contributor, for example).
// Nothing here grants the monitor a role: kvmon reads these logs with Log Analytics Reader on the
// workspace, and its probes of the account's endpoints need a token, not a data role.

@description('Name of the storage account (in this module\'s resource group).')
param storageAccountName string

@description('Resource id of the Log Analytics workspace.')
param workspaceResourceId string

@description('The account\'s services to log: all four by default; fewer for an account that lacks some (BlockBlobStorage has blob only, FileStorage file only).')
@allowed([
  'blob'
  'file'
  'queue'
  'table'
])
param services array = [
  'blob'
  'file'
  'queue'
  'table'
]

@description('Name of the diagnostic setting on each service.')
param settingName string = 'kvmon-storage'

// Every category of a storage service's resource logs (Microsoft's "Azure Storage monitoring data reference").
var categories = [
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (contains(services, 'blob')) {
  name: settingName
  scope: blobService
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}

resource fileLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (contains(services, 'file')) {
  name: settingName
  scope: fileService
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (contains(services, 'queue')) {
  name: settingName
  scope: queueService
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (contains(services, 'table')) {
  name: settingName
  scope: tableService
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      for category in categories: {
        category: category
        enabled: true
      }
    ]
  }
}
