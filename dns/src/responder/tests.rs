//! The request path on bytes: what each kind of query gets, the fast path against the general
//! one, and malformed input (proptest).

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use proptest::prelude::*;

use super::*;

const ORIGIN: &str = "berth.internal";
const A: u16 = 1;
const NS: u16 = 2;
const SOA: u16 = 6;
const MX: u16 = 15;
const AAAA: u16 = 28;
const OPT: u16 = 41;
const AXFR: u16 = 252;
const ANY: u16 = 255;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
}

fn zone() -> Zone {
    let zone = Zone::new(ORIGIN);
    zone.upsert("web.local.berth.internal", vec![v4(5), v6(5)])
        .unwrap();
    zone.upsert("v6only.local.berth.internal", vec![v6(6)])
        .unwrap();
    zone.upsert("two.local.berth.internal", vec![v4(7), v4(8)])
        .unwrap();
    zone.upsert("deep.a.b.berth.internal", vec![v4(9)]).unwrap();
    zone.upsert(ORIGIN, vec![v4(1)]).unwrap();
    zone.upsert(
        "many.local.berth.internal",
        (1..=130)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
            .collect(),
    )
    .unwrap();
    zone
}

fn responder(zone: Zone) -> Responder {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Responder::new(&ServerConfig::new(addr, addr), zone).unwrap()
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        wire.push(u8::try_from(label.len()).unwrap());
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// A query, built byte by byte so that anything can be put in it.
#[derive(Clone)]
struct Query {
    id: u16,
    flags: u16,
    counts: Option<[u16; 4]>,
    body: Vec<u8>,
    extra: Vec<u8>,
    extra_additional: u16,
    /// payload, version, DO, options
    opt: Option<(u16, u8, bool, Vec<u8>)>,
}

impl Query {
    fn new(name: &str, qtype: u16) -> Self {
        let mut body = wire_name(name);
        body.extend_from_slice(&qtype.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes());
        Self {
            id: 0x1234,
            flags: 0x0100,
            counts: None,
            body,
            extra: Vec::new(),
            extra_additional: 0,
            opt: None,
        }
    }

    fn class(mut self, class: u16) -> Self {
        let at = self.body.len() - 2;
        self.body[at..].copy_from_slice(&class.to_be_bytes());
        self
    }

    fn flags(mut self, flags: u16) -> Self {
        self.flags = flags;
        self
    }

    fn counts(mut self, counts: [u16; 4]) -> Self {
        self.counts = Some(counts);
        self
    }

    fn edns(mut self, payload: u16, version: u8, dnssec_ok: bool) -> Self {
        self.opt = Some((payload, version, dnssec_ok, Vec::new()));
        self
    }

    fn edns_options(mut self, options: &[u8]) -> Self {
        self.opt = Some((1232, 0, false, options.to_vec()));
        self
    }

    /// Raw bytes after the question, counted as additional records.
    fn additional(mut self, bytes: &[u8]) -> Self {
        self.extra.extend_from_slice(bytes);
        self.extra_additional += 1;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let additional = self.extra_additional + u16::from(self.opt.is_some());
        let counts = self.counts.unwrap_or([1, 0, 0, additional]);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(&self.flags.to_be_bytes());
        for count in counts {
            bytes.extend_from_slice(&count.to_be_bytes());
        }
        bytes.extend_from_slice(&self.body);
        bytes.extend_from_slice(&self.extra);
        if let Some((payload, version, dnssec_ok, options)) = &self.opt {
            bytes.push(0);
            bytes.extend_from_slice(&OPT.to_be_bytes());
            bytes.extend_from_slice(&payload.to_be_bytes());
            bytes.extend_from_slice(&[0, *version, if *dnssec_ok { 0x80 } else { 0 }, 0]);
            bytes.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
            bytes.extend_from_slice(options);
        }
        bytes
    }
}

/// Both paths' answers, checked to agree when the fast path answers.
fn ask(responder: &mut Responder, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let mut general = Vec::new();
    let answered = responder.answer_general(query, transport, &mut general);
    let mut fast = Vec::new();
    if responder.answer_fast(query, transport, &mut fast) {
        assert!(
            answered,
            "the fast path answered what the general path drops"
        );
        assert_eq!(
            fast, general,
            "fast and general paths differ on {query:02x?}"
        );
    }
    let mut combined = Vec::new();
    let combined_answered = responder.answer(query, transport, &mut combined);
    assert_eq!(combined_answered, answered);
    answered.then_some(general)
}

fn udp(query: &Query) -> Message {
    let mut responder = responder(zone());
    let bytes = ask(&mut responder, &query.bytes(), Transport::Udp).expect("a response");
    Message::from_vec(&bytes).expect("the response parses")
}

fn is_fast(query: &Query) -> bool {
    let mut responder = responder(zone());
    responder.answer_fast(&query.bytes(), Transport::Udp, &mut Vec::new())
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn types(records: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    records.iter().map(|record| record.record_type()).collect()
}

/// The SOA of a negative answer: in authority, its TTL the negative-caching one.
fn assert_negative(message: &Message, code: ResponseCode) {
    assert_eq!(message.metadata.response_code, code);
    assert!(message.metadata.authoritative);
    assert!(message.answers.is_empty());
    assert_eq!(types(&message.authorities), [RecordType::SOA]);
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_string(), "berth.internal.");
    assert_eq!(soa.ttl, 60);
    let RData::SOA(data) = &soa.data else {
        panic!("not an SOA")
    };
    assert_eq!(data.mname.to_string(), "ns1.berth.internal.");
    assert_eq!(data.rname.to_string(), "hostmaster.berth.internal.");
    assert_eq!(data.minimum, 60);
}

#[test]
fn a_and_aaaa_answer_with_the_addresses_through_the_fast_path() {
    let query = Query::new("web.local.berth.internal", A);
    let message = udp(&query);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert!(message.metadata.authoritative);
    assert!(message.metadata.recursion_desired);
    assert!(!message.metadata.recursion_available);
    assert_eq!(message.metadata.id, 0x1234);
    assert_eq!(addresses(&message), [v4(5)]);
    assert_eq!(message.answers[0].ttl, 60);
    assert!(is_fast(&query));

    let query = Query::new("web.local.berth.internal", AAAA);
    assert_eq!(addresses(&udp(&query)), [v6(5)]);
    assert!(is_fast(&query));

    let query = Query::new("two.local.berth.internal", A);
    assert_eq!(addresses(&udp(&query)), [v4(7), v4(8)]);
    // The answers' owners point at the question: 12 + question + 2 × (2 + 10 + 4).
    let bytes = ask(&mut responder(zone()), &query.bytes(), Transport::Udp).unwrap();
    assert_eq!(bytes.len(), 12 + query.body.len() + 2 * 16);
    assert_eq!(bytes[12 + query.body.len()..][..2], [0xC0, 0x0C]);
}

#[test]
fn names_match_case_insensitively_and_the_question_comes_back_as_asked() {
    let query = Query::new("WeB.LoCal.Berth.INTERNAL", A).flags(0);
    let message = udp(&query);
    assert_eq!(addresses(&message), [v4(5)]);
    assert!(!message.metadata.recursion_desired);
    assert_eq!(
        message.queries[0].name.to_string(),
        "WeB.LoCal.Berth.INTERNAL."
    );
    assert_eq!(
        message.answers[0].name.to_string(),
        "WeB.LoCal.Berth.INTERNAL."
    );
    assert!(is_fast(&query));
}

#[test]
fn a_name_without_addresses_of_the_type_is_nodata() {
    let message = udp(&Query::new("v6only.local.berth.internal", A));
    assert_negative(&message, ResponseCode::NoError);
    let message = udp(&Query::new("web.local.berth.internal", MX));
    assert_negative(&message, ResponseCode::NoError);
    assert!(!is_fast(&Query::new("v6only.local.berth.internal", A)));
}

#[test]
fn names_above_records_exist_and_unknown_names_do_not() {
    // local.berth.internal and a.b.berth.internal, b.berth.internal are empty non-terminals.
    for name in [
        "local.berth.internal",
        "a.b.berth.internal",
        "B.berth.internal",
    ] {
        assert_negative(&udp(&Query::new(name, A)), ResponseCode::NoError);
    }
    for name in [
        "nope.berth.internal",
        "x.web.local.berth.internal",
        "ns1.berth.internal",
        "c.b.berth.internal",
    ] {
        assert_negative(&udp(&Query::new(name, A)), ResponseCode::NXDomain);
    }
}

#[test]
fn a_removed_name_is_gone_from_the_next_answer() {
    let zone = zone();
    let mut responder = responder(zone.clone());
    let query = Query::new("web.local.berth.internal", A).bytes();
    let message = Message::from_vec(&ask(&mut responder, &query, Transport::Udp).unwrap()).unwrap();
    assert_eq!(addresses(&message), [v4(5)]);
    zone.remove("web.local.berth.internal");
    let message = Message::from_vec(&ask(&mut responder, &query, Transport::Udp).unwrap()).unwrap();
    assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
    zone.upsert("web.local.berth.internal", vec![v4(42)])
        .unwrap();
    let message = Message::from_vec(&ask(&mut responder, &query, Transport::Udp).unwrap()).unwrap();
    assert_eq!(addresses(&message), [v4(42)]);
    // The serial of negative answers follows the zone's.
    let nx = Query::new("nope.berth.internal", A).bytes();
    let message = Message::from_vec(&ask(&mut responder, &nx, Transport::Udp).unwrap()).unwrap();
    let RData::SOA(soa) = &message.authorities[0].data else {
        panic!("not an SOA")
    };
    assert_eq!(soa.serial, zone.serial());
}

#[test]
fn the_apex_has_soa_ns_and_its_own_addresses() {
    let message = udp(&Query::new(ORIGIN, SOA));
    assert_eq!(types(&message.answers), [RecordType::SOA]);
    assert!(message.metadata.authoritative);
    assert!(message.authorities.is_empty());
    let message = udp(&Query::new("Berth.Internal", NS));
    assert_eq!(types(&message.answers), [RecordType::NS]);
    assert_eq!(message.answers[0].name.to_string(), "Berth.Internal.");
    let RData::NS(ns) = &message.answers[0].data else {
        panic!("not NS")
    };
    assert_eq!(ns.0.to_string(), "ns1.berth.internal.");
    assert_eq!(addresses(&udp(&Query::new(ORIGIN, A))), [v4(1)]);
    assert_negative(&udp(&Query::new(ORIGIN, AAAA)), ResponseCode::NoError);
    let message = udp(&Query::new(ORIGIN, ANY));
    assert_eq!(
        types(&message.answers),
        [RecordType::SOA, RecordType::NS, RecordType::A]
    );
}

#[test]
fn any_answers_every_address() {
    let message = udp(&Query::new("web.local.berth.internal", ANY));
    assert_eq!(addresses(&message), [v4(5), v6(5)]);
    // Class ANY is answered like IN.
    let message = udp(&Query::new("web.local.berth.internal", A).class(255));
    assert_eq!(addresses(&message), [v4(5)]);
}

#[test]
fn names_outside_the_zone_and_other_classes_are_refused() {
    for query in [
        Query::new("example.com", A),
        Query::new(".", NS),
        Query::new("internal", SOA),
        Query::new("xberth.internal", A),
        Query::new("web.local.berth.internal", A).class(3),
        Query::new("web.local.berth.internal", A).class(254),
        Query::new(ORIGIN, AXFR),
    ] {
        let message = udp(&query);
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
        assert!(!message.metadata.authoritative);
        assert!(message.answers.is_empty() && message.authorities.is_empty());
        assert_eq!(message.queries.len(), 1);
    }
}

#[test]
fn edns_is_answered_with_our_payload_and_the_do_bit() {
    let query = Query::new("web.local.berth.internal", A).edns(4096, 0, true);
    let message = udp(&query);
    let edns = message.edns.as_ref().expect("an OPT record");
    assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
    assert_eq!(edns.version(), 0);
    assert!(edns.flags().dnssec_ok);
    assert!(edns.options().as_ref().is_empty());
    assert!(is_fast(&query));
    // Options (a cookie, an unknown one) are ignored, by the general path.
    let query = Query::new("web.local.berth.internal", A)
        .edns_options(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0, 0, 1, 9]);
    let message = udp(&query);
    assert_eq!(addresses(&message), [v4(5)]);
    assert!(message.edns.is_some());
    assert!(!is_fast(&query));
    // No OPT in, none out.
    assert!(udp(&Query::new("nope.berth.internal", A)).edns.is_none());
    assert!(
        udp(&Query::new("nope.berth.internal", A).edns(512, 0, false))
            .edns
            .is_some()
    );
}

#[test]
fn an_edns_version_above_0_is_badvers() {
    let message = udp(&Query::new("web.local.berth.internal", A).edns(1232, 1, false));
    // 16 is BADVERS with an OPT record (hickory names the value after TSIG's BADSIG).
    assert_eq!(u16::from(message.metadata.response_code), 16);
    assert_eq!(message.metadata.response_code.low(), 0);
    assert!(message.answers.is_empty());
    assert_eq!(message.edns.as_ref().unwrap().version(), 0);
    assert_eq!(message.queries.len(), 1);
}

#[test]
fn malformed_queries_are_formerr_and_responses_are_dropped() {
    let mut r = responder(zone());
    let formerr = |r: &mut Responder, query: &[u8]| {
        let bytes = ask(r, query, Transport::Udp).expect("a response");
        let message = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::FormErr,
            "{query:02x?}"
        );
        assert!(!message.metadata.authoritative);
        message
    };
    let good = Query::new("web.local.berth.internal", A);
    // No question; two questions.
    let message = formerr(&mut r, &good.clone().counts([0, 0, 0, 0]).bytes()[..12]);
    assert!(message.queries.is_empty());
    let mut two = good.bytes();
    two[5] = 2;
    two.extend_from_slice(&good.body);
    assert!(formerr(&mut r, &two).queries.is_empty());
    // Trailing bytes; a record without data in the answer section; two OPT records; OPT in the
    // answer section; a bad option length.
    let mut trailing = good.bytes();
    trailing.extend_from_slice(&[0, 0, 0]);
    assert_eq!(formerr(&mut r, &trailing).queries.len(), 1);
    formerr(&mut r, &good.clone().counts([1, 1, 0, 0]).bytes());
    let opt = [0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0];
    formerr(
        &mut r,
        &good.clone().edns(1232, 0, false).additional(&opt).bytes(),
    );
    let mut in_answer = good.clone().counts([1, 1, 0, 0]).bytes();
    in_answer.extend_from_slice(&opt);
    formerr(&mut r, &in_answer);
    formerr(
        &mut r,
        &good.clone().edns_options(&[0xff, 0, 0, 9, 1]).bytes(),
    );
    // A compression pointer in the question; a truncated question.
    let mut pointer = good.bytes()[..12].to_vec();
    pointer.extend_from_slice(&[3, b'w', b'e', b'b', 0xC0, 0x00, 0, 1, 0, 1]);
    assert!(formerr(&mut r, &pointer).queries.is_empty());
    let good_bytes = good.bytes();
    formerr(&mut r, &good_bytes[..good_bytes.len() - 2]);
    // Too short for a header, or a response: nothing.
    assert_eq!(ask(&mut r, &good_bytes[..11], Transport::Udp), None);
    assert_eq!(ask(&mut r, &[], Transport::Udp), None);
    assert_eq!(
        ask(&mut r, &good.clone().flags(0x8100).bytes(), Transport::Udp),
        None
    );
}

#[test]
fn other_opcodes_are_notimp_and_signed_queries_notauth() {
    for opcode in [1u16, 2, 4, 5, 7, 15] {
        let message = udp(&Query::new(ORIGIN, SOA).flags(opcode << 11));
        assert_eq!(message.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(
            u8::from(message.metadata.op_code),
            u8::try_from(opcode).unwrap()
        );
    }
    // A TSIG record (name "key", algorithm hmac-sha256, time, fudge, empty MAC, id, no error).
    let mut tsig = wire_name("key");
    tsig.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
    let mut rdata = wire_name("hmac-sha256");
    rdata.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, 44, 0, 0, 0x12, 0x34, 0, 0, 0, 0]);
    tsig.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    tsig.extend_from_slice(&rdata);
    let message = udp(&Query::new("web.local.berth.internal", A).additional(&tsig));
    assert_eq!(message.metadata.response_code, ResponseCode::NotAuth);
}

#[test]
fn answers_too_large_for_udp_are_truncated_and_whole_over_tcp() {
    let query = Query::new("many.local.berth.internal", A);
    let message = udp(&query);
    assert!(message.metadata.truncation);
    assert!(message.answers.is_empty());
    assert_eq!(message.queries.len(), 1);
    // 130 answers of 16 bytes do not fit in 1232 either: still truncated with EDNS.
    let message = udp(&query.clone().edns(4096, 0, false));
    assert!(message.metadata.truncation);
    let mut r = responder(zone());
    let bytes = ask(&mut r, &query.bytes(), Transport::Tcp).unwrap();
    let message = Message::from_vec(&bytes).unwrap();
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 130);
}

/// Queries of every kind the fast path might take, and many it must not.
fn variants() -> Vec<Vec<u8>> {
    let names = [
        "web.local.berth.internal",
        "WEB.local.BERTH.internal",
        "v6only.local.berth.internal",
        "two.local.berth.internal",
        "many.local.berth.internal",
        "deep.a.b.berth.internal",
        "local.berth.internal",
        "nope.local.berth.internal",
        "berth.internal",
        "ns1.berth.internal",
        "example.com",
        ".",
    ];
    let mut queries = Vec::new();
    for name in names {
        for qtype in [A, AAAA, ANY, MX, NS, SOA, 0, OPT] {
            for flags in [0x0000, 0x0100, 0x0110, 0x0520, 0x0300, 0x0180, 0x010f] {
                let query = Query::new(name, qtype).flags(flags);
                queries.push(query.bytes());
                for payload in [0, 511, 512, 1232, 4096] {
                    queries.push(query.clone().edns(payload, 0, false).bytes());
                    queries.push(query.clone().edns(payload, 0, true).bytes());
                }
                queries.push(query.clone().edns(1232, 1, false).bytes());
                queries.push(query.clone().class(3).bytes());
                queries.push(query.clone().class(255).bytes());
            }
        }
    }
    queries
}

#[test]
fn the_fast_path_answers_as_the_general_path_does() {
    let mut r = responder(zone());
    let mut fast = 0;
    for query in variants() {
        for transport in [Transport::Udp, Transport::Tcp] {
            ask(&mut r, &query, transport);
            fast += usize::from(r.answer_fast(&query, transport, &mut Vec::new()));
        }
    }
    // It did take the common queries.
    assert!(fast > 500, "the fast path answered only {fast}");
}

/// What proptest mutates: valid queries of many kinds.
fn seed() -> impl Strategy<Value = Vec<u8>> {
    let variants = variants();
    (0..variants.len()).prop_map(move |i| variants[i].clone())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// A header count, or a 16-bit length anywhere, set to something wild.
    Word(usize, u16),
    /// A compression pointer anywhere.
    Pointer(usize, u16),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (
            any::<usize>(),
            prop_oneof![Just(0u16), Just(1), Just(2), Just(0xffff), any::<u16>()]
        )
            .prop_map(|(at, word)| Mutation::Word(at, word)),
        (any::<usize>(), 0u16..0x4000).prop_map(|(at, to)| Mutation::Pointer(at, to)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Splice(from, len, to)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Flip(at, bit) => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte ^= 1 << bit;
                }
            }
            Mutation::Set(at, value) => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte = *value;
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, insert) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, insert.iter().copied());
            }
            Mutation::Word(at, word) | Mutation::Pointer(at, word) => {
                // Counts live at 4, 6, 8, 10; other words anywhere.
                let at = if at % 2 == 0 {
                    4 + 2 * (at / 2 % 4)
                } else {
                    at % len
                };
                let word = if matches!(mutation, Mutation::Pointer(..)) {
                    0xC000 | word
                } else {
                    *word
                };
                if at + 2 <= bytes.len() {
                    bytes[at..at + 2].copy_from_slice(&word.to_be_bytes());
                }
            }
            Mutation::Splice(from, count, to) => {
                let from = from % len;
                let end = (from + count % 64).min(bytes.len());
                let piece = bytes.get(from..end).unwrap_or_default().to_vec();
                let to = to % (bytes.len() + 1);
                bytes.splice(to..to, piece);
            }
        }
    }
    bytes
}

/// The request path on `query` by both paths: no panic, quick, within the transport's limit, the
/// fast path agreeing with the general one.
fn check(r: &mut Responder, query: &[u8]) {
    for transport in [Transport::Udp, Transport::Tcp] {
        let started = Instant::now();
        let response = ask(r, query, transport);
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "took {:?}",
            started.elapsed()
        );
        let Some(response) = response else {
            assert!(
                query.len() < 12 || query[2] & 0x80 != 0,
                "dropped {query:02x?}"
            );
            continue;
        };
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => usize::from(MAX_UDP_PAYLOAD),
        };
        assert!(response.len() <= limit);
        if transport == Transport::Udp && !query_has_opt(query) {
            assert!(
                response.len() <= 512,
                "{} bytes without EDNS",
                response.len()
            );
        }
        // Our responses always parse, and keep the ID.
        let message = Message::from_vec(&response).expect("our response parses");
        assert_eq!(
            message.metadata.id,
            u16::from_be_bytes([query[0], query[1]])
        );
    }
}

/// Whether the general path found an OPT record in the query (then the limit may exceed 512).
fn query_has_opt(query: &[u8]) -> bool {
    Message::from_vec(query).is_ok_and(|message| message.edns.is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_the_request_path(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&mut responder(zone()), &bytes);
    }

    #[test]
    fn mutated_queries_never_break_the_request_path(
        query in seed(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        check(&mut responder(zone()), &mutate(query, &mutations));
    }
}

/// What [`Responder::answer`] answers is counted by transport and code, the fast path's answers and
/// BADVERS (an extended code, in the OPT record) included; what it drops is not counted.
#[test]
fn answers_are_counted_by_transport_and_response_code() {
    let mut responder = responder(zone());
    let counts = responder.counts();
    let mut out = Vec::new();
    let positive = Query::new("web.local.berth.internal", 1).bytes();
    assert!(
        responder.answer_fast(&positive, Transport::Udp, &mut out),
        "the fast path's case"
    );
    assert!(responder.answer(&positive, Transport::Udp, &mut out));
    assert!(responder.answer(&positive, Transport::Tcp, &mut out));
    let missing = Query::new("nothing.local.berth.internal", 1).bytes();
    assert!(responder.answer(&missing, Transport::Udp, &mut out));
    let badvers = Query::new("web.local.berth.internal", 1)
        .edns(1232, 1, false)
        .bytes();
    assert!(responder.answer(&badvers, Transport::Udp, &mut out));
    let outside = Query::new("example.com", 1).bytes();
    assert!(
        responder.clone().answer(&outside, Transport::Tcp, &mut out),
        "a clone counts too"
    );
    assert!(
        !responder.answer(&positive[..5], Transport::Udp, &mut out),
        "too short: dropped"
    );
    let seen: Vec<(&str, &str, u64)> = counts
        .snapshot()
        .iter()
        .map(|c| (c.transport.as_str(), c.rcode, c.count))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("udp", "NOERROR", 1),
            ("udp", "NXDOMAIN", 1),
            ("udp", "BADVERS", 1),
            ("tcp", "NOERROR", 1),
            ("tcp", "REFUSED", 1),
        ]
    );
}
