"""Azure Monitor's Python SDK (azure-mgmt-monitor, from PyPI) reads ACI's metrics from Berth unchanged:
only the endpoint, the credential and the CA file differ from reading them from Azure.

Run by tests/tests/e2e/metrics.rs against a cluster whose group it set up: the environment names the
endpoint, token, CA file, group id and which container is busy. Run without that (scripts/test runs
every file here) it is skipped."""

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.monitor import MonitorManagementClient

ENV = ("BERTH_METRICS_ENDPOINT", "BERTH_METRICS_TOKEN", "BERTH_METRICS_CA", "BERTH_METRICS_GROUP",
       "BERTH_METRICS_SUBSCRIPTION", "BERTH_METRICS_BUSY", "BERTH_METRICS_IDLE")

pytestmark = pytest.mark.skipif(
    any(name not in os.environ for name in ENV), reason="run by tests/tests/e2e/metrics.rs, which sets the group up")


class BerthToken:
    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture()
def client():
    return MonitorManagementClient(
        credential=BerthToken(os.environ["BERTH_METRICS_TOKEN"]),
        subscription_id=os.environ["BERTH_METRICS_SUBSCRIPTION"],
        base_url=os.environ["BERTH_METRICS_ENDPOINT"],
        connection_verify=os.environ["BERTH_METRICS_CA"],
    )


def last_minutes(minutes):
    """`start/end` as ISO 8601, the form Azure Monitor's documentation gives."""
    end = datetime.now(timezone.utc)
    start = end - timedelta(minutes=minutes)
    return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def averages(series):
    return [point.average for point in series.data if point.average is not None]


def test_cpu_and_memory_per_container(client):
    group = os.environ["BERTH_METRICS_GROUP"]
    busy, idle = os.environ["BERTH_METRICS_BUSY"], os.environ["BERTH_METRICS_IDLE"]
    result = client.metrics.list(
        group,
        timespan=last_minutes(15),
        interval="PT1M",
        metricnames="CpuUsage,MemoryUsage",
        aggregation="Average,Maximum",
        filter="containerName eq '*'",
    )
    assert result.namespace == "Microsoft.ContainerInstance/containerGroups"
    assert result.interval == "PT1M"
    by_name = {metric.name.value: metric for metric in result.value}
    assert set(by_name) == {"CpuUsage", "MemoryUsage"}
    cpu, memory = by_name["CpuUsage"], by_name["MemoryUsage"]
    assert cpu.unit == "Count" and memory.unit == "Bytes"
    assert cpu.name.localized_value == "CPU Usage"

    def per_container(metric):
        return {s.metadatavalues[0].value: s for s in metric.timeseries}

    cpu_of, memory_of = per_container(cpu), per_container(memory)
    assert set(cpu_of) == {busy, idle}, cpu_of.keys()
    assert cpu_of[busy].metadatavalues[0].name.value == "containername"
    busy_cpu = averages(cpu_of[busy])
    assert busy_cpu and max(busy_cpu) > 100, busy_cpu  # millicores: a spinning shell uses most of a core
    assert max(averages(cpu_of[idle]) or [0]) < max(busy_cpu)
    assert all(m > 0 for m in averages(memory_of[busy])), averages(memory_of[busy])
    assert any(p.maximum is not None and p.maximum >= p.average for p in cpu_of[busy].data if p.average is not None)


def test_the_group_as_a_whole_and_its_network(client):
    group = os.environ["BERTH_METRICS_GROUP"]
    result = client.metrics.list(
        group, timespan=last_minutes(15), interval="PT1M",
        metricnames="CpuUsage,NetworkBytesReceivedPerSecond", aggregation="Average")
    cpu, network = result.value
    assert len(cpu.timeseries) == 1 and cpu.timeseries[0].metadatavalues == []
    assert max(averages(cpu.timeseries[0])) > 100
    assert network.name.value == "NetworkBytesReceivedPerSecond" and len(network.timeseries) == 1


def test_a_bad_query_is_refused_naming_the_parameter(client):
    with pytest.raises(HttpResponseError) as refused:
        client.metrics.list(os.environ["BERTH_METRICS_GROUP"], interval="PT2M", metricnames="CpuUsage")
    assert refused.value.status_code == 400
    assert "interval" in str(refused.value)
