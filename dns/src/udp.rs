//! DNS over UDP: dedicated threads with blocking sockets, queries and responses in batches.
//!
//! Why not tokio: at 100k queries/s a query's budget is 10 µs, and most of it goes to system calls.
//! A blocking thread skips the reactor's readiness round trip (epoll, then recv, then EAGAIN), and
//! `recvmmsg(MSG_WAITFORONE)` takes every query already queued in one call (it blocks for the
//! first only), and one `sendmmsg` sends their responses. Under load batches grow and calls per
//! query fall; when idle, a query is answered the moment it arrives.
//!
//! A thread checks the shutdown token between batches; the socket's receive timeout ([`POLL`])
//! bounds how long an idle thread takes to notice.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use nix::errno::Errno as NixErrno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::io::Errno;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::responder::{Responder, Transport};

/// How long an idle worker blocks before it looks at the shutdown token again.
const POLL: Duration = Duration::from_millis(100);

/// Queries taken (and responses sent) per system call at most.
const BATCH: usize = 64;

/// The largest query read; longer datagrams are dropped. Queries are tens of bytes, and a resolver
/// sends no more than its advertised payload size, commonly at most 4096.
const QUERY_BUFFER: usize = 4096;

/// Binds `workers` sockets to `addr`, with `SO_REUSEPORT` when more than one: the first one picks
/// the port if `addr` has port 0, the others join it.
pub(crate) fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    let reuse_port = workers > 1;
    let first = socket(addr, reuse_port)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(socket(bound, reuse_port)?);
    }
    Ok(sockets)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Room for bursts; the kernel caps these at net.core.{r,w}mem_max, which is fine too.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket.into())
}

/// One worker: answers queries on `socket` until `shutdown`.
pub(crate) fn run(socket: UdpSocket, mut responder: Responder, shutdown: CancellationToken) {
    let fd = socket.as_raw_fd();
    let mut queries = vec![[0u8; QUERY_BUFFER]; BATCH];
    let mut responses: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut receive_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Per received query: its length and sender; per response: its slot and destination.
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut to_send: Vec<(usize, SocketAddr)> = Vec::with_capacity(BATCH);

    while !shutdown.is_cancelled() {
        received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = queries
                .iter_mut()
                .map(|buffer| [IoSliceMut::new(buffer)])
                .collect();
            let results = recvmmsg(
                fd,
                &mut receive_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            );
            match results {
                Ok(results) => received.extend(results.map(|message| {
                    if message.flags.contains(MsgFlags::MSG_TRUNC) {
                        (0, None)
                    } else {
                        (message.bytes, message.address)
                    }
                })),
                Err(NixErrno::EAGAIN | NixErrno::EINTR) => continue,
                Err(error) => {
                    // E.g. ECONNREFUSED left by an ICMP error for an earlier response: nothing to
                    // do about it but go on.
                    debug!(%error, "DNS UDP receive failed");
                    continue;
                }
            }
        }

        to_send.clear();
        for (slot, &(len, sender)) in received.iter().enumerate() {
            let Some(sender) = sender.as_ref().and_then(socket_addr) else {
                continue;
            };
            let Some(query) = queries[slot].get(..len) else {
                continue;
            };
            if responder.answer(query, Transport::Udp, &mut responses[slot]) {
                to_send.push((slot, sender));
            }
        }
        send_all(&socket, &responses, &to_send);
    }
}

/// Sends the responses `to_send` names, in as few `sendmmsg` calls as the kernel allows.
///
/// rustix's `sendmmsg`, not nix's: nix reports how many went out only through an iterator that
/// reads address storage a send never initialised. A message the kernel refuses (its destination
/// unreachable, say) is skipped, and the rest still go.
fn send_all(socket: &UdpSocket, responses: &[Vec<u8>], to_send: &[(usize, SocketAddr)]) {
    let addresses: Vec<SocketAddrAny> = to_send.iter().map(|&(_, to)| to.into()).collect();
    let slices: Vec<[IoSlice<'_>; 1]> = to_send
        .iter()
        .map(|&(slot, _)| [IoSlice::new(&responses[slot])])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = to_send
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = addresses
        .iter()
        .zip(&slices)
        .zip(&mut controls)
        .map(|((to, slice), control)| MMsgHdr::new_with_addr(to, slice, control))
        .collect();
    let mut next = 0;
    while next < messages.len() {
        match sendmmsg(socket, &mut messages[next..], SendFlags::empty()) {
            Ok(sent) => next += sent.max(1),
            Err(Errno::INTR) => {}
            Err(error) => {
                debug!(%error, "DNS UDP send failed");
                next += 1;
            }
        }
    }
}

/// The sender of a received datagram as a std address.
fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}
