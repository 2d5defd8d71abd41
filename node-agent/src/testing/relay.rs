//! A TCP relay in front of a server, for tests that cut a node off the way a dead machine is cut off.
//!
//! Until [`Relay::go_silent`] it copies bytes both ways and passes each end's close on to the other.
//! After it, nothing passes either way and nothing is closed: every connection it relayed is kept open
//! and silent on both sides (no FIN, no RST reaches the server, whatever the client does), and new
//! connections wait in the listen backlog, never answered. That is what a server sees of a machine
//! whose power went: the connection is there, and nothing more comes on it (until the server's own
//! keepalive gives up on it). Dropping the relay closes everything it holds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A relay from a loopback port of its own to `upstream`.
pub struct Relay {
    addr: SocketAddr,
    silent: CancellationToken,
    stop: CancellationToken,
    /// What a silenced relay keeps open: the connections' both ends, and the listener.
    held: Arc<Held>,
}

#[derive(Default)]
struct Held {
    streams: Mutex<Vec<TcpStream>>,
    listener: Mutex<Option<TcpListener>>,
}

impl Held {
    fn streams(&self, streams: impl IntoIterator<Item = TcpStream>) {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(streams);
    }

    fn listener(&self, listener: TcpListener) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }
}

impl Relay {
    /// Listens on a free port of `upstream`'s IP address (a loopback one, for tests) and relays
    /// every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(SocketAddr::new(upstream.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        let relay = Relay {
            addr,
            silent: CancellationToken::new(),
            stop: CancellationToken::new(),
            held: Arc::default(),
        };
        tokio::spawn(accept(
            listener,
            upstream,
            relay.silent.clone(),
            relay.stop.clone(),
            Arc::clone(&relay.held),
        ));
        Ok(relay)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing passes, and every connection stays open and silent (see the module doc).
    pub fn go_silent(&self) {
        self.silent.cancel();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    silent: CancellationToken,
    stop: CancellationToken,
    held: Arc<Held>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = silent.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // A failed accept (out of descriptors) is the client's failed connect; keep serving.
        if let Ok((client, _)) = accepted {
            tokio::spawn(pipe(
                client,
                upstream,
                silent.clone(),
                stop.clone(),
                Arc::clone(&held),
            ));
        }
    }
    // Silent: bound, never accepting again, until the relay is dropped.
    held.listener(listener);
    stop.cancelled().await;
}

/// Relays one connection until either end closes it (the close passed on), the relay is silenced
/// (both ends kept as they are) or dropped (both closed).
async fn pipe(
    mut client: TcpStream,
    upstream: SocketAddr,
    silent: CancellationToken,
    stop: CancellationToken,
    held: Arc<Held>,
) {
    let mut server = tokio::select! {
        biased;
        () = stop.cancelled() => return,
        () = silent.cancelled() => {
            held.streams([client]);
            return;
        }
        connected = TcpStream::connect(upstream) => match connected {
            Ok(server) => server,
            // The client sees its connection closed, as if the server had refused it.
            Err(_) => return,
        },
    };
    // Small writes (reports, heartbeats) must not wait for a delayed ACK here either.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let silenced = tokio::select! {
        biased;
        () = stop.cancelled() => false,
        () = silent.cancelled() => true,
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
    };
    if silenced {
        held.streams([client, server]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// An echo server that notes when a connection's client end closed.
    async fn echo() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed, closes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = closed.send(());
                });
            }
        });
        (addr, closes)
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.unwrap();
        let mut buf = vec![0u8; text.len()];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn relays_both_ways_and_passes_a_close_on() {
        let (server, mut closes) = echo().await;
        let relay = Relay::start(server).await.unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), closes.recv())
            .await
            .expect("the server sees the close")
            .unwrap();
    }

    #[tokio::test]
    async fn a_silent_relay_passes_nothing_and_closes_nothing() {
        let (server, mut closes) = echo().await;
        let relay = Relay::start(server).await.unwrap();
        let mut client = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut client, b"one").await, b"one");
        relay.go_silent();
        // The silence applies at once: nothing comes back, though the server echoes what it gets.
        client.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
        assert!(read.is_err(), "nothing may pass: {read:?}");
        // The client going away is not passed on: the server's end stays open.
        drop(client);
        let closed = tokio::time::timeout(Duration::from_millis(300), closes.recv()).await;
        assert!(closed.is_err(), "the server must not see a close");
        // A new connection is never answered.
        let connect = TcpStream::connect(relay.addr()).await;
        if let Ok(mut late) = connect {
            late.write_all(b"three").await.unwrap();
            let read = tokio::time::timeout(Duration::from_millis(300), late.read(&mut buf)).await;
            assert!(
                read.is_err(),
                "a late connection must get nothing: {read:?}"
            );
        }
        // Dropping the relay closes what it held.
        drop(relay);
        tokio::time::timeout(Duration::from_secs(10), closes.recv())
            .await
            .expect("the held connection is closed with the relay")
            .unwrap();
    }
}
