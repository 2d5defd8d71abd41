//! `--metrics-listen`: `GET /metrics` over plain HTTP, without auth, for scrapers on a network the
//! operator trusts (it shows the ARM names of every group). Nothing else is served there.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::AppState;

async fn metrics(State(state): State<AppState>) -> Response {
    super::scrape(&state).await
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub async fn serve_plain(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics listener stopped");
    }
}
