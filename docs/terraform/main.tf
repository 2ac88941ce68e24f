terraform {
  required_providers {
    azapi = {
      source  = "Azure/azapi"
      version = "1.15.0"
    }
  }
}

variable "url" {
  description = "kubeinvoke's URL, without a trailing slash (with one, azapi 1.15 ignores polling errors)"
  default     = "https://127.0.0.1:8443"
}

variable "data_dir" {
  description = "The local server's data directory: its admin's credentials and subscription id are read there"
  default     = "~/.local/share/kubeinvoke"
}

variable "script" {
  default = "echo hello from terraform"
}

locals {
  admin    = jsondecode(file(pathexpand("${var.data_dir}/bootstrap-admin.json")))
  instance = jsondecode(file(pathexpand("${var.data_dir}/instance.json")))
}

provider "azapi" {
  # azapi 1.15 cannot turn off instance discovery; "adfs" makes it use the authority as given.
  tenant_id       = "adfs"
  subscription_id = local.instance.subscriptionId
  client_id       = local.admin.appId
  client_secret   = local.admin.password
  endpoint = [{
    resource_manager_endpoint       = var.url
    active_directory_authority_host = var.url
    resource_manager_audience       = "https://management.core.windows.net/"
  }]
}

resource "azapi_resource" "group" {
  type      = "Microsoft.Resources/resourceGroups@2022-09-01"
  name      = "tf-rg"
  parent_id = "/subscriptions/${local.instance.subscriptionId}"
  location  = "westeurope"
}

resource "azapi_resource" "cluster" {
  type                      = "Microsoft.ContainerService/managedClusters@2024-09-01"
  name                      = "tf-cluster"
  parent_id                 = azapi_resource.group.id
  location                  = "westeurope"
  schema_validation_enabled = false
  body = jsonencode({
    properties = { dnsPrefix = "tf" }
  })
}

resource "azapi_resource" "hello" {
  type                      = "Microsoft.ContainerService/managedClusters/runCommands@2024-09-01"
  name                      = "hello"
  parent_id                 = azapi_resource.cluster.id
  location                  = "westeurope"
  schema_validation_enabled = false
  body = jsonencode({
    properties = {
      source                          = { script = var.script }
      treatFailureAsDeploymentFailure = true
    }
  })
  response_export_values = ["properties.instanceView"]
}

# The command's output, read from the run command's instanceView.
output "output" {
  value = jsondecode(azapi_resource.hello.output).properties.instanceView.output
}
