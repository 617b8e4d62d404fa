// What a system topic's identity may do in the monitor's storage account, and nothing more: write
// dead-lettered events into one container and, when events are delivered through a queue, add
// messages to that one queue. Deployed into the monitor's resource group from
// vault-event-topic.bicep, which runs in the monitored subscription (possibly another one).
// The deploying user needs Owner, User Access Administrator or Role Based Access Control
// Administrator on the monitor's resource group (as for the monitor's own storage roles).

@description('Name of the monitor\'s storage account (in this module\'s resource group).')
param storageAccountName string

@description('Object (principal) id of the system topic\'s system-assigned identity.')
param principalId string

@description('Blob container Event Grid dead-letters undeliverable events into.')
param deadLetterContainerName string

@description('Role definition GUID for dead-lettering (Storage Blob Data Contributor).')
param deadLetterRoleDefinitionId string

@description('Queue in that account for queue delivery (it always exists: the monitor\'s trigger listens on it).')
param eventQueueName string

@description('Whether Event Grid delivers to that queue (eventDelivery queue): only then may the topic send to it.')
param deliverToQueue bool

@description('Role definition GUID for queue delivery (Storage Queue Data Message Sender).')
param queueSenderRoleDefinitionId string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

// On the container, not the account: the topic cannot touch the app's package or host state.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, principalId, deadLetterRoleDefinitionId)
  scope: deadLetterContainer
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', deadLetterRoleDefinitionId)
    description: 'kvmon event subscription: dead-letter vault change events the monitor did not take'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource eventQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: eventQueueName
}

// Send only (no read, no delete), and on the one queue: the monitor's identity reads it.
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deliverToQueue) {
  name: guid(eventQueue.id, principalId, queueSenderRoleDefinitionId)
  scope: eventQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueSenderRoleDefinitionId)
    description: 'kvmon event subscription: deliver vault change events to the monitor\'s queue'
  }
}
