//! The apiserver replicas an agent knows (`--server`, repeatable), and the order it tries them in.
//!
//! Every configured server counts, and a DNS name counts once per address it resolves to (resolved
//! again each round, so a changed record is followed). A join tries them in turn; a `Sync` stream
//! that breaks, or cannot be opened, moves on to the next one at once, and only a round in which
//! every one failed waits (the back-off), so a lost replica costs a reconnect, not a back-off.

use std::sync::Arc;

use super::dial::ServerAddr;

/// The configured servers (at least one).
#[derive(Debug, Clone)]
pub struct Servers {
    configured: Vec<Arc<ServerAddr>>,
}

/// No `--server` was given.
#[derive(Debug, thiserror::Error)]
#[error("at least one --server is needed")]
pub struct NoServers;

impl Servers {
    pub fn new(configured: Vec<ServerAddr>) -> Result<Self, NoServers> {
        if configured.is_empty() {
            return Err(NoServers);
        }
        Ok(Self {
            configured: configured.into_iter().map(Arc::new).collect(),
        })
    }

    /// The first configured server (whose route the agent's own service advertises an address on).
    pub fn first(&self) -> &Arc<ServerAddr> {
        &self.configured[0]
    }

    /// One round's servers to try, in order: each configured one, a DNS name as each of its
    /// addresses. A name that does not resolve stays as it is (dialling it says why).
    pub async fn resolve(&self) -> Vec<Arc<ServerAddr>> {
        let mut round: Vec<Arc<ServerAddr>> = Vec::new();
        for server in &self.configured {
            let addresses = if server.is_ip() {
                Vec::new()
            } else {
                match tokio::net::lookup_host((server.host(), server.port())).await {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(error) => {
                        tracing::debug!(%server, %error, "cannot resolve the server's name");
                        Vec::new()
                    }
                }
            };
            let expanded: Vec<Arc<ServerAddr>> = if addresses.is_empty() {
                vec![Arc::clone(server)]
            } else {
                addresses
                    .into_iter()
                    .map(|ip| Arc::new(server.at(ip)))
                    .collect()
            };
            for candidate in expanded {
                if !round.contains(&candidate) {
                    round.push(candidate);
                }
            }
        }
        round
    }
}

impl std::fmt::Display for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, server) in self.configured.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            server.fmt(f)?;
        }
        Ok(())
    }
}

/// Which of a round's servers to try, and when a whole round has failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    len: usize,
    at: usize,
    /// Servers tried since the last stream that worked (or the round's start).
    failed: usize,
}

impl Rotation {
    /// A rotation over `len` servers (at least one), starting at the first.
    pub fn new(len: usize) -> Self {
        Self {
            len: len.max(1),
            at: 0,
            failed: 0,
        }
    }

    /// The index of the server to try now.
    pub fn current(&self) -> usize {
        self.at
    }

    /// The attempt on the current server ended (`worked`: it had served a stream, which then
    /// broke). Moves to the next server; returns whether every server of the round has now failed
    /// since the last one that worked, in which case the caller waits before going on.
    pub fn failed(&mut self, worked: bool) -> bool {
        if worked {
            self.failed = 0;
        }
        self.at = (self.at + 1) % self.len;
        self.failed += 1;
        if self.failed >= self.len {
            self.failed = 0;
            true
        } else {
            false
        }
    }

    /// A new round of `len` servers (names resolved again): the position is kept where it can be.
    pub fn resize(&mut self, len: usize) {
        self.len = len.max(1);
        self.at %= self.len;
        self.failed = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The servers tried for a sequence of outcomes (`true`: the stream worked, then broke), and
    /// where the caller waited (`'|'`).
    fn trace(len: usize, outcomes: &[bool]) -> String {
        let mut rotation = Rotation::new(len);
        let mut out = String::new();
        for &worked in outcomes {
            out.push(char::from(b'a' + rotation.current() as u8));
            if rotation.failed(worked) {
                out.push('|');
            }
        }
        out
    }

    #[test]
    fn one_server_waits_after_every_failure_as_before() {
        assert_eq!(trace(1, &[false, false, true, false]), "a|a|a|a|");
    }

    #[test]
    fn a_broken_stream_moves_to_the_next_server_at_once() {
        // a served, broke: b straight away; b served, broke: a straight away.
        assert_eq!(trace(2, &[true, true, true]), "aba");
        assert_eq!(trace(3, &[true, false, true]), "abc");
    }

    #[test]
    fn only_a_whole_round_of_failures_waits() {
        assert_eq!(trace(3, &[false, false, false, false]), "abc|a");
        // a worked and broke, then b and c fail: every one has failed since, so wait before a.
        assert_eq!(trace(3, &[true, false, false, false]), "abc|a");
    }

    #[test]
    fn a_new_round_keeps_the_position_where_it_can() {
        let mut rotation = Rotation::new(3);
        rotation.failed(false);
        rotation.failed(false);
        assert_eq!(rotation.current(), 2);
        rotation.resize(2);
        assert_eq!(rotation.current(), 0, "past the end: the first");
        rotation.failed(false);
        rotation.resize(4);
        assert_eq!(rotation.current(), 1);
        assert!(!rotation.failed(false), "resize starts a round");
    }

    #[tokio::test]
    async fn names_expand_to_their_addresses_and_duplicates_go() {
        let servers = Servers::new(vec![
            "https://localhost:9001".parse().unwrap(),
            "https://127.0.0.1:9002".parse().unwrap(),
            "https://127.0.0.1:9002".parse().unwrap(),
        ])
        .unwrap();
        let round = servers.resolve().await;
        let shown: Vec<String> = round.iter().map(|s| s.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|s| s == "https://localhost:9001/ (127.0.0.1)"),
            "{shown:?}"
        );
        assert_eq!(
            shown.iter().filter(|s| s.contains(":9002")).count(),
            1,
            "{shown:?}"
        );
        assert_eq!(
            shown.last().map(String::as_str),
            Some("https://127.0.0.1:9002/")
        );
        assert!(Servers::new(Vec::new()).is_err());
    }
}
