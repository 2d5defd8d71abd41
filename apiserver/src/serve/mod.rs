//! HTTPS serving: accept TCP, handshake rustls, serve HTTP/1.1 or HTTP/2 (by ALPN), drain on shutdown.
//!
//! Every answer a client can cause is ACI's error shape, the ones hyper would give itself included:
//! - HTTP/1.1: [`guard`] reads each request head before hyper does and turns the ones hyper would
//!   refuse with an empty answer (too large, malformed, bad `Content-Length`) into a stand-in request
//!   this connection's service answers; bodies nobody read are drained at close.
//! - HTTP/2: hyper's header-list limit sits far above the service's own (`http::limits`).
//! - Both: a body the handler did not read does not cost the client its answer ([`unread`]).

mod guard;
mod head;
mod unread;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::error::ApiError;

/// How long, and how much, a body nobody read is read and dropped after its answer (HTTP/1.1: at
/// close; HTTP/2: per stream), so that the client sees the answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: u64 = 64 << 20;

/// HTTP/2's `SETTINGS_MAX_HEADER_LIST_SIZE`: past this h2 itself answers 431 with no body and
/// refuses the stream; below it, the service's own limits answer in ACI's shape.
const H2_MAX_HEADER_LIST: u32 = 256 * 1024;

/// Serves `service` over TLS on `listener` until `shutdown`, then lets open requests finish (10 s).
pub async fn serve<S>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: S,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let http2 = tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            let (io, nonce) = if http2 {
                builder = builder.http2_only();
                builder.http2().max_header_list_size(H2_MAX_HEADER_LIST);
                (guard::Guarded::passthrough(tls), 0)
            } else {
                builder = builder.http1_only();
                let nonce = loop {
                    let n: u128 = rand::random();
                    if n != 0 {
                        break n;
                    }
                };
                (guard::Guarded::http1(tls, nonce), nonce)
            };
            let service = PerConnection {
                inner: service,
                nonce,
                http2,
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(err) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("connections still open after 10 s; closing"),
    }
}

/// The service of one connection: answers the guard's stand-ins, holds HTTP/2 bodies.
#[derive(Clone)]
struct PerConnection<S> {
    inner: S,
    /// The HTTP/1.1 guard's nonce (0: none).
    nonce: u128,
    http2: bool,
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for PerConnection<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        if let Some(refusal) = request
            .headers()
            .get(guard::REFUSAL_HEADER)
            .and_then(|v| guard::refusal_for(v.as_bytes(), self.nonce))
        {
            let response = crate::http::error_response(ApiError::from(refusal));
            return Box::pin(std::future::ready(Ok(response)));
        }
        let inner = self.inner.clone();
        let (parts, body) = request.into_parts();
        if self.http2 {
            let (body, held) = unread::hold(body);
            let call = inner.oneshot(Request::from_parts(parts, body));
            Box::pin(async move { call.await.map(|response| held.until_sent(response)) })
        } else {
            let (body, track) = unread::track(body);
            let call = inner.oneshot(Request::from_parts(parts, body));
            Box::pin(async move { call.await.map(|response| track.close_if_unread(response)) })
        }
    }
}
