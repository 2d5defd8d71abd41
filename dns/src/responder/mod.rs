//! The request path: one DNS message in, the bytes of its response out (or nothing at all).
//!
//! Two implementations answer, and they must answer byte for byte the same:
//!
//! - the **fast path** ([`fast`]) reads the header and the question straight from the bytes and
//!   writes a positive A/AAAA answer from the zone's addresses: the query's ID, RD bit and question
//!   bytes as sent, then one record per address whose owner is a compression pointer to the
//!   question (`C0 0C`), then an OPT record if the query had one. It takes only the common case
//!   (QUERY, one question, class IN, type A or AAAA, a name below the apex that has addresses of
//!   that type, at most a bare EDNS(0) OPT, an answer that fits) and declines anything else;
//! - the **general path** ([`general`]) parses the whole message with hickory-proto, decides every
//!   case (FORMERR, BADVERS, NOTIMP, REFUSED, NXDOMAIN, NODATA, SOA, NS, ANY, truncation) and
//!   builds the response with hickory's encoder.
//!
//! [`Responder::answer`] tries the fast path and falls back to the general one, so the fast path
//! only ever saves work: whatever it does not fully understand, hickory answers.

mod fast;
mod general;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;

use crate::counts::QueryCounts;
use crate::server::{ServerConfig, ServerError, Soa};
use crate::zone::{Published, Zone};

/// How the message came, which decides how large the response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// At most 512 bytes, or what the query's OPT record asks up to [`MAX_UDP_PAYLOAD`].
    Udp,
    /// At most 65,535 bytes, the 2-byte length prefix's limit.
    Tcp,
}

/// The largest UDP response Berth sends, and the size its OPT records advertise: the DNS Flag Day
/// 2020 value (Knot's default too), which fits an IPv6 packet on any path without fragmentation.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers DNS messages for one zone; what the server's UDP threads and TCP connections run, one
/// `Responder` each (it is cheap to clone).
///
/// It keeps the zone state it last read and re-reads it only when the zone's version changed, so a
/// query costs one atomic load of zone bookkeeping, and a change is seen by the next query.
#[derive(Debug, Clone)]
pub struct Responder {
    settings: Arc<Settings>,
    zone: Zone,
    current: Arc<Published>,
    /// What [`Responder::answer`] answered, shared by every clone.
    counts: QueryCounts,
}

/// What does not change while a server runs.
#[derive(Debug)]
struct Settings {
    /// TTL of A, AAAA, SOA and NS records in answers.
    ttl: u32,
    /// TTL of the SOA record in negative answers: min(SOA minimum, the SOA's own TTL), RFC 2308 §3.
    negative_ttl: u32,
    /// The origin's labels, lower case, for matching question names.
    origin_labels: Vec<Box<[u8]>>,
    /// The origin, the owner of SOA and NS.
    origin: Name,
    mname: Name,
    rname: Name,
    refresh: u32,
    retry: u32,
    expire: u32,
    minimum: u32,
}

/// Where a question's name is, as far as this zone is concerned.
#[derive(Debug)]
enum Location<'z> {
    /// Not the origin nor below it: not ours (REFUSED).
    Outside,
    /// The origin itself, which has SOA and NS, and may have addresses.
    Apex(Option<&'z [IpAddr]>),
    /// A name below the origin with addresses.
    Records(&'z [IpAddr]),
    /// A name below the origin without records of its own but with names below it (an empty
    /// non-terminal): it exists (NODATA), RFC 8020.
    Interior,
    /// Nothing at or below this name (NXDOMAIN).
    Nowhere,
}

impl Responder {
    /// A responder for `zone` with the TTLs and SOA of `config`. Fails if the origin or the SOA's
    /// names are not valid domain names.
    pub fn new(config: &ServerConfig, zone: Zone) -> Result<Self, ServerError> {
        let origin = zone.origin().to_owned();
        let fqdn = |name: &str| -> Result<Name, ServerError> {
            let text = if name.is_empty() || name == "." {
                ".".to_owned()
            } else {
                format!("{}.", name.trim_end_matches('.'))
            };
            Name::from_ascii(&text)
                .map(|name| name.to_lowercase())
                .map_err(|source| ServerError::InvalidName {
                    name: name.to_owned(),
                    source,
                })
        };
        let soa = config
            .soa
            .clone()
            .unwrap_or_else(|| Soa::for_origin(&origin));
        // A mailbox may be given as hostmaster@example.com; on the wire it is hostmaster.example.com.
        let rname = soa.rname.replacen('@', ".", 1);
        let origin_name = fqdn(&origin)?;
        let settings = Settings {
            ttl: config.ttl,
            negative_ttl: soa.minimum.min(config.ttl),
            origin_labels: origin_name
                .iter()
                .map(|label| label.to_ascii_lowercase().into_boxed_slice())
                .collect(),
            origin: origin_name,
            mname: fqdn(&soa.mname)?,
            rname: fqdn(&rname)?,
            refresh: soa.refresh,
            retry: soa.retry,
            expire: soa.expire,
            minimum: soa.minimum,
        };
        Ok(Self {
            settings: Arc::new(settings),
            current: zone.published(),
            zone,
            counts: QueryCounts::default(),
        })
    }

    /// The response to `query` in `out`: `true` if there is one to send, `false` to send nothing
    /// (shorter than a header, or itself a response). Never panics, whatever the bytes.
    /// Each response is counted in [`Responder::counts`].
    pub fn answer(&mut self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> bool {
        self.refresh();
        let answered = fast::answer(&self.settings, &self.current, query, transport, out)
            || general::answer(&self.settings, &self.current, query, transport, out);
        if answered {
            self.counts.record(transport, out);
        }
        answered
    }

    /// The counts of what this responder and its clones answered.
    pub fn counts(&self) -> QueryCounts {
        self.counts.clone()
    }

    /// The fast path alone: `true` if it answered into `out`, `false` if it declined (then `out`
    /// holds nothing meaningful). For tests, fuzzing and benchmarks that compare the two paths.
    pub fn answer_fast(&mut self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> bool {
        self.refresh();
        fast::answer(&self.settings, &self.current, query, transport, out)
    }

    /// The general (hickory) path alone, as [`Responder::answer`] would answer without the fast
    /// path. For tests, fuzzing and benchmarks that compare the two paths.
    pub fn answer_general(
        &mut self,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        self.refresh();
        general::answer(&self.settings, &self.current, query, transport, out)
    }

    /// Takes the zone's current state if it changed since the last query.
    fn refresh(&mut self) {
        if self.zone.version() != self.current.version {
            self.current = self.zone.published();
        }
    }
}

impl Settings {
    /// Where the name whose labels `labels()` yields (as sent) is in the zone `zone`.
    fn locate<'z, 'n, I>(&self, labels: impl Fn() -> I, zone: &'z Published) -> Location<'z>
    where
        I: ExactSizeIterator<Item = &'n [u8]>,
    {
        let Some(below) = labels().len().checked_sub(self.origin_labels.len()) else {
            return Location::Outside;
        };
        let in_zone = labels()
            .skip(below)
            .zip(&self.origin_labels)
            .all(|(label, origin)| label.eq_ignore_ascii_case(origin));
        if !in_zone {
            return Location::Outside;
        }
        let mut buffer = [0; 256];
        let key = lookup_key(labels(), &mut buffer);
        let addresses = key
            .and_then(|key| zone.records.get(key))
            .map(|addresses| &**addresses);
        if below == 0 {
            return Location::Apex(addresses);
        }
        match addresses {
            Some(addresses) => Location::Records(addresses),
            None if key.is_some_and(|key| zone.interior.contains_key(key)) => Location::Interior,
            None => Location::Nowhere,
        }
    }
}

/// The zone's key for a name: its labels in lower case (ASCII), joined by dots. `None` for a name
/// no zone key can be: a label holding a dot, or bytes that are not UTF-8.
fn lookup_key<'n, 'b>(
    labels: impl Iterator<Item = &'n [u8]>,
    buffer: &'b mut [u8; 256],
) -> Option<&'b str> {
    let mut len = 0;
    for (i, label) in labels.enumerate() {
        if i > 0 {
            *buffer.get_mut(len)? = b'.';
            len += 1;
        }
        for &byte in label {
            if byte == b'.' {
                return None;
            }
            *buffer.get_mut(len)? = byte.to_ascii_lowercase();
            len += 1;
        }
    }
    std::str::from_utf8(buffer.get(..len)?).ok()
}

/// The UDP response limit for a query with an OPT record asking for `requested` bytes (`None`:
/// no OPT): 512 without EDNS, else the request clamped to 512..=[`MAX_UDP_PAYLOAD`] (RFC 6891
/// §6.2.5: values below 512 are treated as 512).
fn response_limit(transport: Transport, requested: Option<u16>) -> usize {
    match (transport, requested) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(requested)) => usize::from(requested.clamp(512, MAX_UDP_PAYLOAD)),
    }
}

#[cfg(test)]
mod tests;
