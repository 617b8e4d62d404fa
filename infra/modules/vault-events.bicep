// The event path for one monitored subscription: its Microsoft.Resources.Subscriptions system topic
// (created here, or an existing one reused) and kvmon's event subscription on it, to the monitor.
// Deployed from main.bicep with `scope: subscription(<id>)`, once per monitored subscription: a
// system topic lives in a resource group of the subscription it reports on, which need not be the
// monitor's subscription. At subscription scope this module can create that resource group.
targetScope = 'subscription'

@description('Resource group for a new system topic; created (or updated with `tags`) here. Ignored when existingTopicId is set.')
param topicResourceGroupName string

@description('Region of that resource group (the topic itself is global).')
param location string

@description('Resource id of this subscription\'s existing Microsoft.Resources.Subscriptions system topic. Empty: create one.')
param existingTopicId string = ''

@description('Name of a system topic this module creates.')
param newTopicName string

@description('Name of kvmon\'s event subscription on the topic.')
param eventSubscriptionName string

@description('`function` (push to the vault_changed function) or `queue` (write to eventQueueName).')
@allowed([
  'function'
  'queue'
])
param eventDelivery string

@description('Resource id of the monitor\'s vault_changed function.')
param functionResourceId string

@description('Storage queue in the monitor\'s storage for queue delivery (KVMON_EVENT_QUEUE).')
param eventQueueName string

@description('Resource id of the monitor\'s storage account (dead letters).')
param storageAccountId string

@description('Blob container in that account for dead-lettered events.')
param deadLetterContainerName string

@description('Role definition GUID for dead-lettering (Storage Blob Data Contributor).')
param deadLetterRoleDefinitionId string

@description('Role definition GUID for queue delivery (Storage Queue Data Message Sender).')
param queueSenderRoleDefinitionId string

param tags object = {}

var reuseTopic = !empty(existingTopicId)

resource topicGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = if (!reuseTopic) {
  name: topicResourceGroupName
  location: location
  tags: tags
}

module topic 'vault-event-topic.bicep' = {
  name: 'kvmon-event-topic-${uniqueString(subscription().id, newTopicName)}'
  scope: resourceGroup(reuseTopic ? split(existingTopicId, '/')[4] : topicResourceGroupName)
  params: {
    existingTopicName: reuseTopic ? last(split(existingTopicId, '/')) : ''
    newTopicName: newTopicName
    eventSubscriptionName: eventSubscriptionName
    eventDelivery: eventDelivery
    functionResourceId: functionResourceId
    eventQueueName: eventQueueName
    storageAccountId: storageAccountId
    deadLetterContainerName: deadLetterContainerName
    deadLetterRoleDefinitionId: deadLetterRoleDefinitionId
    queueSenderRoleDefinitionId: queueSenderRoleDefinitionId
    tags: tags
  }
  dependsOn: [
    topicGroup
  ]
}
