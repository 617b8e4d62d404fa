// The subscription's system topic for ARM writes (Microsoft.Resources.Subscriptions), in this
// module's resource group. Azure allows one such topic per subscription: when one exists, name it
// (existingTopicName) and this module only refers to it; it must have a system-assigned identity.

@description('Name of the subscription\'s existing system topic in this resource group. Empty: create newTopicName.')
param existingTopicName string = ''

@description('Name of the system topic to create when none exists.')
param newTopicName string

param tags object = {}

var createTopic = empty(existingTopicName)

resource createdTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: newTopicName
  // A subscription's topic is not regional: ARM writes anywhere in the subscription feed it.
  location: 'global'
  tags: tags
  // The identity Event Grid delivers and dead-letters with, so no storage key is ever handed out.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource reusedTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!createTopic) {
  name: existingTopicName
}

output id string = createTopic ? createdTopic.id : reusedTopic.id
output principalId string = createTopic ? createdTopic.identity.principalId : reusedTopic.identity.principalId
