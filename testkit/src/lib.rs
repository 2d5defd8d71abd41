//! What Berth's tests start for real and stop when they end. Each daemon gets its own directory,
//! socket and port under a temporary directory; nothing touches a system instance.
//!
//! - [`postgres`]: a PostgreSQL server of the test's own (Debian's `postgresql` binaries).

pub mod postgres;
