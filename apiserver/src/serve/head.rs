//! HTTP/1.1 request heads and message framing, read off the wire the way hyper reads them, so that
//! a head hyper would refuse with an empty answer is refused here first, in ACI's shape
//! (see [`super::guard`]).
//!
//! The rules mirror hyper 1.x's server parser (`proto/h1/role.rs`, `headers.rs`, `decode.rs`):
//! httparse with its defaults and 100 header slots, `http::Uri` for the request target,
//! `Transfer-Encoding` (HTTP/1.1 only, `chunked` last) over `Content-Length` (digits only, repeats
//! must agree), and the chunked grammar with strict CRLFs. What they accept, hyper accepts; where the
//! chunked grammar is broken, hyper fails the body and closes, and we stop looking.

use axum::http::StatusCode;

use crate::error::ApiError;

/// The most a request head (request line and header fields) may take on the wire. Below hyper's read
/// buffer (~400 KiB), so hyper never refuses a head for size itself.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// hyper's header slots (`DEFAULT_MAX_HEADERS`); one more field is a 431.
const MAX_FIELDS: usize = 100;

/// hyper's limit on a request target (`MAX_URI_LEN`); unreachable under `MAX_HEAD_BYTES`, kept so
/// the rule stands on its own.
const MAX_TARGET_BYTES: usize = u16::MAX as usize - 1;

/// The largest length hyper represents (`DecodedLength::MAX_LEN`).
const MAX_LENGTH: u64 = u64::MAX - 2;

/// Why a request head is refused before it reaches hyper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request line alone passes the head limit (414).
    UriTooLong,
    /// The head passes the limit, or has more than 100 fields (431).
    HeadersTooLarge,
    /// The request line is not `method SP target SP HTTP/1.x` with a valid target (400).
    BadRequestLine,
    /// A header field is malformed (400).
    BadHeader,
    /// `Content-Length` is not a number, or repeats disagree (400).
    ContentLength,
    /// `Transfer-Encoding` whose last coding is not `chunked`, or on HTTP/1.0 (400).
    TransferEncoding,
    /// A declared length past what can be represented (413).
    LengthTooLarge,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::UriTooLong,
        Refusal::HeadersTooLarge,
        Refusal::BadRequestLine,
        Refusal::BadHeader,
        Refusal::ContentLength,
        Refusal::TransferEncoding,
        Refusal::LengthTooLarge,
    ];

    /// A short token naming the refusal on the stand-in request (see `guard`).
    pub(super) fn token(self) -> &'static str {
        match self {
            Refusal::UriTooLong => "uri-too-long",
            Refusal::HeadersTooLarge => "headers-too-large",
            Refusal::BadRequestLine => "bad-request-line",
            Refusal::BadHeader => "bad-header",
            Refusal::ContentLength => "content-length",
            Refusal::TransferEncoding => "transfer-encoding",
            Refusal::LengthTooLarge => "length-too-large",
        }
    }

    pub(super) fn from_token(token: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.token() == token)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let (status, code, target, message) = match refusal {
            Refusal::UriTooLong => (
                StatusCode::URI_TOO_LONG,
                "RequestUriTooLong",
                "uri",
                format!("The request line is longer than {MAX_HEAD_BYTES} bytes."),
            ),
            Refusal::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "RequestHeaderFieldsTooLarge",
                "headers",
                format!(
                    "The request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_FIELDS} header \
                     fields."
                ),
            ),
            Refusal::BadRequestLine => (
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "uri",
                "The request line is not 'METHOD target HTTP/1.1' with a valid target.".to_owned(),
            ),
            Refusal::BadHeader => (
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "headers",
                "A header field of the request is malformed.".to_owned(),
            ),
            Refusal::ContentLength => (
                StatusCode::BAD_REQUEST,
                "InvalidContentLength",
                "Content-Length",
                "The Content-Length header is not a number of bytes, or several disagree."
                    .to_owned(),
            ),
            Refusal::TransferEncoding => (
                StatusCode::BAD_REQUEST,
                "InvalidTransferEncoding",
                "Transfer-Encoding",
                "Only the 'chunked' transfer coding is understood, and only on HTTP/1.1."
                    .to_owned(),
            ),
            Refusal::LengthTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "body",
                "The declared Content-Length is larger than any request this server takes."
                    .to_owned(),
            ),
        };
        ApiError::new(status, code, message).with_target(target)
    }
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A complete head that hyper will accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Bytes of the head on the wire, empty lines before it included.
    pub(super) len: usize,
    pub(super) framing: Framing,
    /// CONNECT, or `Upgrade` on HTTP/1.1: what follows may not be HTTP at all.
    pub(super) upgrade: bool,
}

/// Reads a head from the start of `buf`: `Ok(None)` until it is complete.
pub(super) fn read_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(too_large(buf)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(too_large(&buf[..len]));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadersTooLarge),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue)
        | Err(httparse::Error::NewLine)
            if request.version.is_some() =>
        {
            return Err(Refusal::BadHeader);
        }
        Err(_) => return Err(Refusal::BadRequestLine),
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Refusal::BadRequestLine);
    };
    if target.len() > MAX_TARGET_BYTES {
        return Err(Refusal::UriTooLong);
    }
    if axum::http::Uri::try_from(target.as_bytes()).is_err() {
        return Err(Refusal::BadRequestLine);
    }
    let http11 = version == 1;
    let mut upgrade = method == "CONNECT";
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Refusal::TransferEncoding);
            }
            transfer_encoding = true;
            length = None;
            chunked = is_chunked(field.value);
        } else if field.name.eq_ignore_ascii_case("content-length") {
            if transfer_encoding {
                continue;
            }
            let n = digits(field.value).ok_or(Refusal::ContentLength)?;
            match length {
                Some(previous) if previous != n => return Err(Refusal::ContentLength),
                Some(_) => {}
                None if n > MAX_LENGTH => return Err(Refusal::LengthTooLarge),
                None => length = Some(n),
            }
        } else if field.name.eq_ignore_ascii_case("upgrade") {
            upgrade = http11;
        }
    }
    if transfer_encoding && !chunked {
        return Err(Refusal::TransferEncoding);
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::None,
    };
    Ok(Some(Head {
        len,
        framing,
        upgrade,
    }))
}

/// A head over the limit: 414 if even its request line is not finished, else 431.
fn too_large(head: &[u8]) -> Refusal {
    let start = head
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(head.len());
    let line_end = head[start..].iter().position(|b| *b == b'\n');
    match line_end {
        Some(end) if end <= MAX_HEAD_BYTES => Refusal::HeadersTooLarge,
        _ => Refusal::UriTooLong,
    }
}

/// hyper's `is_chunked_`: the last coding of a visible-ASCII value is `chunked`.
fn is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// hyper's `from_digits`: ASCII digits only, no sign, no spaces, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Follows a chunked body byte by byte (hyper's `ChunkedState`), to know where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    /// Bytes left of the current chunk's data.
    left: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// What [`Chunked::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Every byte fed belongs to the body, which goes on.
    More,
    /// The body ends after this many of the bytes fed.
    End(usize),
    /// Not chunked framing: hyper fails this body and closes the connection.
    Invalid,
}

impl Chunked {
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Step {
        use ChunkState as S;
        let mut i = 0;
        while i < bytes.len() {
            if self.state == S::Data {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                self.left -= take as u64;
                if self.left == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (S::Start, _) | (S::Size, _) if hex(b).is_some() => {
                    let Some(left) = self
                        .left
                        .checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(hex(b).unwrap_or(0))))
                    else {
                        return Step::Invalid;
                    };
                    self.left = left;
                    S::Size
                }
                (S::Size | S::SizeLws, b'\t' | b' ') => S::SizeLws,
                (S::Size | S::SizeLws, b';') => S::Extension,
                (S::Size | S::SizeLws | S::Extension, b'\r') => S::SizeLf,
                (S::Extension, b'\n') => return Step::Invalid,
                (S::Extension, _) => S::Extension,
                (S::SizeLf, b'\n') if self.left == 0 => S::EndCr,
                (S::SizeLf, b'\n') => S::Data,
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataLf, b'\n') => S::Start,
                (S::Trailer, b'\r') => S::TrailerLf,
                (S::Trailer, _) => S::Trailer,
                (S::TrailerLf, b'\n') => S::EndCr,
                (S::EndCr, b'\r') => S::EndLf,
                (S::EndCr, _) => S::Trailer,
                (S::EndLf, b'\n') => {
                    *self = Chunked::default();
                    return Step::End(i);
                }
                _ => return Step::Invalid,
            };
        }
        Step::More
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Refusal> {
        read_head(text.as_bytes())
    }

    #[test]
    fn complete_heads_say_how_their_body_is_framed() {
        let h = head("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((h.len, h.framing, h.upgrade), (27, Framing::None, false));
        let h = head("PUT /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(12));
        let h = head("PUT /x HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::None);
        // Transfer-Encoding wins over Content-Length, before or after it.
        for text in [
            "PUT /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "PUT /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nContent-Length: x\r\n\r\n",
        ] {
            assert_eq!(
                head(text).unwrap().unwrap().framing,
                Framing::Chunked,
                "{text}"
            );
        }
        let h = head("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.upgrade);
        let h = head("GET /ws HTTP/1.0\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.upgrade);
        assert!(
            head("CONNECT a:443 HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .upgrade
        );
        // Empty lines before a request line are skipped, and counted.
        assert_eq!(head("\r\nGET / HTTP/1.1\r\n\r\n").unwrap().unwrap().len, 20);
        assert_eq!(head("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn what_hyper_refuses_is_refused_here() {
        for (text, refusal) in [
            (
                "PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: 18446744073709551614\r\n\r\n",
                Refusal::LengthTooLarge,
            ),
            (
                "PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
                Refusal::ContentLength,
            ),
            (
                "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                Refusal::TransferEncoding,
            ),
            (
                "PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::TransferEncoding,
            ),
            (
                "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                Refusal::TransferEncoding,
            ),
            ("GET / HTTP/2.0\r\n\r\n", Refusal::BadRequestLine),
            ("GET /\x7f HTTP/1.1\r\n\r\n", Refusal::BadRequestLine),
            ("G(T / HTTP/1.1\r\n\r\n", Refusal::BadRequestLine),
            ("GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", Refusal::BadHeader),
            ("GET / HTTP/1.1\r\nNo-colon\r\n\r\n", Refusal::BadHeader),
            ("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", Refusal::BadHeader),
        ] {
            assert_eq!(head(text), Err(refusal), "{text:?}");
        }
        // A target may carry UTF-8 unescaped (as `http::Uri` takes it), nothing else.
        assert_eq!(
            read_head(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadRequestLine)
        );
        assert!(head("GET /\u{e9} HTTP/1.1\r\n\r\n").unwrap().is_some());
        // Repeats that agree are one length.
        let text = "PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(text).unwrap().unwrap().framing, Framing::Length(3));
    }

    #[test]
    fn oversized_heads_are_414_or_431() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&long_line), Err(Refusal::UriTooLong));
        // Still arriving: known once the buffer passes the limit.
        assert_eq!(
            head(&long_line[..MAX_HEAD_BYTES + 1]),
            Err(Refusal::UriTooLong)
        );
        assert_eq!(head(&long_line[..MAX_HEAD_BYTES]), Ok(None));
        let big_field = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(head(&big_field), Err(Refusal::HeadersTooLarge));
        assert_eq!(
            head(&big_field[..MAX_HEAD_BYTES + 1]),
            Err(Refusal::HeadersTooLarge)
        );
        let mut many = "GET / HTTP/1.1\r\n".to_owned();
        for i in 0..=MAX_FIELDS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(head(&many), Err(Refusal::HeadersTooLarge));
    }

    #[test]
    fn refusals_round_trip_through_their_token_and_answer_in_aci_shape() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_token(refusal.token()), Some(refusal));
            let error = ApiError::from(refusal);
            assert!(error.status.is_client_error());
            assert!(error.target.is_some() && !error.message.is_empty());
        }
        assert_eq!(Refusal::from_token("nope"), None);
    }

    #[test]
    fn chunked_bodies_end_where_hyper_ends_them() {
        let body =
            b"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let mut c = Chunked::default();
        assert_eq!(c.feed(body), Step::End(body.len() - 4));
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"0\r\n\r\n"), Step::End(5));
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX",
            b"5;a\nb",
            b"0\r\n\rx",
        ] {
            assert_eq!(Chunked::default().feed(bad), Step::Invalid, "{bad:?}");
        }
        assert_eq!(
            Chunked::default().feed(b"FFFFFFFFFFFFFFFFF\r\n"),
            Step::Invalid,
            "a size that overflows"
        );
    }

    proptest! {
        /// However the bytes arrive, the body ends at the same byte.
        #[test]
        fn chunked_framing_does_not_depend_on_how_bytes_arrive(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
            cuts in proptest::collection::vec(1usize..30, 0..20),
        ) {
            let mut wire = Vec::new();
            for chunk in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len() + 1).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"!\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let total = wire.len();
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let mut c = Chunked::default();
            let mut at = 0;
            let mut ended = None;
            for cut in cuts.iter().copied().chain(std::iter::repeat(7)) {
                let end = (at + cut).min(wire.len());
                match c.feed(&wire[at..end]) {
                    Step::More => at = end,
                    Step::End(n) => { ended = Some(at + n); break; }
                    Step::Invalid => break,
                }
                if at == wire.len() { break; }
            }
            prop_assert_eq!(ended, Some(total));
        }

        /// Arbitrary bytes never panic the head reader, and a head is never longer than its input.
        #[test]
        fn read_head_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(h)) = read_head(&bytes) {
                prop_assert!(h.len <= bytes.len());
            }
        }
    }
}
