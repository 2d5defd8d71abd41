//! `berth admin node drain NAME`: the apiserver takes every group off the node at once (cordoned,
//! each group stopped there with its grace) and the scheduler places them elsewhere; this follows
//! the moved groups (`GET /admin/v1/groups/{id}`, by the ARM ids the answer names) until each runs elsewhere, saying so as each does.
//! [`Watch`] is the pure part: what an observation of a group means and what to print.

use std::time::Duration;

use serde_json::Value;

use crate::admin::{GroupPlacement, NodeEvacuation, group_path, node_action_path};
use crate::cli::NodeDrainArgs;
use crate::commands::Context;
use crate::commands::admin::node::plural;
use crate::output;

/// How often the moved groups are looked at.
const POLL: Duration = Duration::from_millis(500);

/// Drains the node; unless `--no-wait`, waits for the moved groups to run elsewhere.
pub async fn drain(ctx: &Context, args: &NodeDrainArgs) -> anyhow::Result<()> {
    let answer = ctx
        .client
        .post::<()>(&node_action_path(&args.node.node, "drain"), None)
        .await?;
    let evacuation: NodeEvacuation = answer.json()?;
    // JSON and YAML: the answer on stdout, the progress on stderr.
    let document = output::document(ctx.output, &answer.json::<Value>()?)?;
    let say = |line: &str| match document {
        Some(_) => {
            eprintln!("{line}");
            Ok(())
        }
        None => output::emit(line),
    };
    if let Some(text) = &document {
        output::emit(text)?;
    }
    say(&started_message(&evacuation))?;
    if args.no_wait || evacuation.moved.is_empty() {
        return Ok(());
    }
    let mut watch = Watch::new(&evacuation);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        for id in watch.waiting() {
            let seen = match ctx.client.get(&group_path(&id)).await {
                Ok(answer) => Observed::Placement(answer.json()?),
                Err(e) if e.status() == Some(404) => Observed::Gone,
                Err(e) => return Err(e.into()),
            };
            if let Some(line) = watch.observe(&id, seen) {
                say(&line)?;
            }
        }
        if watch.done() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{}", watch.timed_out(args.timeout));
        }
        tokio::time::sleep(POLL).await;
    }
    match watch.failures() {
        None => say(&watch.finished()),
        Some(failures) => anyhow::bail!("{failures}"),
    }
}

/// What the first line says: how many groups were taken off.
fn started_message(evacuation: &NodeEvacuation) -> String {
    let node = &evacuation.node.name;
    let (moved, settled) = (evacuation.moved.len(), evacuation.settled.len());
    let mut line = format!(
        "Draining node {node}: {moved} group{} to place on other nodes",
        plural(moved)
    );
    if settled > 0 {
        line.push_str(&format!(
            ", {settled} finished group{} taken off",
            plural(settled)
        ));
    }
    line.push('.');
    line
}

/// One look at a moved group.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// 404: deleted meanwhile.
    Gone,
    Placement(GroupPlacement),
}

/// Where a moved group stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// Not running elsewhere yet; the reason is its last event, if any.
    Waiting {
        name: String,
        reason: Option<String>,
    },
    /// Runs (or ran and finished) on another node: its name, that node, its state there.
    Moved {
        name: String,
        node: String,
        state: String,
    },
    /// Nothing to wait for: deleted or stopped meanwhile.
    Ended,
    /// It will not run elsewhere: its placement failed (e.g. no node took it in time).
    Failed { name: String, reason: String },
}

/// The moved groups of a drain and what was last seen of each, in the order the answer named them.
#[derive(Debug)]
pub struct Watch {
    node: (String, String),
    groups: Vec<(String, Standing)>,
}

impl Watch {
    pub fn new(evacuation: &NodeEvacuation) -> Self {
        let groups = evacuation
            .moved
            .iter()
            .map(|id| {
                let waiting = Standing::Waiting {
                    name: display_name(id),
                    reason: None,
                };
                (id.clone(), waiting)
            })
            .collect();
        Self {
            node: (evacuation.node.name.clone(), evacuation.node.id.clone()),
            groups,
        }
    }

    /// The ids still to look at.
    pub fn waiting(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, s)| matches!(s, Standing::Waiting { .. }))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn done(&self) -> bool {
        self.waiting().is_empty()
    }

    /// Records what was seen of group `id`; the line to print if it just moved or failed.
    pub fn observe(&mut self, id: &str, seen: Observed) -> Option<String> {
        let standing = self.judge(seen);
        let total = self.groups.len();
        let entry = self.groups.iter_mut().find(|(g, _)| g == id)?;
        let was_waiting = matches!(entry.1, Standing::Waiting { .. });
        entry.1 = standing.clone();
        if !was_waiting {
            return None;
        }
        let moved = self.moved();
        match standing {
            Standing::Moved { name, node, state } => Some(format!(
                "{name}: {state} on node {node} ({moved} of {total} moved)"
            )),
            Standing::Failed { name, reason } => Some(format!("{name}: not placed: {reason}")),
            Standing::Ended => Some(format!(
                "{}: deleted or stopped meanwhile, nothing to move.",
                display_name(id)
            )),
            Standing::Waiting { .. } => None,
        }
    }

    fn judge(&self, seen: Observed) -> Standing {
        let Observed::Placement(group) = seen else {
            return Standing::Ended;
        };
        let name = display_name(&group.resource_id);
        let reason = group
            .last_event
            .as_ref()
            .map(|e| format!("{}: {}", e.name, e.message));
        let elsewhere = group
            .node
            .as_deref()
            .filter(|n| *n != self.node.0 && *n != self.node.1);
        match (elsewhere, group.state.as_str()) {
            (_, "Stopped") => Standing::Ended,
            (Some(node), state @ ("Running" | "Succeeded" | "Failed")) => Standing::Moved {
                name,
                node: node.to_owned(),
                state: state.to_owned(),
            },
            (None, _) if group.provisioning_state == "Failed" => Standing::Failed {
                name,
                reason: reason.unwrap_or_else(|| "its provisioning failed".to_owned()),
            },
            _ => Standing::Waiting { name, reason },
        }
    }

    fn moved(&self) -> usize {
        self.groups
            .iter()
            .filter(|(_, s)| matches!(s, Standing::Moved { .. }))
            .count()
    }

    /// The last line of a drain whose groups all moved (or ended).
    pub fn finished(&self) -> String {
        format!(
            "Node {} drained: {} of {} moved.",
            self.node.0,
            self.moved(),
            self.groups.len()
        )
    }

    /// The error of a drain some of whose groups cannot be placed; `None` if there are none.
    pub fn failures(&self) -> Option<String> {
        let failed: Vec<String> = self
            .groups
            .iter()
            .filter_map(|(_, s)| match s {
                Standing::Failed { name, reason } => Some(format!("{name} ({reason})")),
                _ => None,
            })
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "node {} drained, but {} of {} groups were not placed again: {}",
                self.node.0,
                failed.len(),
                self.groups.len(),
                failed.join("; ")
            )
        })
    }

    /// The error of a drain whose `--timeout` passed: the groups still waiting and why.
    pub fn timed_out(&self, seconds: u64) -> String {
        let waiting: Vec<String> = self
            .groups
            .iter()
            .filter_map(|(_, s)| match s {
                Standing::Waiting { name, reason } => Some(match reason {
                    Some(reason) => format!("{name} ({reason})"),
                    None => name.clone(),
                }),
                Standing::Failed { name, reason } => Some(format!("{name} ({reason})")),
                _ => None,
            })
            .collect();
        format!(
            "gave up after {seconds} s: {} of {} groups moved off node {}; still waiting: {}",
            self.moved(),
            self.groups.len(),
            self.node.0,
            waiting.join("; ")
        )
    }
}

/// `rg/name` of an ARM id (`/subscriptions/s/resourceGroups/rg/providers/…/containerGroups/name`),
/// or the id as it is.
fn display_name(resource_id: &str) -> String {
    let parts: Vec<&str> = resource_id.split('/').collect();
    let after = |key: &str| {
        parts
            .iter()
            .position(|p| p.eq_ignore_ascii_case(key))
            .and_then(|i| parts.get(i + 1))
    };
    match (after("resourceGroups"), after("containerGroups")) {
        (Some(rg), Some(name)) => format!("{rg}/{name}"),
        _ => resource_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{GroupPlacementEvent, Node};

    fn evacuation(moved: &[&str]) -> NodeEvacuation {
        NodeEvacuation {
            node: Node {
                name: "node-a".into(),
                id: "id-a".into(),
                ..Default::default()
            },
            moved: moved.iter().map(|m| (*m).to_owned()).collect(),
            settled: vec![],
        }
    }

    fn seen(name: &str, node: Option<&str>, provisioning: &str, state: &str) -> Observed {
        Observed::Placement(GroupPlacement {
            id: format!("id-{name}"),
            last_event: Some(GroupPlacementEvent {
                name: "FailedScheduling".into(),
                message: "No node has 4 CPU free.".into(),
            }),
            node: node.map(str::to_owned),
            provisioning_state: provisioning.into(),
            resource_id: format!(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/{name}"
            ),
            state: state.into(),
        })
    }

    #[test]
    fn a_group_counts_as_moved_once_it_runs_on_another_node() {
        let mut watch = Watch::new(&evacuation(&["g1", "g2"]));
        // Still on the drained node (by name or id), or on none: waiting, nothing printed.
        for node in [Some("node-a"), Some("id-a"), None] {
            assert_eq!(
                watch.observe("g1", seen("web", node, "Pending", "Running")),
                None
            );
        }
        assert_eq!(watch.waiting(), ["g1", "g2"]);
        // Placed elsewhere but not running yet: still waiting.
        assert_eq!(
            watch.observe("g1", seen("web", Some("node-b"), "Pending", "Pending")),
            None
        );
        assert_eq!(
            watch
                .observe("g1", seen("web", Some("node-b"), "Succeeded", "Running"))
                .as_deref(),
            Some("rg/web: Running on node node-b (1 of 2 moved)")
        );
        // Said once.
        assert_eq!(
            watch.observe("g1", seen("web", Some("node-b"), "Succeeded", "Running")),
            None
        );
        assert!(!watch.done());
        let timed_out = watch.timed_out(30);
        assert!(
            timed_out.contains("1 of 2 groups moved off node node-a; still waiting: g2"),
            "{timed_out}"
        );
        // A group that finished elsewhere moved too.
        assert!(
            watch
                .observe("g2", seen("job", Some("node-c"), "Succeeded", "Succeeded"))
                .is_some()
        );
        assert!(watch.done());
        assert_eq!(watch.failures(), None);
        assert_eq!(watch.finished(), "Node node-a drained: 2 of 2 moved.");
    }

    #[test]
    fn the_timeout_names_what_waits_and_why() {
        let mut watch = Watch::new(&evacuation(&["g1"]));
        watch.observe("g1", seen("big", None, "Pending", "Pending"));
        assert_eq!(
            watch.timed_out(5),
            "gave up after 5 s: 0 of 1 groups moved off node node-a; still waiting: rg/big \
             (FailedScheduling: No node has 4 CPU free.)"
        );
    }

    #[test]
    fn deleted_stopped_and_failed_groups_end_the_wait() {
        let mut watch = Watch::new(&evacuation(&["g1", "g2", "g3"]));
        assert!(watch.observe("g1", Observed::Gone).is_some());
        assert!(
            watch
                .observe("g2", seen("off", None, "Succeeded", "Stopped"))
                .is_some()
        );
        let line = watch.observe("g3", seen("big", None, "Failed", "Failed"));
        assert_eq!(
            line.as_deref(),
            Some("rg/big: not placed: FailedScheduling: No node has 4 CPU free.")
        );
        assert!(watch.done());
        let failures = watch.failures().unwrap_or_default();
        assert!(
            failures.contains("1 of 3 groups were not placed again: rg/big"),
            "{failures}"
        );
    }

    #[test]
    fn names_come_from_the_arm_id() {
        assert_eq!(
            display_name(
                "/subscriptions/s/resourceGroups/My-RG/providers/Microsoft.ContainerInstance/containerGroups/web"
            ),
            "My-RG/web"
        );
        assert_eq!(display_name("odd"), "odd");
    }

    #[test]
    fn the_first_line_counts_what_was_taken_off() {
        let mut evacuated = evacuation(&["g1", "g2"]);
        assert_eq!(
            started_message(&evacuated),
            "Draining node node-a: 2 groups to place on other nodes."
        );
        evacuated.moved.truncate(1);
        evacuated.settled = vec!["g3".into()];
        assert_eq!(
            started_message(&evacuated),
            "Draining node node-a: 1 group to place on other nodes, 1 finished group taken off."
        );
    }
}
