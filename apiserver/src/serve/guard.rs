//! The HTTP/1.1 read side between TLS and hyper: every request head is held back until it is whole
//! and checked ([`super::head`]); one hyper would refuse is never shown to it. hyper gets a stand-in
//! request instead, carrying the refusal and this connection's nonce, which the connection's service
//! answers in ACI's shape, in order after any requests before it, with `Connection: close`.
//!
//! Bodies pass through as they are, counted (fixed length) or followed (chunked) to know where the next
//! head starts; after an upgrade, or a chunked body hyper will reject anyway, nothing more is looked
//! at. At close, if the client may still be sending a body hyper did not read, the write side is shut
//! first and the rest read and dropped for a while ("lingering close"), so that the client receives
//! the answer instead of a TCP reset.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::head::{self, Chunked, Framing, Refusal, Step};
use super::{LINGER_BYTES, LINGER_TIME};

/// Header naming a refused head on the stand-in request: `<nonce> <refusal token>`.
pub(super) const REFUSAL_HEADER: &str = "x-berth-refused-head";

const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug)]
enum Mode {
    /// Waiting for a whole head in `held`.
    Head,
    /// Handing a checked head (the first `left` bytes of `held`) to hyper; then its body.
    Release {
        left: usize,
        framing: Framing,
        upgrade: bool,
    },
    Length(u64),
    Chunked(Chunked),
    /// Not looking any more (HTTP/2, after an upgrade, a broken chunked body, a truncated head).
    Passthrough,
    /// A head was refused: the stand-in request's bytes, then nothing more for hyper.
    Refused {
        stand_in: Vec<u8>,
    },
}

#[derive(Debug)]
enum Close {
    Open,
    /// Write side shut; dropping what the client still sends until EOF or the deadline.
    Lingering {
        deadline: Pin<Box<tokio::time::Sleep>>,
        dropped: u64,
    },
}

/// A connection's IO as hyper sees it.
#[derive(Debug)]
pub(super) struct Guarded<IO> {
    io: IO,
    mode: Mode,
    /// Bytes read from `io` and not yet handed to hyper.
    held: Vec<u8>,
    nonce: u128,
    close: Close,
}

impl<IO> Guarded<IO> {
    /// HTTP/1.1: heads are checked; refusals name `nonce`.
    pub(super) fn http1(io: IO, nonce: u128) -> Self {
        Self::new(io, Mode::Head, nonce)
    }

    /// HTTP/2: bytes pass untouched (hyper's HTTP/2 refusals are answered by the service).
    pub(super) fn passthrough(io: IO) -> Self {
        Self::new(io, Mode::Passthrough, 0)
    }

    fn new(io: IO, mode: Mode, nonce: u128) -> Self {
        Self {
            io,
            mode,
            held: Vec::new(),
            nonce,
            close: Close::Open,
        }
    }

    /// The request hyper reads in place of a refused head.
    fn stand_in(nonce: u128, refusal: Refusal) -> Vec<u8> {
        format!(
            "GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n{REFUSAL_HEADER}: {nonce:032x} {}\r\n\r\n",
            refusal.token()
        )
        .into_bytes()
    }

    /// Whether the client may still be sending bytes hyper never asked for.
    fn unread_body(&self) -> bool {
        matches!(
            self.mode,
            Mode::Length(_) | Mode::Chunked(_) | Mode::Refused { .. }
        )
    }
}

/// Parses the value of [`REFUSAL_HEADER`]: the refusal, if `nonce` is this connection's.
pub(super) fn refusal_for(value: &[u8], nonce: u128) -> Option<Refusal> {
    let text = std::str::from_utf8(value).ok()?;
    let (given, token) = text.split_once(' ')?;
    let given = u128::from_str_radix(given, 16).ok()?;
    (given == nonce && nonce != 0)
        .then(|| Refusal::from_token(token))
        .flatten()
}

fn give(held: &mut Vec<u8>, n: usize, out: &mut ReadBuf<'_>) -> usize {
    let n = n.min(held.len()).min(out.remaining());
    out.put_slice(&held[..n]);
    held.drain(..n);
    n
}

/// Reads more from `io` into `held`: the count, 0 at EOF.
fn fill<IO: AsyncRead + Unpin>(
    io: &mut IO,
    held: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut chunk = [0u8; READ_CHUNK];
    let mut buf = ReadBuf::new(&mut chunk);
    ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    held.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}

/// What follows a released head.
fn after_head(upgrade: bool, framing: Framing) -> Mode {
    match (upgrade, framing) {
        (true, _) => Mode::Passthrough,
        (false, Framing::None) => Mode::Head,
        (false, Framing::Length(n)) => Mode::Length(n),
        (false, Framing::Chunked) => Mode::Chunked(Chunked::default()),
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.mode {
                Mode::Passthrough => {
                    if !this.held.is_empty() {
                        give(&mut this.held, usize::MAX, out);
                        return Poll::Ready(Ok(()));
                    }
                    return Pin::new(&mut this.io).poll_read(cx, out);
                }
                Mode::Refused { stand_in } => {
                    if stand_in.is_empty() {
                        // hyper closes after answering the stand-in (`Connection: close`).
                        return Poll::Pending;
                    }
                    give(stand_in, usize::MAX, out);
                    return Poll::Ready(Ok(()));
                }
                Mode::Release {
                    left,
                    framing,
                    upgrade,
                } => {
                    *left -= give(&mut this.held, *left, out);
                    if *left == 0 {
                        let next = after_head(*upgrade, *framing);
                        this.mode = next;
                    }
                    return Poll::Ready(Ok(()));
                }
                Mode::Length(left) => {
                    if !this.held.is_empty() {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX);
                        *left -= give(&mut this.held, n, out) as u64;
                    } else {
                        // Straight into hyper's buffer, never past the body's end.
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(out.remaining());
                        let mut limited = ReadBuf::new(out.initialize_unfilled_to(n));
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
                        let got = limited.filled().len();
                        out.advance(got);
                        if got == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        *left -= got as u64;
                    }
                    if *left == 0 {
                        this.mode = Mode::Head;
                    }
                    return Poll::Ready(Ok(()));
                }
                Mode::Chunked(chunked) => {
                    if this.held.is_empty() && ready!(fill(&mut this.io, &mut this.held, cx))? == 0
                    {
                        return Poll::Ready(Ok(()));
                    }
                    let n = this.held.len().min(out.remaining());
                    match chunked.feed(&this.held[..n]) {
                        Step::More => {
                            give(&mut this.held, n, out);
                        }
                        Step::End(end) => {
                            give(&mut this.held, end, out);
                            this.mode = Mode::Head;
                        }
                        Step::Invalid => {
                            this.mode = Mode::Passthrough;
                            continue;
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Mode::Head => match head::read_head(&this.held) {
                    Ok(Some(head)) => {
                        this.mode = Mode::Release {
                            left: head.len,
                            framing: head.framing,
                            upgrade: head.upgrade,
                        };
                    }
                    Ok(None) => {
                        if ready!(fill(&mut this.io, &mut this.held, cx))? == 0 {
                            if this.held.is_empty() {
                                return Poll::Ready(Ok(()));
                            }
                            // A head cut short by EOF: hyper sees what came, then the EOF.
                            this.mode = Mode::Passthrough;
                        }
                    }
                    Err(refusal) => {
                        tracing::debug!(?refusal, "request head refused");
                        this.held = Vec::new();
                        this.mode = Mode::Refused {
                            stand_in: Self::stand_in(this.nonce, refusal),
                        };
                    }
                },
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    if !this.unread_body() {
                        return Poll::Ready(Ok(()));
                    }
                    this.close = Close::Lingering {
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        dropped: 0,
                    };
                }
                Close::Lingering { deadline, dropped } => {
                    if *dropped >= LINGER_BYTES || deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    let mut chunk = [0u8; READ_CHUNK];
                    let mut buf = ReadBuf::new(&mut chunk);
                    match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            *dropped += buf.filled().len() as u64;
                        }
                        // EOF or a reset: the client is gone.
                        _ => return Poll::Ready(Ok(())),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// What hyper would read through the guard from `input`, sent in pieces of `piece` bytes.
    async fn through(input: &[u8], piece: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for part in input.chunks(piece.max(1)) {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let mut guarded = Guarded::http1(server, 7);
        let mut seen = Vec::new();
        let mut buf = [0u8; 333];
        loop {
            let read =
                tokio::time::timeout(Duration::from_millis(200), guarded.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
        drop(writer.await.unwrap());
        seen
    }

    #[tokio::test]
    async fn good_requests_pass_unchanged_however_they_arrive() {
        let wire = b"PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\n\r\n";
        for piece in [1, 2, 7, 64, 4096] {
            assert_eq!(
                through(wire, piece).await,
                wire.to_vec(),
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_head_becomes_the_stand_in_after_the_good_ones() {
        let good =
            b"GET /b HTTP/1.1\r\n\r\nPUT /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nGET ".to_vec();
        let mut wire = good.clone();
        wire.extend_from_slice(b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\nbody that never shows");
        for piece in [1, 5, 4096] {
            let seen = through(&wire, piece).await;
            let mut want = good.clone();
            want.extend_from_slice(&Guarded::<()>::stand_in(7, Refusal::ContentLength));
            assert_eq!(
                String::from_utf8_lossy(&seen),
                String::from_utf8_lossy(&want),
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn after_an_upgrade_bytes_pass_as_they_are() {
        let wire =
            b"GET /exec/1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello GET / HTTP/9\r\n\r\n";
        assert_eq!(through(wire, 3).await, wire.to_vec());
    }

    #[tokio::test]
    async fn close_drains_a_body_hyper_did_not_read_and_only_then() {
        // Idle between requests: shutting down does not wait for the client.
        let (_client, server) = tokio::io::duplex(1 << 16);
        let mut guarded = Guarded::http1(server, 7);
        tokio::time::timeout(Duration::from_secs(1), guarded.shutdown())
            .await
            .expect("no linger when nothing is unread")
            .unwrap();

        // Mid-body: the write side closes first (the client sees EOF), then what the client still
        // sends is read and dropped until it goes away.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut guarded = Guarded::http1(server, 7);
        let sent = b"PUT / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc";
        client.write_all(sent).await.unwrap();
        let mut buf = [0u8; 64];
        let mut seen = 0;
        while seen < sent.len() {
            seen += guarded.read(&mut buf).await.unwrap();
        }
        let closing = tokio::spawn(async move { guarded.shutdown().await });
        let mut eof = [0u8; 1];
        assert_eq!(
            client.read(&mut eof).await.unwrap(),
            0,
            "the answer side is closed"
        );
        for _ in 0..10 {
            client.write_all(&[b'x'; 10]).await.unwrap();
        }
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), closing)
            .await
            .expect("the linger ends with the client")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn only_this_connections_nonce_names_a_refusal() {
        let value = format!("{:032x} content-length", 42u128);
        assert_eq!(
            refusal_for(value.as_bytes(), 42),
            Some(Refusal::ContentLength)
        );
        assert_eq!(refusal_for(value.as_bytes(), 43), None);
        assert_eq!(refusal_for(b"0 content-length", 0), None);
        assert_eq!(refusal_for(b"2a bogus", 42), None);
        assert_eq!(refusal_for(b"\xff", 42), None);
    }
}
