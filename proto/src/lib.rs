//! Berth's contracts between crates: wire formats, default ports, and the back-off and clock every
//! crate uses the same way. Nothing else.
//!
//! # Layout
//! - [`node`]: the agent <-> apiserver gRPC protocol, generated from `protos/node.proto`.
//! - [`names`]: the certificate names that protocol's mutual TLS relies on.
//! - [`arm`]: serde types of ACI's ARM JSON (container groups, errors, operations, lists), so the
//!   apiserver and the CLI read and write exactly the same shapes.
//! - [`spec`]: the rules a group spec keeps, which the apiserver enforces before it writes and the
//!   node agent before it runs anything.
//! - [`admin`]: serde types of the `/admin/v1` JSON, which the apiserver serves and the CLI sends.
//! - [`exec`]: the channel protocol of `exec` websockets (channels, subprotocols, exit status).
//! - [`manifest`]: an ACI YAML/JSON group file read into the PUT it stands for (the CLI's `--file`,
//!   the console's `/console/v1/manifests`).
//! - [`ports`]: the default ports every side assumes when none is named.
//! - [`backoff`]: the jittered exponential back-off of everything that reconnects.
//! - [`clock`]: the wall clock in Unix milliseconds, as records and messages carry it.

pub mod admin;
pub mod arm;
pub mod backoff;
pub mod clock;
pub mod exec;
pub mod manifest;
pub mod ports;
pub mod spec;

/// The agent <-> apiserver protocol (`berth.node.v1`).
#[allow(unreachable_pub, clippy::all)]
pub mod node {
    tonic::include_proto!("berth.node.v1");
}

/// Names the cluster CA puts in certificates, and that each side of the agent protocol checks.
pub mod names {
    /// The name (CN and SAN) of the apiserver's client certificate: the only peer an agent's
    /// `AgentService` accepts.
    pub const APISERVER: &str = "apiserver.berth.internal";

    /// The DNS suffix of node names: a node certificate carries the SAN `<node-id>.node.berth.internal`,
    /// and the apiserver verifies an agent's `AgentService` under that name.
    pub const NODE_SUFFIX: &str = ".node.berth.internal";

    /// The DNS name of node `node_id` in its certificate.
    pub fn node(node_id: &str) -> String {
        format!("{node_id}{NODE_SUFFIX}")
    }

    /// The DNS suffix of standalone DNS servers' certificates (`<id>.dns.berth.internal`): the only
    /// peers `DnsService.Watch` accepts.
    pub const DNS_SUFFIX: &str = ".dns.berth.internal";
}
