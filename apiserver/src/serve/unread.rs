//! Request bodies a handler answered without reading to their end (401 before the body, 413 past
//! the limit, 415, 404 on a route that takes none).
//!
//! HTTP/2 ([`hold`]): if the body went away with the handler, h2 would reset the stream (`CANCEL`)
//! before the answer left, and the client would see a stream error instead of it. So the body is
//! shared between the handler and the response, and what is left of it is read and dropped after the
//! answer's last frame (up to [`super::LINGER_BYTES`] for [`super::LINGER_TIME`]), so the client's
//! upload ends normally: curl before 8.1 reports an upload cut short by `RST_STREAM` as an error even
//! after a whole answer. A body past those bounds is dropped, and h2 ends the stream with
//! `RST_STREAM(NO_ERROR)`, as RFC 9113 §8.1 has servers do.
//!
//! HTTP/1.1 ([`track`]): hyper closes a connection whose request body was not read, so the answer
//! says `Connection: close`, and a client does not send its next request into a closing connection.
//! (The guard's lingering close sees that the client still gets the answer.)

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

type Shared = Arc<Mutex<Incoming>>;

/// The handler's side of a held body.
struct Reader(Shared);

impl HttpBody for Reader {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }
}

/// A response body that keeps the request body alive until it is dropped, then drains it.
struct Holding {
    body: Body,
    request: Option<Shared>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let Some(shared) = self.request.take() else {
            return;
        };
        // The handler is done with its reader by now; if not, it keeps the body.
        let Ok(body) =
            Arc::try_unwrap(shared).map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads and drops what is left of a request body, within the linger bounds.
async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt as _;
    let _ = tokio::time::timeout(super::LINGER_TIME, async {
        let mut dropped = 0u64;
        while dropped < super::LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    dropped += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body as the handler reads it, and the handle that holds it.
pub(super) struct Held(Shared);

pub(super) fn hold(body: Incoming) -> (Body, Held) {
    let shared = Arc::new(Mutex::new(body));
    (Body::new(Reader(shared.clone())), Held(shared))
}

impl Held {
    /// `response`, with the request body dropped only after its last frame.
    pub(super) fn until_sent(self, response: Response) -> Response {
        response.map(|body| {
            Body::new(Holding {
                body,
                request: Some(self.0),
            })
        })
    }
}

/// An HTTP/1.1 request body that notes when it was read to its end.
struct Tracked {
    body: Incoming,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.body.is_end_stream() {
            this.ended.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether an HTTP/1.1 request body was read to its end; `None` for a request without one.
pub(super) struct Track(Option<Arc<AtomicBool>>);

pub(super) fn track(body: Incoming) -> (Body, Track) {
    if body.is_end_stream() {
        return (Body::new(body), Track(None));
    }
    let ended = Arc::new(AtomicBool::new(false));
    let body = Tracked {
        body,
        ended: ended.clone(),
    };
    (Body::new(body), Track(Some(ended)))
}

impl Track {
    /// `response`, saying `Connection: close` if the request body was left unread.
    pub(super) fn close_if_unread(self, mut response: Response) -> Response {
        if self.0.is_some_and(|ended| !ended.load(Ordering::Relaxed)) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
