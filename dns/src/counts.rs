//! How many queries the server answered, by transport and response code: what the apiserver's
//! `/metrics` shows as `berth_dns_queries_total`. Counting costs one relaxed atomic add per answer,
//! on the fast path too; the code is read back from the response's bytes, so neither path changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::responder::Transport;

/// The response codes counted apart: the 4-bit header RCODE (0..=15), BADVERS (16, the one
/// extended RCODE Berth sends, in its OPT record) and any other extended code.
const CODES: usize = 18;
const BADVERS: usize = 16;
const OTHER: usize = 17;

/// Answered queries per (transport, response code). Cheap to clone: clones count into the same
/// numbers.
#[derive(Debug, Clone)]
pub struct QueryCounts {
    counts: Arc<[AtomicU64; 2 * CODES]>,
}

/// One (transport, response code) pair's count, as [`QueryCounts::snapshot`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryCount {
    pub transport: Transport,
    /// The code's mnemonic (`NOERROR`, `NXDOMAIN`, …; `RCODE11` for one without a name).
    pub rcode: &'static str,
    pub count: u64,
}

impl Default for QueryCounts {
    fn default() -> Self {
        Self {
            counts: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl QueryCounts {
    /// Counts `response`, the bytes answered to a query that came over `transport`.
    pub(crate) fn record(&self, transport: Transport, response: &[u8]) {
        let slot = transport_index(transport) * CODES + code_slot(response);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Every pair counted at least once, UDP first, in code order.
    pub fn snapshot(&self) -> Vec<QueryCount> {
        [Transport::Udp, Transport::Tcp]
            .into_iter()
            .flat_map(|transport| {
                (0..CODES).filter_map(move |code| {
                    let count = self.counts[transport_index(transport) * CODES + code]
                        .load(Ordering::Relaxed);
                    (count > 0).then_some(QueryCount {
                        transport,
                        rcode: mnemonic(code),
                        count,
                    })
                })
            })
            .collect()
    }
}

fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

/// The response code of `response`: the header's 4 bits, with the upper 8 from an OPT record when
/// one ends the message (Berth's responses put their OPT last, with no options: root owner, type 41,
/// payload, extended RCODE, version, flags, RDLENGTH 0).
fn code_slot(response: &[u8]) -> usize {
    let Some(&flags) = response.get(3) else {
        return OTHER;
    };
    let low = usize::from(flags & 0x0F);
    let additionals = response
        .get(10..12)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let opt = response
        .len()
        .checked_sub(11)
        .and_then(|start| response.get(start..))
        .filter(|tail| additionals > 0 && tail[..3] == [0x00, 0x00, 0x29] && tail[9..] == [0, 0]);
    let high = opt.map_or(0, |tail| usize::from(tail[5]));
    match (high << 4) | low {
        code if code < 16 => code,
        16 => BADVERS,
        _ => OTHER,
    }
}

fn mnemonic(slot: usize) -> &'static str {
    const NAMES: [&str; CODES] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
        "BADVERS", "OTHER",
    ];
    NAMES.get(slot).copied().unwrap_or("OTHER")
}

impl Transport {
    /// `udp` or `tcp`, as metric labels say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(rcode: u8, additionals: u16) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x84, rcode, 0, 1, 0, 0, 0, 0];
        bytes.extend(additionals.to_be_bytes());
        bytes
    }

    #[test]
    fn the_code_comes_from_the_header_and_an_opt_record_at_the_end() {
        assert_eq!(mnemonic(code_slot(&header(0, 0))), "NOERROR");
        assert_eq!(mnemonic(code_slot(&header(3, 0))), "NXDOMAIN");
        assert_eq!(mnemonic(code_slot(&header(5, 0))), "REFUSED");
        let mut badvers = header(0, 1);
        badvers.extend([
            0x00, 0x00, 0x29, 0x04, 0xD0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]);
        assert_eq!(mnemonic(code_slot(&badvers)), "BADVERS");
        let mut plain_opt = header(0, 1);
        plain_opt.extend([
            0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
        ]);
        assert_eq!(mnemonic(code_slot(&plain_opt)), "NOERROR");
        assert_eq!(
            mnemonic(code_slot(&[0, 1])),
            "OTHER",
            "shorter than a header"
        );
    }

    #[test]
    fn clones_count_together_and_only_what_was_seen_is_listed() {
        let counts = QueryCounts::default();
        let other = counts.clone();
        counts.record(Transport::Udp, &header(0, 0));
        other.record(Transport::Udp, &header(0, 0));
        other.record(Transport::Tcp, &header(3, 0));
        assert_eq!(
            counts.snapshot(),
            vec![
                QueryCount {
                    transport: Transport::Udp,
                    rcode: "NOERROR",
                    count: 2
                },
                QueryCount {
                    transport: Transport::Tcp,
                    rcode: "NXDOMAIN",
                    count: 1
                },
            ]
        );
    }
}
