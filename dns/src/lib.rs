//! Berth's DNS: the zone of container-group records and the authoritative server that answers from it.
//!
//! # Layout
//! - [`Zone`]: the records `<label>.<region>.<zone>` -> addresses that the apiserver publishes (or a
//!   standalone server follows), with a serial that increases with every change.
//! - `server`: [`serve`] binds UDP and TCP and answers from a zone until shut down ([`ServerConfig`],
//!   [`Soa`], [`Running`], [`ServerError`]).
//! - `responder`: [`Responder`], the request path shared by UDP and TCP: a fast path of our own for
//!   positive A/AAAA answers, hickory-proto for everything else, byte for byte alike.
//! - `counts`: [`QueryCounts`], answered queries by transport and response code (one atomic add each).
//! - `udp`: the UDP worker threads (blocking sockets, `recvmmsg`/`sendmmsg` batches).
//! - `tcp`: DNS over TCP on tokio with hickory's framing, an idle timeout and a connection bound.
//! - [`follow`]: the standalone `berth-dns`: follows the apiserver's `DnsService.Watch` over mutual
//!   TLS into a zone, keeps answering from the last state (saved to a file) while the apiserver is away.

mod counts;
pub mod follow;
mod responder;
mod server;
mod tcp;
mod udp;
mod zone;

pub use counts::{QueryCount, QueryCounts};
pub use responder::{MAX_UDP_PAYLOAD, Responder, Transport};
pub use server::{
    Running, ServerConfig, ServerError, Soa, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS, serve,
};
pub use zone::{Record, Snapshot, Zone, ZoneError, normalize};
