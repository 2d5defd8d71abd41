//! The server over real sockets, asked by real resolvers: hickory-resolver (UDP only, TCP only)
//! and `dig` (Debian's dnsutils, installed by scripts/setup), and battered with garbage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use berth_dns::{Running, ServerConfig, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS, Zone, serve};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const ORIGIN: &str = "berth.internal";
const WEB: &str = "web.local.berth.internal.";

fn web_v4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))
}

fn web_v6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5))
}

/// A server on free loopback ports, stopped (and waited for) on drop of the token's owner.
struct Server {
    zone: Zone,
    running: Option<Running>,
    shutdown: CancellationToken,
}

impl Server {
    async fn start() -> Self {
        let zone = Zone::new(ORIGIN);
        zone.upsert(WEB, vec![web_v4(), web_v6()]).unwrap();
        zone.upsert(
            "v6only.local.berth.internal",
            vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        )
        .unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let shutdown = CancellationToken::new();
        let running = serve(ServerConfig::new(any, any), zone.clone(), shutdown.clone())
            .await
            .expect("the server starts");
        Self {
            zone,
            running: Some(running),
            shutdown,
        }
    }

    fn udp(&self) -> SocketAddr {
        self.running.as_ref().unwrap().udp
    }

    fn tcp(&self) -> SocketAddr {
        self.running.as_ref().unwrap().tcp
    }

    /// A resolver that asks only this server, over one transport, without a cache (so a change
    /// is seen by the next lookup) and without retries elsewhere.
    fn resolver(&self, tcp: bool) -> TokioResolver {
        let (mut connection, port) = if tcp {
            (ConnectionConfig::tcp(), self.tcp().port())
        } else {
            (ConnectionConfig::udp(), self.udp().port())
        };
        connection.port = port;
        let server = NameServerConfig::new(self.udp().ip(), true, vec![connection]);
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.attempts = 1;
        options.timeout = Duration::from_secs(2);
        options.recursion_desired = false;
        options.try_tcp_on_error = false;
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .expect("a resolver")
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(5), running.wait())
                .await
                .expect("the server stops within 5 s");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The records of a lookup, or the response code it failed with.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<RData>, ResponseCode> {
    match resolver.lookup(name, rtype).await {
        Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => {
            // A negative answer carries the zone's SOA.
            assert!(
                no_records.soa.is_some(),
                "{name}: no SOA in a negative answer"
            );
            Err(no_records.response_code)
        }
        Err(NetError::Dns(DnsError::ResponseCode(code))) => Err(code),
        Err(error) => panic!("{name} {rtype}: {error}"),
    }
}

fn addresses(records: &[RData]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|data| match data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

async fn resolver_sees_the_zone(server: &Server, tcp: bool) {
    let resolver = server.resolver(tcp);
    let r = &resolver;
    assert_eq!(
        addresses(&lookup(r, WEB, RecordType::A).await.unwrap()),
        [web_v4()]
    );
    assert_eq!(
        addresses(
            &lookup(r, "WEB.Local.BERTH.internal.", RecordType::AAAA)
                .await
                .unwrap()
        ),
        [web_v6()]
    );
    // NODATA and NXDOMAIN, both with the SOA.
    assert_eq!(
        lookup(r, "v6only.local.berth.internal.", RecordType::A).await,
        Err(ResponseCode::NoError)
    );
    assert_eq!(
        lookup(r, "local.berth.internal.", RecordType::A).await,
        Err(ResponseCode::NoError)
    );
    assert_eq!(
        lookup(r, "nope.local.berth.internal.", RecordType::A).await,
        Err(ResponseCode::NXDomain)
    );
    // The apex.
    let soa = lookup(r, "berth.internal.", RecordType::SOA).await.unwrap();
    let [RData::SOA(soa)] = soa.as_slice() else {
        panic!("not one SOA: {soa:?}")
    };
    assert_eq!(soa.mname.to_string(), "ns1.berth.internal.");
    assert_eq!(soa.serial, server.zone.serial());
    let ns = lookup(r, "berth.internal.", RecordType::NS).await.unwrap();
    assert!(matches!(ns.as_slice(), [RData::NS(ns)] if ns.0.to_string() == "ns1.berth.internal."));
    // Outside the zone.
    assert_eq!(
        lookup(r, "example.com.", RecordType::A).await,
        Err(ResponseCode::Refused)
    );
    // A change is seen by the next query.
    let new = IpAddr::V4(Ipv4Addr::new(10, 9, 9, if tcp { 2 } else { 1 }));
    let name = if tcp {
        "new-tcp.local.berth.internal."
    } else {
        "new-udp.local.berth.internal."
    };
    assert_eq!(
        lookup(r, name, RecordType::A).await,
        Err(ResponseCode::NXDomain)
    );
    server.zone.upsert(name, vec![new]).unwrap();
    assert_eq!(
        addresses(&lookup(r, name, RecordType::A).await.unwrap()),
        [new]
    );
    server.zone.remove(name);
    assert_eq!(
        lookup(r, name, RecordType::A).await,
        Err(ResponseCode::NXDomain)
    );
}

#[tokio::test]
async fn hickory_resolver_over_udp_and_tcp() {
    let server = Server::start().await;
    resolver_sees_the_zone(&server, false).await;
    resolver_sees_the_zone(&server, true).await;
    server.stop().await;
}

/// `dig @127.0.0.1 -p PORT args…`: its output, which must say it got an answer.
fn dig(port: u16, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("dig runs (Debian's dnsutils; scripts/setup installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("Got answer"), "dig {args:?}: {text}");
    text
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("?")
}

fn flags(output: &str) -> Vec<&str> {
    output
        .split("flags: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(|flags| flags.split_whitespace().collect())
        .unwrap_or_default()
}

/// The records of a section (`ANSWER`, `AUTHORITY`) as `name ttl class type data`.
fn section(output: &str, name: &str) -> Vec<String> {
    let header = format!(";; {name} SECTION:");
    output
        .split(&header)
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|line| !line.trim().is_empty())
                .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        })
        .unwrap_or_default()
}

fn dig_sees_the_zone(server: &Server, tcp: bool) {
    let (port, transport) = if tcp {
        (server.tcp().port(), "+tcp")
    } else {
        (server.udp().port(), "+notcp")
    };
    let out = dig(port, &[transport, "+norec", WEB, "A"]);
    assert_eq!(status(&out), "NOERROR");
    assert_eq!(flags(&out), ["qr", "aa"]);
    assert_eq!(section(&out, "ANSWER"), [format!("{WEB} 60 IN A 10.0.0.5")]);
    assert!(out.contains(if tcp { "(TCP)" } else { "(UDP)" }), "{out}");

    let out = dig(port, &[transport, "Web.LOCAL.berth.internal", "AAAA"]);
    assert_eq!(
        section(&out, "ANSWER"),
        ["Web.LOCAL.berth.internal. 60 IN AAAA fd00::5"]
    );
    assert_eq!(flags(&out), ["qr", "aa", "rd"]);

    let out = dig(port, &[transport, "nope.local.berth.internal", "A"]);
    assert_eq!(status(&out), "NXDOMAIN");
    let authority = section(&out, "AUTHORITY");
    assert_eq!(authority.len(), 1);
    assert!(
        authority[0].starts_with(
            "berth.internal. 60 IN SOA ns1.berth.internal. hostmaster.berth.internal."
        ),
        "{authority:?}"
    );

    let out = dig(port, &[transport, "v6only.local.berth.internal", "A"]);
    assert_eq!(status(&out), "NOERROR");
    assert!(section(&out, "ANSWER").is_empty());
    assert_eq!(section(&out, "AUTHORITY").len(), 1);

    let out = dig(port, &[transport, "berth.internal", "SOA"]);
    let answer = section(&out, "ANSWER");
    assert_eq!(answer.len(), 1);
    assert!(
        answer[0].starts_with(&format!(
            "berth.internal. 60 IN SOA ns1.berth.internal. hostmaster.berth.internal. {} 3600 600 604800 60",
            server.zone.serial()
        )),
        "{answer:?}"
    );
    let out = dig(port, &[transport, "berth.internal", "NS"]);
    assert_eq!(
        section(&out, "ANSWER"),
        ["berth.internal. 60 IN NS ns1.berth.internal."]
    );

    let out = dig(port, &[transport, "example.com", "A"]);
    assert_eq!(status(&out), "REFUSED");
    assert!(!flags(&out).contains(&"aa"));

    // EDNS: dig sends OPT (with a cookie) by default; version 1 is BADVERS; +noedns gets none.
    let out = dig(port, &[transport, WEB, "A"]);
    assert!(out.contains("EDNS: version: 0, flags:; udp: 1232"), "{out}");
    let out = dig(port, &[transport, "+dnssec", WEB, "A"]);
    assert!(
        out.contains("EDNS: version: 0, flags: do; udp: 1232"),
        "{out}"
    );
    let out = dig(
        port,
        &[transport, "+edns=1", "+noednsnegotiation", WEB, "A"],
    );
    assert_eq!(status(&out), "BADVERS");
    let out = dig(port, &[transport, "+noedns", WEB, "A"]);
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
    assert_eq!(section(&out, "ANSWER").len(), 1);

    // A change is seen by the next query.
    let name = if tcp {
        "dig-tcp.local.berth.internal"
    } else {
        "dig-udp.local.berth.internal"
    };
    server
        .zone
        .upsert(name, vec![IpAddr::V4(Ipv4Addr::new(10, 7, 7, 7))])
        .unwrap();
    let out = dig(port, &[transport, name, "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        [format!("{name}. 60 IN A 10.7.7.7")]
    );
    server.zone.remove(name);
    assert_eq!(status(&dig(port, &[transport, name, "A"])), "NXDOMAIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_and_tcp() {
    let server = Server::start().await;
    // One port for both, as port 53 is, so `dig -p` reaches either.
    assert_eq!(server.udp().port(), server.tcp().port());
    dig_sees_the_zone(&server, false);
    dig_sees_the_zone(&server, true);
    // An answer too large for UDP is truncated; dig retries over TCP on its own.
    let many: Vec<IpAddr> = (1..=120)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
        .collect();
    server
        .zone
        .upsert("many.local.berth.internal", many)
        .unwrap();
    let out = dig(
        server.udp().port(),
        &["+ignore", "many.local.berth.internal", "A"],
    );
    assert!(flags(&out).contains(&"tc"), "{out}");
    let out = dig(server.udp().port(), &["many.local.berth.internal", "A"]);
    assert_eq!(section(&out, "ANSWER").len(), 120);
    server.stop().await;
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut bytes = vec![(id >> 8) as u8, id as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        bytes.push(u8::try_from(label.len()).unwrap());
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    bytes
}

async fn tcp_ask(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream
        .write_all(&u16::try_from(message.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    stream.write_all(message).await.unwrap();
    tcp_read(stream).await.expect("a response")
}

async fn tcp_read(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut response).await.ok()?;
    Some(response)
}

/// Rcode and answer count of a response to [`query`].
fn rcode_answers(response: &[u8]) -> (u8, u16) {
    (
        response[3] & 0x0f,
        u16::from_be_bytes([response[6], response[7]]),
    )
}

#[tokio::test]
async fn tcp_carries_several_queries_and_connections_are_bounded() {
    let server = Server::start().await;
    // Pipelined: three queries written at once, three answers in order.
    let mut stream = TcpStream::connect(server.tcp()).await.unwrap();
    let mut batch = Vec::new();
    for (id, name) in [(1u16, WEB), (2, "nope.berth.internal"), (3, WEB)] {
        let message = query(id, name);
        batch.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
        batch.extend_from_slice(&message);
    }
    stream.write_all(&batch).await.unwrap();
    for (id, expected) in [(1u16, (0, 1)), (2, (3, 0)), (3, (0, 1))] {
        let response = tcp_read(&mut stream).await.unwrap();
        assert_eq!(u16::from_be_bytes([response[0], response[1]]), id);
        assert_eq!(rcode_answers(&response), expected);
    }

    // Up to the bound every connection is served; past it, a new one is closed at once.
    let mut open = vec![stream];
    while open.len() < TCP_MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(server.tcp()).await.unwrap();
        let response = tcp_ask(&mut stream, &query(7, WEB)).await;
        assert_eq!(rcode_answers(&response), (0, 1));
        open.push(stream);
    }
    let mut extra = TcpStream::connect(server.tcp()).await.unwrap();
    let mut byte = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte))
        .await
        .expect("closed at once, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // One closes; a new connection is served again once the server has seen it go.
    drop(open.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut stream = TcpStream::connect(server.tcp()).await.unwrap();
        let message = query(8, WEB);
        stream
            .write_all(&u16::try_from(message.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&message).await.unwrap();
        if tcp_read(&mut stream).await.is_some() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
    drop(open);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_tcp_connections_are_closed() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(server.tcp()).await.unwrap();
    assert_eq!(
        rcode_answers(&tcp_ask(&mut stream, &query(1, WEB)).await),
        (0, 1)
    );
    let idle = tokio::time::Instant::now();
    // Half a length prefix, then nothing: the connection is closed after the idle timeout.
    stream.write_all(&[0]).await.unwrap();
    let mut byte = [0; 1];
    let read = stream.read(&mut byte).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        idle.elapsed() >= TCP_IDLE_TIMEOUT,
        "closed after {:?}",
        idle.elapsed()
    );
    // Not `stop`: its timeout would run on the paused clock.
    let mut server = server;
    server.shutdown.cancel();
    server.running.take().unwrap().wait().await;
}

/// Deterministic garbage: a small xorshift generator.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % max;
        let mut bytes: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        // Often a plausible header, so the parser goes deeper than the first bytes.
        if bytes.len() >= 12 && self.next().is_multiple_of(2) {
            bytes[2] &= 0x7f;
            bytes[4] = 0;
            bytes[5] = (self.next() % 3) as u8;
        }
        bytes
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_storm_leaves_the_server_answering() {
    let server = Server::start().await;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);

    // UDP: thousands of datagrams of garbage and of mangled queries.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = query(9, WEB);
    for i in 0..20_000 {
        let datagram = if i % 3 == 0 {
            let mut mangled = good.clone();
            let at = (noise.next() as usize) % mangled.len();
            mangled[at] = noise.next() as u8;
            mangled.truncate(12 + (noise.next() as usize) % (mangled.len() - 11));
            mangled
        } else {
            noise.bytes(700)
        };
        let _ = socket.send_to(&datagram, server.udp());
    }

    // TCP: connections sending garbage frames, wild lengths, and closing mid-frame.
    let mut tasks = Vec::new();
    for seed in 1..=40u64 {
        let addr = server.tcp();
        let mut noise = Noise(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let chunks: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let mut chunk = noise.bytes(300);
                if i % 2 == 0 {
                    let len = u16::try_from(chunk.len()).unwrap();
                    chunk.splice(0..0, len.to_be_bytes());
                }
                chunk
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return;
            };
            for chunk in chunks {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Drain whatever came back for a moment, then go away mid-frame.
            let mut sink = vec![0; 65536];
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // Still answering, over both transports.
    for tcp in [false, true] {
        let resolver = server.resolver(tcp);
        assert_eq!(
            addresses(&lookup(&resolver, WEB, RecordType::A).await.unwrap()),
            [web_v4()]
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stopped_server_frees_its_ports_and_errors_name_the_address() {
    let server = Server::start().await;
    let (udp, tcp) = (server.udp(), server.tcp());
    server.stop().await;
    // Both ports can be bound again at once (a restarted server serves on the same ports).
    let shutdown = CancellationToken::new();
    let again = serve(
        ServerConfig::new(udp, tcp),
        Zone::new(ORIGIN),
        shutdown.clone(),
    )
    .await
    .expect("the ports are free again");
    assert_eq!((again.udp, again.tcp), (udp, tcp));
    // Now they are taken.
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let error = serve(
        ServerConfig::new(udp, any),
        Zone::new(ORIGIN),
        shutdown.clone(),
    )
    .await
    .expect_err("the UDP port is taken");
    assert!(error.to_string().contains(&udp.to_string()), "{error}");
    let error = serve(
        ServerConfig::new(any, tcp),
        Zone::new(ORIGIN),
        shutdown.clone(),
    )
    .await
    .expect_err("the TCP port is taken");
    assert!(error.to_string().contains(&tcp.to_string()), "{error}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), again.wait())
        .await
        .expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_udp_workers_share_the_port() {
    let zone = Zone::new(ORIGIN);
    zone.upsert(WEB, vec![web_v4()]).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = ServerConfig::new(any, any);
    config.workers = 3;
    let shutdown = CancellationToken::new();
    let running = serve(config, zone, shutdown.clone()).await.unwrap();
    // Queries from many source ports, so SO_REUSEPORT spreads them over the sockets: all answered.
    for i in 0..60u16 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket.send_to(&query(i, WEB), running.udp).unwrap();
        let mut response = [0; 512];
        let (len, _) = socket.recv_from(&mut response).expect("an answer");
        assert_eq!(u16::from_be_bytes([response[0], response[1]]), i);
        assert_eq!(rcode_answers(&response[..len]), (0, 1));
    }
    let zero = ServerConfig {
        workers: 0,
        ..ServerConfig::new(any, any)
    };
    assert!(
        serve(zero, Zone::new(ORIGIN), shutdown.clone())
            .await
            .is_err()
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("stops");
}
