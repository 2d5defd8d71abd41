//! Berth's wire contracts and nothing else.
//!
//! # Layout
//! - [`node`]: the agent <-> apiserver gRPC protocol, generated from `protos/node.proto`.
//! - [`arm`]: serde types of ACI's ARM JSON (container groups, errors, operations, lists), so the
//!   apiserver and the CLI read and write exactly the same shapes.

pub mod arm;

/// The agent <-> apiserver protocol (`berth.node.v1`).
#[allow(unreachable_pub, clippy::all)]
pub mod node {
    tonic::include_proto!("berth.node.v1");
}
