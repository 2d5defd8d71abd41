//! The request path on arbitrary bytes, over UDP and TCP: it must not panic, must answer within
//! the transport's size limit, and whenever the fast path answers, the general (hickory) path must
//! answer the very same bytes.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use berth_dns::{MAX_UDP_PAYLOAD, Responder, ServerConfig, Transport, Zone};
use libfuzzer_sys::fuzz_target;

/// A zone with the shapes that matter: names with A, AAAA, both, many; an empty non-terminal; the
/// apex with an address.
fn responder() -> Responder {
    static RESPONDER: OnceLock<Responder> = OnceLock::new();
    RESPONDER
        .get_or_init(|| {
            let zone = Zone::new("berth.internal");
            let v4 = |last| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
            let records = [
                ("web.local.berth.internal", vec![v4(5), IpAddr::V6(Ipv6Addr::LOCALHOST)]),
                ("v6.local.berth.internal", vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
                ("two.local.berth.internal", vec![v4(7), v4(8)]),
                ("deep.a.b.berth.internal", vec![v4(9)]),
                ("berth.internal", vec![v4(1)]),
                ("many.local.berth.internal", (1..=130).map(v4).collect()),
            ];
            for (name, addresses) in records {
                zone.upsert(name, addresses).expect("inside the zone");
            }
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            Responder::new(&ServerConfig::new(any, any), zone).expect("a valid origin")
        })
        .clone()
}

fuzz_target!(|query: &[u8]| {
    let mut responder = responder();
    for (transport, limit) in [
        (Transport::Udp, usize::from(MAX_UDP_PAYLOAD)),
        (Transport::Tcp, usize::from(u16::MAX)),
    ] {
        let mut general = Vec::new();
        let answered = responder.answer_general(query, transport, &mut general);
        if answered {
            assert!(general.len() <= limit);
            assert_eq!(general[..2], query[..2], "the ID is copied");
        } else {
            assert!(query.len() < 12 || query[2] & 0x80 != 0, "dropped a query");
        }
        let mut fast = Vec::new();
        if responder.answer_fast(query, transport, &mut fast) {
            assert_eq!(fast, general, "the fast path answered differently");
        }
    }
});
