//! Attaching one sandbox (its namespace, then CNI ADD through `loopback` and the chain, undone on
//! failure) and detaching it (rules, CNI DEL in reverse, namespace).

use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;
use tracing::warn;

use super::cni::{CniCommand, plugin_type, sandbox_address};
use super::netns::{create_netns, netns_is_live, remove_netns};
use super::state::remove_file;
use super::{Network, NetworkError, PortSpec, Sandbox};

impl Network {
    /// Creates the namespace and runs ADD; undoes everything on failure.
    pub(super) async fn create(
        &self,
        id: &str,
        ports: &[PortSpec],
    ) -> Result<Sandbox, NetworkError> {
        let netns = self.netns_path(id);
        if !netns_is_live(&netns) {
            create_netns(&netns).await?;
        }
        let mut last_result = None;
        let outcome = async {
            let result = self.add_all(id, &netns, ports, &mut last_result).await?;
            let (ip, _) = self.address(&result)?;
            self.ensure_rules(id, ip, ports, &result).await?;
            self.save(id, &netns, ports, result)
        }
        .await;
        if outcome.is_err() {
            let failures = self.remove(id, last_result.as_ref(), ports).await;
            for failure in failures {
                warn!(sandbox = id, error = %failure, "could not undo part of a failed network setup");
            }
        }
        outcome
    }

    /// Runs ADD for `loopback` and the chain; `last` holds the latest result for a rollback.
    async fn add_all(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortSpec],
        last: &mut Option<Value>,
    ) -> Result<Value, NetworkError> {
        let netns = netns.to_string_lossy();
        self.run_loopback(CniCommand::Add, id, &netns).await?;
        for plugin in &self.plugins {
            let result = self
                .run_chained(plugin, CniCommand::Add, id, &netns, last.as_ref(), ports)
                .await?;
            let Some(result) = result else {
                return Err(NetworkError::BadResult {
                    plugin: plugin_type(plugin).to_string(),
                    reason: "ADD printed no result".to_string(),
                });
            };
            *last = Some(result);
        }
        last.clone().ok_or_else(|| NetworkError::BadResult {
            plugin: "bridge".to_string(),
            reason: "the conflist has no plugins".to_string(),
        })
    }

    /// The sandbox's address and gateway in the chain's final result.
    pub(super) fn address(&self, result: &Value) -> Result<(IpAddr, Option<IpAddr>), NetworkError> {
        sandbox_address(result).map_err(|reason| NetworkError::BadResult {
            plugin: plugin_type(self.plugins.last().unwrap_or(&Value::Null)).to_string(),
            reason,
        })
    }

    pub(super) async fn teardown_locked(&self, id: &str) -> Result<(), NetworkError> {
        let record = self.load_record(id);
        let (prev_result, ports) = match &record {
            Some(record) => (Some(&record.result), record.ports.as_slice()),
            None => (None, &[][..]),
        };
        let mut failures = self.remove(id, prev_result, ports).await;
        if failures.is_empty()
            && let Err(error) = remove_file(&self.record_path(id))
        {
            failures.push(error);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::Teardown {
                id: id.to_string(),
                failures,
            })
        }
    }

    /// Removes the isolation and anti-spoofing rules, runs DEL for the chain in reverse and `loopback`,
    /// then removes the namespace; every step is tried and the failures are returned.
    async fn remove(
        &self,
        id: &str,
        prev_result: Option<&Value>,
        ports: &[PortSpec],
    ) -> Vec<NetworkError> {
        let netns_path = self.netns_path(id);
        // Plugins treat an empty CNI_NETNS as "the namespace is gone" and clean up what they can.
        let netns = if netns_is_live(&netns_path) {
            netns_path.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let mut failures = Vec::new();
        if let Err(error) = self.isolation.remove_group(id).await {
            failures.push(error.into());
        }
        if let Err(error) = self.spoofing.remove_group(id).await {
            failures.push(error.into());
        }
        for plugin in self.plugins.iter().rev() {
            let deleted = self
                .run_chained(plugin, CniCommand::Del, id, &netns, prev_result, ports)
                .await;
            if let Err(error) = deleted {
                failures.push(error);
            }
        }
        if let Err(error) = self.run_loopback(CniCommand::Del, id, &netns).await {
            failures.push(error);
        }
        if let Err(error) = remove_netns(&netns_path) {
            failures.push(error);
        }
        failures
    }
}
