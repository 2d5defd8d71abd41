//! Talking to the apiserver: dialling with our own rustls connector, `Join`, and the `Sync` stream.

pub mod backoff;
pub mod dial;
pub mod join;
pub mod sync;
