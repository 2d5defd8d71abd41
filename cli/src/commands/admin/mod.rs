//! `berth admin …`: Berth-only administration under `/admin/v1` (operator tokens only).

pub mod dns_certificate;
pub mod drain;
pub mod join_token;
pub mod node;
pub mod token;
