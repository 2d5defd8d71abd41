//! DNS over TCP: hickory's framing (a 2-byte length before each message) on tokio, answered by
//! the same [`Responder`] as UDP.
//!
//! A connection may carry any number of queries, answered in order; it is closed after
//! [`TCP_IDLE_TIMEOUT`] without a complete query (which also bounds a slow or stuck reader, since
//! writes happen between reads), on a framing error, when the peer closes, or on shutdown. At most
//! [`TCP_MAX_CONNECTIONS`] are open at once: past that, a new connection is closed at once, so a
//! client learns to retry instead of waiting in the accept queue.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use hickory_proto::op::SerialMessage;
use hickory_server::net::DnsStreamHandle as _;
use hickory_server::net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_server::net::tcp::TcpStream as FramedStream;
use hickory_server::server::TimeoutStream;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::responder::{Responder, Transport};

/// How long a TCP connection may stay without a complete query: Knot's default.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TCP connections may be open at once.
pub const TCP_MAX_CONNECTIONS: usize = 256;

/// Listens at `addr`, which a restarted server may bind again at once.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server binds again at once, even with connections of the last one in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until `shutdown`, each served on a task of `tasks`.
pub(crate) async fn accept(
    listener: TcpListener,
    responder: Responder,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(TCP_MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or memory, or the peer gave up already: wait a moment
                // rather than spin on an error that repeats.
                debug!(%error, "DNS TCP accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "DNS TCP connection refused: {TCP_MAX_CONNECTIONS} already open");
            continue;
        };
        tasks.spawn(serve_connection(
            stream,
            peer,
            responder.clone(),
            shutdown.clone(),
            permit,
        ));
    }
}

/// Answers the queries of one connection, in order, until it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut responder: Responder,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    // Each response is one write; Nagle would hold a second one for the peer's delayed ACK.
    let _ = stream.set_nodelay(true);
    let (messages, mut replies) = FramedStream::from_stream(AsyncIoTokioAsStd(stream), peer);
    let mut messages = TimeoutStream::new(messages, TCP_IDLE_TIMEOUT);
    let mut response = Vec::new();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                debug!(%peer, %error, "DNS TCP connection closed");
                break;
            }
            None => break,
        };
        if responder.answer(message.bytes(), Transport::Tcp, &mut response) {
            // Queued here, written by the next poll of `messages`, before it reads again.
            let reply = SerialMessage::new(std::mem::take(&mut response), peer);
            if replies.send(reply).is_err() {
                break;
            }
        }
    }
}
