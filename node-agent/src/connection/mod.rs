//! Talking to the apiserver: dialling with our own rustls connector, `Join`, the `Sync` stream, and the
//! watch over how long no apiserver was heard (for fencing).

pub mod dial;
pub mod join;
pub mod servers;
pub mod silence;
pub mod sync;

use std::time::Duration;

use berth_proto::backoff::Backoff;

/// The back-off of joins, `Sync` reconnects and containerd's start: 100 ms doubling to 5 s.
pub const RECONNECT: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
};
