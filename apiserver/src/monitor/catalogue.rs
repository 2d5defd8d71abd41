//! The metrics ACI defines for `Microsoft.ContainerInstance/containerGroups` (Azure Monitor's
//! "supported metrics" list): their names, units, and where each is read from a sample.

use crate::store::MetricSample;

/// The namespace of every metric here (`metricnamespace`, and the response's `namespace`).
pub const NAMESPACE: &str = "Microsoft.ContainerInstance/containerGroups";

/// The one dimension: which container of the group (`$filter=containerName eq '*'`).
pub const CONTAINER_DIMENSION: &str = "containerName";

/// A metric of a container group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// CPU use over all cores, millicores (unit `Count`, as ACI says), per container.
    CpuUsage,
    /// Memory working set, bytes, per container.
    MemoryUsage,
    /// Bytes the group's network namespace received per second (no container dimension).
    NetworkBytesReceivedPerSecond,
    /// Bytes the group's network namespace sent per second (no container dimension).
    NetworkBytesTransmittedPerSecond,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::CpuUsage,
        Metric::MemoryUsage,
        Metric::NetworkBytesReceivedPerSecond,
        Metric::NetworkBytesTransmittedPerSecond,
    ];

    /// The metric a `metricnames` entry names (without case, as Azure Monitor reads it).
    pub fn parse(name: &str) -> Option<Metric> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::CpuUsage => "CpuUsage",
            Metric::MemoryUsage => "MemoryUsage",
            Metric::NetworkBytesReceivedPerSecond => "NetworkBytesReceivedPerSecond",
            Metric::NetworkBytesTransmittedPerSecond => "NetworkBytesTransmittedPerSecond",
        }
    }

    /// The name the portal and az's table show (`name.localizedValue`).
    pub fn display_name(self) -> &'static str {
        match self {
            Metric::CpuUsage => "CPU Usage",
            Metric::MemoryUsage => "Memory Usage",
            Metric::NetworkBytesReceivedPerSecond => "Network Bytes Received Per Second",
            Metric::NetworkBytesTransmittedPerSecond => "Network Bytes Transmitted Per Second",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Metric::CpuUsage => "CPU usage on all cores in millicores.",
            Metric::MemoryUsage => "Total memory usage in byte.",
            Metric::NetworkBytesReceivedPerSecond => "The network bytes received per second.",
            Metric::NetworkBytesTransmittedPerSecond => "The network bytes transmitted per second.",
        }
    }

    /// Azure Monitor's unit.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::CpuUsage => "Count",
            _ => "Bytes",
        }
    }

    /// Whether the metric has the `containerName` dimension (the network is the group's).
    pub fn per_container(self) -> bool {
        matches!(self, Metric::CpuUsage | Metric::MemoryUsage)
    }

    /// Whether `sample` is a row this metric reads: a container's, or the group's own.
    pub fn reads(self, sample: &MetricSample) -> bool {
        self.per_container() != sample.container.is_empty()
    }

    /// This metric's value in `sample` (a row it [`reads`](Self::reads)).
    pub fn value(self, sample: &MetricSample) -> f64 {
        match self {
            Metric::CpuUsage => sample.cpu_millicores,
            Metric::MemoryUsage => sample.memory_bytes as f64,
            Metric::NetworkBytesReceivedPerSecond => sample.rx_bytes_per_second,
            Metric::NetworkBytesTransmittedPerSecond => sample.tx_bytes_per_second,
        }
    }
}

/// What the response says of a name that is not a metric here, as Azure Monitor words it.
pub fn unknown_metric(name: &str) -> String {
    let valid: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    format!(
        "Failed to find metric configuration for provider: Microsoft.ContainerInstance, resource Type: \
         containerGroups, metric: {name}, Valid metrics: {}",
        valid.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_without_case_and_unknown_ones_are_listed_against_the_valid() {
        assert_eq!(Metric::parse("cpuusage"), Some(Metric::CpuUsage));
        assert_eq!(
            Metric::parse(" NetworkBytesTransmittedPerSecond"),
            Some(Metric::NetworkBytesTransmittedPerSecond)
        );
        assert_eq!(Metric::parse("CpuUsagePercentage"), None);
        assert!(
            unknown_metric("Foo").contains("metric: Foo, Valid metrics: CpuUsage,MemoryUsage,")
        );
    }

    #[test]
    fn container_metrics_read_container_rows_and_network_metrics_the_groups() {
        let mut row = MetricSample {
            group_id: "g".into(),
            container: "c".into(),
            at_ms: 0,
            cpu_usage_ns: 0,
            cpu_millicores: 250.0,
            memory_bytes: 1024,
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_second: 3.0,
            tx_bytes_per_second: 4.0,
        };
        assert!(Metric::CpuUsage.reads(&row) && Metric::MemoryUsage.reads(&row));
        assert!(!Metric::NetworkBytesReceivedPerSecond.reads(&row));
        assert_eq!(Metric::MemoryUsage.value(&row), 1024.0);
        row.container.clear();
        assert!(!Metric::CpuUsage.reads(&row));
        assert!(Metric::NetworkBytesTransmittedPerSecond.reads(&row));
        assert_eq!(Metric::NetworkBytesTransmittedPerSecond.value(&row), 4.0);
    }
}
