//! The fast path: positive A/AAAA answers straight from the bytes, no allocation, no parser.
//!
//! It accepts exactly this and declines (returns `false`) everything else, which the general path
//! then answers:
//!
//! - header: QR = 0, OPCODE = QUERY, QDCOUNT = 1, ANCOUNT = NSCOUNT = 0, ARCOUNT 0 or 1 (the other
//!   flag bits are ignored, as the general path ignores them);
//! - question: a name of plain labels (no compression pointer, at most 255 bytes on the wire), type
//!   A or AAAA, class IN;
//! - additional: nothing, or exactly one OPT record with the root name, version 0 and no options,
//!   ending the message (no trailing bytes);
//! - a name below the apex with 1 to 120 addresses of the asked type, and an answer within the
//!   size limit.
//!
//! The response is the one the general path builds for the same query: hickory writes the
//! question as it was sent, compresses each answer's owner (the question's name, as sent) into a
//! pointer to it, and emits the OPT record with our payload size, version 0 and the DO bit copied.

use std::net::IpAddr;

use super::{Location, MAX_UDP_PAYLOAD, Settings, Transport, response_limit};
use crate::zone::Published;

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// An OPT record with the root name and no options: name, type, class, TTL, RDLENGTH.
const BARE_OPT: usize = 1 + 2 + 2 + 4 + 2;
/// hickory compresses at most this many names per message (Unbound's limit, against
/// CVE-2024-8508) and writes the later ones in full, so past it the general path's bytes differ.
const MAX_COMPRESSED_NAMES: usize = 120;

/// Writes the response to `query` into `out` if the fast path handles it.
pub(super) fn answer(
    settings: &Settings,
    zone: &Published,
    query: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    let Some(header) = query.get(..HEADER) else {
        return false;
    };
    // QR = 0 and OPCODE = 0; AA, TC and RD may be anything.
    if header[2] & 0xF8 != 0 {
        return false;
    }
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let additional = count(10);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
        return false;
    }

    // The question's name: plain labels only.
    let mut label_count = 0;
    let mut at = HEADER;
    loop {
        let Some(&len) = query.get(at) else {
            return false;
        };
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xC0 != 0 || query.len() < at + 1 + usize::from(len) {
            return false;
        }
        label_count += 1;
        at += 1 + usize::from(len);
        // The name with its root byte may not exceed 255 bytes.
        if at + 1 - HEADER > 255 {
            return false;
        }
    }
    let name = &query[HEADER..at];
    let Some(&[type_hi, type_lo, class_hi, class_lo]) = query.get(at..at + 4) else {
        return false;
    };
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([type_hi, type_lo]);
    if u16::from_be_bytes([class_hi, class_lo]) != CLASS_IN
        || (qtype != TYPE_A && qtype != TYPE_AAAA)
    {
        return false;
    }

    // Nothing after the question but, perhaps, a bare OPT record.
    let edns = if additional == 1 {
        let Some(opt) = query.get(question_end..) else {
            return false;
        };
        let &[
            0,
            type_hi,
            type_lo,
            payload_hi,
            payload_lo,
            _rcode,
            0,
            flags,
            _,
            0,
            0,
        ] = opt
        else {
            return false;
        };
        if u16::from_be_bytes([type_hi, type_lo]) != TYPE_OPT {
            return false;
        }
        Some((u16::from_be_bytes([payload_hi, payload_lo]), flags & 0x80))
    } else {
        if query.len() != question_end {
            return false;
        }
        None
    };

    let labels = || WireLabels {
        rest: name,
        count: label_count,
    };
    let Location::Records(addresses) = settings.locate(labels, zone) else {
        return false;
    };
    let (rdata_len, matching): (usize, fn(&IpAddr) -> bool) = if qtype == TYPE_A {
        (4, IpAddr::is_ipv4)
    } else {
        (16, IpAddr::is_ipv6)
    };
    let answers = addresses.iter().filter(|a| matching(a)).count();
    if answers == 0 || answers > MAX_COMPRESSED_NAMES {
        return false;
    }
    let size = question_end
        + answers * (2 + 2 + 2 + 4 + 2 + rdata_len)
        + if edns.is_some() { BARE_OPT } else { 0 };
    let Ok(answer_count) = u16::try_from(answers) else {
        return false;
    };
    if size > response_limit(transport, edns.map(|(payload, _)| payload)) {
        return false;
    }

    out.clear();
    out.reserve(size);
    out.extend_from_slice(&header[..2]);
    // QR, OPCODE 0, AA, RD as asked; RA, Z, AD, CD clear, RCODE NOERROR.
    out.extend_from_slice(&[0x84 | (header[2] & 0x01), 0]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&answer_count.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, u8::from(edns.is_some())]);
    out.extend_from_slice(&query[HEADER..question_end]);
    let ttl = settings.ttl.to_be_bytes();
    for address in addresses.iter().filter(|a| matching(a)) {
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl);
        match address {
            IpAddr::V4(v4) => {
                out.extend_from_slice(&[0, 4]);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend_from_slice(&[0, 16]);
                out.extend_from_slice(&v6.octets());
            }
        }
    }
    if let Some((_, dnssec_ok)) = edns {
        let [payload_hi, payload_lo] = MAX_UDP_PAYLOAD.to_be_bytes();
        out.extend_from_slice(&[0, 0, 41, payload_hi, payload_lo, 0, 0, dnssec_ok, 0, 0, 0]);
    }
    true
}

/// The labels of a name on the wire, already checked to be plain labels within the message.
struct WireLabels<'q> {
    /// The name from its next length byte on.
    rest: &'q [u8],
    /// Labels left.
    count: usize,
}

impl<'q> Iterator for WireLabels<'q> {
    type Item = &'q [u8];

    fn next(&mut self) -> Option<&'q [u8]> {
        let (&len, rest) = self.rest.split_first()?;
        let label = rest.get(..usize::from(len)).filter(|_| len > 0)?;
        self.rest = &rest[label.len()..];
        self.count = self.count.saturating_sub(1);
        Some(label)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.count, Some(self.count))
    }
}

impl ExactSizeIterator for WireLabels<'_> {}
