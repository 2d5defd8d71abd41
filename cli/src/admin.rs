//! The `/admin/v1` wire shapes are [`berth_proto::admin`]'s, shared with the apiserver; this adds the
//! path of one token.

pub use berth_proto::admin::{
    DNS_CERTIFICATES_PATH, DnsCertificate, IssuedToken, JOIN_TOKENS_PATH, JoinToken,
    JoinTokenRequest, NODES_PATH, Node, NodeResources, TOKENS_PATH, Token, TokenRequest,
};

/// `DELETE` revokes the token.
pub fn token_path(id: &str) -> String {
    format!("{TOKENS_PATH}/{}", crate::client::segment(id))
}

/// A lifetime in seconds as the wire carries it; one beyond `i64` is sent as the largest, which
/// the server refuses as out of range like any other too long.
pub fn wire_seconds(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
