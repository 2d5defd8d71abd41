//! Berth's DNS: the zone of container-group records.
//!
//! # Layout
//! - [`Zone`]: the records `<label>.<region>.<zone>` -> IP that the apiserver publishes. The
//!   authoritative server that answers from it comes with the DNS issue; until then the apiserver
//!   only keeps the zone current.

mod zone;

pub use zone::{Record, Zone, ZoneError};
