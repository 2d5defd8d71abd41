//! The `/admin/v1` wire shapes are [`berth_proto::admin`]'s, shared with the apiserver; this adds the
//! paths of one token, one node and one group.

pub use berth_proto::admin::{
    DNS_CERTIFICATES_PATH, DnsCertificate, GROUPS_PATH, GroupPlacement, GroupPlacementEvent,
    IssuedToken, JOIN_TOKENS_PATH, JoinToken, JoinTokenRequest, NODES_PATH, Node, NodeEvacuation,
    NodeResources, TOKENS_PATH, Token, TokenRequest,
};

use crate::client::segment;

/// `DELETE` revokes the token.
pub fn token_path(id: &str) -> String {
    format!("{TOKENS_PATH}/{}", segment(id))
}

/// `GET` shows the node (by name or id), `DELETE` removes it (`?force=true`: with its groups).
pub fn node_path(node: &str) -> String {
    format!("{NODES_PATH}/{}", segment(node))
}

/// `POST` to `cordon`, `uncordon` or `drain` the node.
pub fn node_action_path(node: &str, action: &str) -> String {
    format!("{}/{action}", node_path(node))
}

/// `GET` shows where the group with this Berth id is and how it runs.
pub fn group_path(id: &str) -> String {
    format!("{GROUPS_PATH}/{}", segment(id))
}

/// A lifetime in seconds as the wire carries it; one beyond `i64` is sent as the largest, which
/// the server refuses as out of range like any other too long.
pub fn wire_seconds(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_escape_the_name() {
        assert_eq!(node_path("node-1"), "/admin/v1/nodes/node-1");
        assert_eq!(
            node_action_path("a/b", "drain"),
            "/admin/v1/nodes/a%2Fb/drain"
        );
        assert_eq!(group_path("g 1"), "/admin/v1/groups/g%201");
    }
}
