//! `--output table|json|yaml`. JSON and YAML show the server's JSON as it came (a list as one array of
//! all its pages); tables pick az-like columns.

use std::io::Write as _;

use anyhow::Context as _;
use berth_proto::arm::ContainerGroup;
use clap::ValueEnum;
use comfy_table::{Table, TableComponent};
use serde_json::Value;

use crate::admin::{Node, Token};
use crate::billing::summary::UsageSummary;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Columns for people
    #[default]
    Table,
    /// The server's JSON, indented
    Json,
    /// The same as YAML
    Yaml,
}

/// `value` as indented JSON or YAML; `None` for [`OutputFormat::Table`], which the caller renders.
pub fn document(format: OutputFormat, value: &Value) -> anyhow::Result<Option<String>> {
    Ok(match format {
        OutputFormat::Table => None,
        OutputFormat::Json => Some(serde_json::to_string_pretty(value)?),
        OutputFormat::Yaml => Some(
            serde_norway::to_string(value)?
                .trim_end_matches('\n')
                .to_owned(),
        ),
    })
}

/// One container group as the server sent it.
pub fn group(format: OutputFormat, value: &Value) -> anyhow::Result<String> {
    match document(format, value)? {
        Some(text) => Ok(text),
        None => groups_table(&[decode_group(value)?]).map(Option::unwrap_or_default),
    }
}

/// Several container groups; JSON and YAML show them as one array.
pub fn groups(format: OutputFormat, values: &[Value]) -> anyhow::Result<Option<String>> {
    match document(format, &Value::Array(values.to_vec()))? {
        Some(text) => Ok(Some(text)),
        None => {
            let groups = values
                .iter()
                .map(decode_group)
                .collect::<anyhow::Result<Vec<_>>>()?;
            groups_table(&groups)
        }
    }
}

fn decode_group(value: &Value) -> anyhow::Result<ContainerGroup> {
    serde_json::from_value(value.clone())
        .context("the server's container group does not fit berth's schema (try -o json)")
}

/// A table with az's look: a header, a line of dashes, no borders.
pub(crate) fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    // Only the line under the header is drawn, broken between columns; cells have no left padding.
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_style(TableComponent::HeaderLines, '-');
    table.set_style(TableComponent::VerticalLines, ' ');
    table.set_style(TableComponent::MiddleHeaderIntersections, ' ');
    table.set_header(header.iter().copied());
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    table
}

/// `None` for no groups: az prints nothing for an empty table.
pub fn groups_table(groups: &[ContainerGroup]) -> anyhow::Result<Option<String>> {
    if groups.is_empty() {
        return Ok(None);
    }
    let mut table = new_table(&[
        "Name",
        "ResourceGroup",
        "Status",
        "Image",
        "IP:ports",
        "CPU cores",
        "Memory GB",
        "OsType",
        "Location",
    ]);
    for g in groups {
        table.add_row(group_row(g));
    }
    Ok(Some(trim_lines(&table.to_string())))
}

fn group_row(g: &ContainerGroup) -> Vec<String> {
    let props = g.properties.clone().unwrap_or_default();
    let containers = props.containers.unwrap_or_default();
    let status = props
        .instance_view
        .and_then(|v| v.state)
        .or(props.provisioning_state)
        .unwrap_or_default();
    let image = match containers
        .first()
        .and_then(|c| c.properties.as_ref()?.image.clone())
    {
        Some(image) if containers.len() > 1 => format!("{image} +{}", containers.len() - 1),
        Some(image) => image,
        None => String::new(),
    };
    let ip_ports = props
        .ip_address
        .map(|ip| {
            let ports: Vec<String> = ip
                .ports
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.port.map(|n| n.to_string()))
                .collect();
            format!("{}:{}", ip.ip.unwrap_or_default(), ports.join(","))
        })
        .unwrap_or_default();
    let requests = || {
        containers
            .iter()
            .filter_map(|c| c.properties.as_ref()?.resources.as_ref()?.requests.clone())
    };
    let cpu: f64 = requests().filter_map(|r| r.cpu).sum();
    let memory: f64 = requests().filter_map(|r| r.memory_in_gb).sum();
    vec![
        g.name.clone().unwrap_or_default(),
        g.id.as_deref()
            .and_then(resource_group_of)
            .unwrap_or_default()
            .to_owned(),
        status,
        image,
        ip_ports,
        number(cpu),
        number(memory),
        props.os_type.unwrap_or_default(),
        g.location.clone().unwrap_or_default(),
    ]
}

/// The resource group of an ARM id (`/subscriptions/s/resourceGroups/<rg>/…`).
fn resource_group_of(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
    parts.next()
}

/// At most two decimals, no trailing zeros: 1, 1.5, 0.25.
fn number(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The node table of `admin node list`; `None` for no nodes.
pub fn nodes_table(nodes: &[Node]) -> Option<String> {
    if nodes.is_empty() {
        return None;
    }
    let mut table = new_table(&[
        "NAME",
        "STATUS",
        "SCHEDULING",
        "OS",
        "CPU",
        "MEMORY GB",
        "GROUPS",
        "LAST HEARTBEAT",
    ]);
    for n in nodes {
        table.add_row(vec![
            n.name.clone(),
            n.status.clone(),
            scheduling(n).to_owned(),
            n.os_type.clone(),
            format!("{}/{}", number(n.allocated.cpu), number(n.capacity.cpu)),
            format!(
                "{}/{}",
                number(n.allocated.memory_in_gb),
                number(n.capacity.memory_in_gb)
            ),
            n.groups.to_string(),
            n.last_heartbeat.clone().unwrap_or_default(),
        ]);
    }
    Some(trim_lines(&table.to_string()))
}

/// The SCHEDULING column: whether new groups may go on the node.
fn scheduling(node: &Node) -> &'static str {
    match (node.draining, node.cordoned) {
        (true, _) => "Draining",
        (false, true) => "Cordoned",
        (false, false) => "-",
    }
}

/// The table of `admin token list`: a token per line, never its secret; `None` for no tokens.
pub fn tokens_table(tokens: &[Token]) -> Option<String> {
    if tokens.is_empty() {
        return None;
    }
    let mut table = new_table(&[
        "ID",
        "PREFIX",
        "SUBSCRIPTIONS",
        "OPERATOR",
        "CREATED",
        "EXPIRES",
        "REVOKED",
    ]);
    let or = |value: &Option<String>, none: &str| value.clone().unwrap_or_else(|| none.to_owned());
    for t in tokens {
        table.add_row(vec![
            t.id.clone(),
            t.prefix.clone(),
            if t.subscriptions.is_empty() {
                "-".to_owned()
            } else {
                t.subscriptions.join(",")
            },
            t.operator.to_string(),
            or(&t.created_at, "-"),
            or(&t.expires_at, "never"),
            or(&t.revoked_at, "-"),
        ]);
    }
    Some(trim_lines(&table.to_string()))
}

/// The table of `billing show`: a line per group and meter, then a TOTAL line per currency; `None`
/// for no rows.
pub fn usage_table(summary: &UsageSummary) -> Option<String> {
    if summary.is_empty() {
        return None;
    }
    let mut table = new_table(&["GROUP", "METER", "QUANTITY", "COST", "ACCRUING"]);
    let amount = |number: String, unit: &str| {
        if unit.is_empty() {
            number
        } else {
            format!("{number} {unit}")
        }
    };
    for line in summary.lines() {
        table.add_row(vec![
            line.group.clone(),
            line.meter.clone(),
            amount(line.quantity.to_string(), &line.unit),
            amount(line.cost.to_string_with_min_scale(2), &line.currency),
            if line.accruing { "yes" } else { "no" }.to_owned(),
        ]);
    }
    for (currency, cost) in summary.totals() {
        table.add_row(vec![
            "TOTAL".to_owned(),
            String::new(),
            String::new(),
            amount(cost.to_string_with_min_scale(2), currency),
            String::new(),
        ]);
    }
    Some(trim_lines(&table.to_string()))
}

/// comfy-table pads every cell, the last one too; drop what trails each line.
pub(crate) fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `text` and a newline to stdout. A closed pipe (`berth … | head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admin::NodeResources;

    fn sample() -> Value {
        json!({
            "id": "/subscriptions/dev/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroups/web",
            "name": "web",
            "type": "Microsoft.ContainerInstance/containerGroups",
            "location": "local",
            "properties": {
                "provisioningState": "Succeeded",
                "containers": [
                    {"name": "web", "properties": {
                        "image": "nginx:1.27",
                        "ports": [{"port": 80, "protocol": "TCP"}],
                        "environmentVariables": [],
                        "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}
                    }},
                    {"name": "sidecar", "properties": {
                        "image": "busybox",
                        "ports": [],
                        "environmentVariables": [],
                        "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.25}}
                    }}
                ],
                "ipAddress": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}],
                              "type": "Public", "ip": "10.0.0.7", "dnsNameLabel": "web-demo"},
                "osType": "Linux",
                "restartPolicy": "Always",
                "instanceView": {"events": [], "state": "Running"},
                "sku": "Standard"
            }
        })
    }

    #[test]
    fn group_table_has_azs_columns() {
        let table = group(OutputFormat::Table, &sample()).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let header: Vec<&str> = lines[0]
            .split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "Name",
                "ResourceGroup",
                "Status",
                "Image",
                "IP:ports",
                "CPU cores",
                "Memory GB",
                "OsType",
                "Location"
            ]
        );
        assert!(lines[1].trim().starts_with("----"), "{table}");
        assert!(
            !lines[1].contains('+') && !lines[1].contains('|'),
            "{table}"
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "web",
                "demo",
                "Running",
                "nginx:1.27",
                "+1",
                "10.0.0.7:80,443",
                "1.5",
                "1.75",
                "Linux",
                "local"
            ]
        );
    }

    #[test]
    fn status_falls_back_to_provisioning_state() {
        let mut value = sample();
        value["properties"]
            .as_object_mut()
            .unwrap()
            .remove("instanceView");
        value["properties"]["containers"]
            .as_array_mut()
            .unwrap()
            .pop();
        value["properties"]
            .as_object_mut()
            .unwrap()
            .remove("ipAddress");
        let table = group(OutputFormat::Table, &value).unwrap();
        let row: Vec<&str> = table.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "web",
                "demo",
                "Succeeded",
                "nginx:1.27",
                "1",
                "1.5",
                "Linux",
                "local"
            ]
        );
    }

    #[test]
    fn json_and_yaml_are_the_servers_document() {
        let value = sample();
        let json = group(OutputFormat::Json, &value).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), value);
        assert!(json.contains("\n  \"id\""), "indented: {json}");
        let yaml = group(OutputFormat::Yaml, &value).unwrap();
        assert_eq!(serde_norway::from_str::<Value>(&yaml).unwrap(), value);
        let list = groups(OutputFormat::Json, &[value.clone(), value.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&list).unwrap(),
            json!([value, value])
        );
        assert_eq!(groups(OutputFormat::Table, &[]).unwrap(), None);
        assert_eq!(
            groups(OutputFormat::Json, &[]).unwrap().as_deref(),
            Some("[]")
        );
    }

    #[test]
    fn node_table() {
        let node = Node {
            name: "n1".into(),
            status: "Ready".into(),
            os_type: "Linux".into(),
            capacity: NodeResources {
                cpu: 4.0,
                memory_in_gb: 16.0,
                gpu: 0,
            },
            allocated: NodeResources {
                cpu: 1.5,
                memory_in_gb: 2.25,
                gpu: 0,
            },
            groups: 2,
            last_heartbeat: Some("2025-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let table = nodes_table(&[node]).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("LAST HEARTBEAT"), "{table}");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "n1",
                "Ready",
                "-",
                "Linux",
                "1.5/4",
                "2.25/16",
                "2",
                "2025-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn node_table_shows_lost_cordoned_and_draining() {
        let node = |name: &str, status: &str, cordoned: bool, draining: bool| Node {
            name: name.into(),
            status: status.into(),
            cordoned,
            draining,
            ..Default::default()
        };
        let table = nodes_table(&[
            node("a", "Lost", false, false),
            node("b", "Ready", true, false),
            node("c", "NotReady", true, true),
        ])
        .unwrap();
        let columns: Vec<Vec<&str>> = table
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().take(3).collect())
            .collect();
        assert_eq!(
            columns,
            [
                ["a", "Lost", "-"],
                ["b", "Ready", "Cordoned"],
                ["c", "NotReady", "Draining"]
            ]
        );
    }

    #[test]
    fn token_table_shows_scope_and_lifetime() {
        let token = Token {
            id: "abc".to_owned(),
            prefix: "berth_abc_Xy12".to_owned(),
            subscriptions: vec!["s1".to_owned(), "s2".to_owned()],
            operator: false,
            created_at: Some("2025-01-01T00:00:00Z".to_owned()),
            expires_at: None,
            revoked_at: Some("2025-01-02T00:00:00Z".to_owned()),
            last_used_at: None,
        };
        let operator = Token {
            id: "op".to_owned(),
            subscriptions: Vec::new(),
            operator: true,
            expires_at: Some("2026-01-01T00:00:00Z".to_owned()),
            revoked_at: None,
            ..token.clone()
        };
        let table = tokens_table(&[token, operator]).unwrap();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            [
                "ID",
                "PREFIX",
                "SUBSCRIPTIONS",
                "OPERATOR",
                "CREATED",
                "EXPIRES",
                "REVOKED"
            ]
        );
        assert_eq!(
            rows[2],
            [
                "abc",
                "berth_abc_Xy12",
                "s1,s2",
                "false",
                "2025-01-01T00:00:00Z",
                "never",
                "2025-01-02T00:00:00Z"
            ]
        );
        assert_eq!(
            rows[3],
            [
                "op",
                "berth_abc_Xy12",
                "-",
                "true",
                "2025-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "-"
            ]
        );
        assert_eq!(tokens_table(&[]), None);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(0.0), "0");
    }
}
