"""ACI's official Python SDK (azure-mgmt-containerinstance) drives Berth unchanged: only the endpoint,
the credential and the CA file differ from talking to Azure."""

import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import (
    Container,
    ContainerGroup,
    ContainerPort,
    EnvironmentVariable,
    IpAddress,
    Port,
    ResourceRequests,
    ResourceRequirements,
)

from conftest import SUBSCRIPTION


class BerthToken:
    """A TokenCredential that hands out a Berth bearer token."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture()
def client(berth):
    return ContainerInstanceManagementClient(
        credential=BerthToken(berth.token),
        subscription_id=SUBSCRIPTION,
        base_url=berth.endpoint,
        connection_verify=berth.ca_file,
        polling_interval=1,
    )


def group(image="registry.local/busybox:latest", cpu=1.0, memory=1.5, label=None):
    return ContainerGroup(
        location="local",
        os_type="Linux",
        containers=[
            Container(
                name="web",
                image=image,
                ports=[ContainerPort(port=80)],
                environment_variables=[
                    EnvironmentVariable(name="GREETING", value="hello"),
                    EnvironmentVariable(name="SECRET", secure_value="sdk-secret-value"),
                ],
                resources=ResourceRequirements(requests=ResourceRequests(cpu=cpu, memory_in_gb=memory)),
            )
        ],
        ip_address=IpAddress(type="Public", ports=[Port(port=80)], dns_name_label=label),
    )


def test_lifecycle_through_the_sdk(client):
    created = client.container_groups.begin_create_or_update("sdk-rg", "sdk-web", group(label="sdkweb1")).result()
    assert created.provisioning_state == "Succeeded"
    assert created.instance_view.state == "Running"
    assert created.containers[0].resources.requests.cpu == 1.0
    assert created.containers[0].resources.requests.memory_in_gb == 1.5
    assert created.ip_address.fqdn == "sdkweb1.local.berth.internal"
    assert created.ip_address.ip
    env = {e.name: e for e in created.containers[0].environment_variables}
    assert env["GREETING"].value == "hello"
    assert env["SECRET"].secure_value is None and env["SECRET"].value is None

    got = client.container_groups.get("sdk-rg", "sdk-web")
    assert got.id.endswith("/resourceGroups/sdk-rg/providers/Microsoft.ContainerInstance/containerGroups/sdk-web")
    assert got.containers[0].instance_view.current_state.state == "Running"

    names = [g.name for g in client.container_groups.list_by_resource_group("sdk-rg")]
    assert names == ["sdk-web"]
    assert "sdk-web" in [g.name for g in client.container_groups.list()]

    client.container_groups.stop("sdk-rg", "sdk-web")
    assert client.container_groups.get("sdk-rg", "sdk-web").instance_view.state == "Stopped"

    client.container_groups.begin_start("sdk-rg", "sdk-web").result()
    assert client.container_groups.get("sdk-rg", "sdk-web").instance_view.state == "Running"

    client.container_groups.begin_restart("sdk-rg", "sdk-web").result()
    assert client.container_groups.get("sdk-rg", "sdk-web").instance_view.state == "Running"

    deleted = client.container_groups.begin_delete("sdk-rg", "sdk-web").result()
    assert deleted is None or deleted.name == "sdk-web"
    with pytest.raises(ResourceNotFoundError):
        client.container_groups.get("sdk-rg", "sdk-web")


def test_bad_request_is_a_clear_error(client):
    with pytest.raises(HttpResponseError) as raised:
        client.container_groups.begin_create_or_update("sdk-rg", "sdk-bad", group(cpu=-1)).result()
    err = raised.value
    assert err.status_code == 400
    assert err.error.code == "InvalidPropertyValue"
    assert err.error.target == "properties.containers[0].properties.resources.requests.cpu"
    with pytest.raises(ResourceNotFoundError):
        client.container_groups.get("sdk-rg", "sdk-bad")


def test_location_endpoints(client):
    usages = list(client.location.list_usage("local"))
    assert {u.name.value for u in usages} >= {"ContainerGroups", "StandardCores"}
    caps = list(client.location.list_capabilities("local"))
    assert caps and caps[0].os_type == "Linux" and caps[0].capabilities.max_cpu == 4.0
    assert [op.name for op in client.operations.list()]
