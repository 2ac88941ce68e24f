"""ARM's own calls that IaC tools and az make around a cluster: PATCH of tags, provider
registration, locations, and location names, through the real az CLI and SDKs."""

import json

from azure.mgmt.containerservice.models import ManagedCluster, TagsObject

from conftest import SUBSCRIPTION

GROUP = "arm-rg"


def test_az_group_create_update_and_a_move_refused(az):
    created = json.loads(az.run("group", "create", "-n", GROUP, "-l", "West Europe", "-o", "json").stdout)
    assert created["location"] == "westeurope", created
    updated = json.loads(az.run("group", "update", "-n", GROUP, "--tags", "env=prod", "team=a", "-o", "json").stdout)
    assert updated["tags"] == {"env": "prod", "team": "a"}, updated
    shown = json.loads(az.run("group", "show", "-n", GROUP, "-o", "json").stdout)
    assert shown["tags"] == {"env": "prod", "team": "a"} and shown["location"] == "westeurope"
    moved = az.run("group", "create", "-n", GROUP, "-l", "eastus", check=False)
    assert moved.returncode != 0
    assert "InvalidResourceGroupLocation" in moved.stderr, moved.stderr


def test_az_provider_show_register_and_list_locations(az):
    provider = json.loads(az.run("provider", "show", "-n", "Microsoft.ContainerService", "-o", "json").stdout)
    assert provider["registrationState"] == "Registered", provider
    types = {t["resourceType"]: t for t in provider["resourceTypes"]}
    assert "2024-09-01" in types["managedClusters"]["apiVersions"]
    az.run("provider", "register", "-n", "Microsoft.ContainerService", "--wait")
    locations = json.loads(az.run("account", "list-locations", "-o", "json").stdout)
    names = {l["name"]: l["displayName"] for l in locations}
    assert names["westeurope"] == "West Europe", names


def test_sdk_update_tags_patches_only_the_tags(server, client):
    server.put(f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{GROUP}-sdk?api-version=2022-09-01", {"location": "westeurope"})
    client.managed_clusters.begin_create_or_update(
        f"{GROUP}-sdk", "tagged", ManagedCluster(location="West Europe", dns_prefix="keep")
    ).result()
    updated = client.managed_clusters.begin_update_tags(f"{GROUP}-sdk", "tagged", TagsObject(tags={"env": "prod"})).result()
    assert updated.tags == {"env": "prod"}
    shown = client.managed_clusters.get(f"{GROUP}-sdk", "tagged")
    assert shown.tags == {"env": "prod"} and shown.dns_prefix == "keep" and shown.location == "westeurope"
