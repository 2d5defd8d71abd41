//! Berth's DNS: the zone of container-group records and the authoritative server that answers from it.
//!
//! # Layout
//! - [`Zone`]: the records `<label>.<region>.<zone>` -> addresses that the apiserver publishes (or a
//!   standalone server follows), with a serial that increases with every change.

mod zone;

pub use zone::{Record, Snapshot, Zone, ZoneError, normalize};
