//! `GET /metrics`: the Prometheus exposition ([`crate::prometheus`]), for operators only (it shows
//! every tenant's group names). Scrapers without a token use `--metrics-listen`.

use axum::extract::State;
use axum::response::Response;

use crate::AppState;
use crate::auth::Operator;

pub(super) async fn metrics(State(state): State<AppState>, _operator: Operator) -> Response {
    crate::prometheus::scrape(&state).await
}
