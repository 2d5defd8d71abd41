//! Berth's default ports: what a flag or URL that names none means, on every side.

/// The apiserver's REST API (HTTPS): `--listen`, and what the CLI's endpoint is usually on.
pub const HTTPS: u16 = 8443;

/// The apiserver's node port (gRPC over mutual TLS): node agents' `Sync` and standalone
/// `berth-dns`'s `DnsService.Watch`. `--node-listen`; a `--server` URL without a port means it.
pub const NODE: u16 = 8444;

/// A node agent's `AgentService` (logs, exec; the apiserver's certificate only): `--agent-listen`.
pub const AGENT: u16 = 8445;

/// DNS (UDP and TCP), the apiserver's embedded server and a standalone `berth-dns`: `--dns-listen`,
/// `berth-dns --listen`, and `berth dns` without a port.
pub const DNS: u16 = 5353;
