//! Replicas of one control plane: several `berth-apiserver` processes (so a test can SIGKILL one) on
//! one database of a PostgreSQL server of the test binary's own ([`TempPostgres::shared`]), sharing
//! replica A's CA and keys as `scripts/up --ha` does; real nodes whose agents know every replica.

use std::time::Duration;

use berth_testkit::postgres::TempPostgres;
use reqwest::Method;
use serde_json::Value;

use crate::harness::Api;
use crate::process::ApiserverProcess;
use crate::real::{RealNode, RealOptions, SLOW};

/// What replicas of one cluster must have alike in their data dirs: the CA (node and server
/// certificates), the key sealing secure environment values in the store, the sign-in key.
pub const SHARED_KEYS: [&str; 4] = ["ca.crt", "ca.key", "secrets.key", "signin.key"];

/// The lease whose holder runs the scheduler and the liveness monitor.
pub const CONTROL_LEASE: &str = "control";

pub struct Replicas {
    /// The store every replica is given (`--store`).
    pub url: String,
    pub replicas: Vec<ApiserverProcess>,
}

impl Replicas {
    /// Starts replica A on a fresh database, waits until it holds the control lease (so A is the
    /// leader), then the others with A's keys and operator token; each with `extra` flags.
    pub async fn start(count: usize, extra: &[&str]) -> Self {
        assert!(count >= 1);
        let pg = TempPostgres::shared().expect("PostgreSQL starts (scripts/setup installs it)");
        let url = pg.fresh_database("ha").expect("a fresh database");
        let store = url.clone();
        let mut args = vec!["--store", store.as_str()];
        args.extend_from_slice(extra);
        let mut first = ApiserverProcess::prepare(&args);
        first.launch().await;
        let mut replicas = Self {
            url,
            replicas: vec![first],
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
        while replicas.lease_holder().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica A never took the {CONTROL_LEASE} lease\n{}",
                replicas.a().log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 1..count {
            let mut replica = ApiserverProcess::prepare(&args);
            for key in SHARED_KEYS {
                std::fs::copy(replicas.a().dir().join(key), replica.dir().join(key))
                    .unwrap_or_else(|e| panic!("copy {key} to a replica: {e}"));
            }
            replica.operator = replicas.a().operator.clone();
            replica.launch().await;
            replicas.replicas.push(replica);
        }
        replicas
    }

    pub fn a(&self) -> &ApiserverProcess {
        &self.replicas[0]
    }

    pub fn b(&self) -> &ApiserverProcess {
        &self.replicas[1]
    }

    pub fn a_mut(&mut self) -> &mut ApiserverProcess {
        &mut self.replicas[0]
    }

    /// The holder of the unexpired control lease, read from the database (its clock decides).
    pub fn lease_holder(&self) -> Option<String> {
        let out = std::process::Command::new("psql")
            .arg(&self.url)
            .args(["-v", "ON_ERROR_STOP=1", "-tAc"])
            .arg(format!(
                "SELECT holder FROM leases WHERE name = '{CONTROL_LEASE}' \
                 AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
            ))
            .output()
            .expect("psql runs");
        let holder = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !holder.is_empty()).then_some(holder)
    }

    /// Waits until the control lease is held by someone other than `old`; returns the new holder.
    pub async fn wait_new_holder(&self, old: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(holder) = self.lease_holder().filter(|h| h != old) {
                return holder;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {CONTROL_LEASE} lease did not leave {old} within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a [`RealNode`] joined through replica A whose agent is given every replica's node
    /// port (`--server` each, A first) and waits until every replica lists it Ready.
    pub async fn real_node(&self, name: &str, options: RealOptions) -> RealNode {
        let token = self.a().join_token().await;
        let servers: Vec<&str> = self.replicas.iter().map(|r| r.node_url.as_str()).collect();
        let node = RealNode::join_servers(&servers, &token, name, options).await;
        for replica in &self.replicas {
            wait_node_status(replica, &node, "Ready").await;
        }
        node
    }
}

/// The node `name` as `replica` lists it (`Value::Null`: not listed).
pub async fn node_on(replica: &ApiserverProcess, name: &str) -> Value {
    let (_, body) = replica
        .operator_api()
        .call(Method::GET, "/admin/v1/nodes", None)
        .await;
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits (up to [`SLOW`]) until `replica` lists `node` with `status`.
pub async fn wait_node_status(replica: &ApiserverProcess, node: &RealNode, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SLOW);
    loop {
        let found = node_on(replica, &node.name).await;
        if found["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never listed node {} {status}: {found}\n--- agent log ---\n{}",
            replica.base,
            node.name,
            node.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Groups placed on nodes, all nodes together, as the replica of `operator` (an operator's client)
/// reads them from the store; `None` if it does not answer.
pub async fn placed(operator: &Api) -> Option<u64> {
    let (status, _, body) = operator
        .try_raw(Method::GET, "/admin/v1/nodes", None)
        .await
        .ok()?;
    status.is_success().then(|| {
        body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["groups"].as_u64().unwrap_or(0))
            .sum()
    })
}
