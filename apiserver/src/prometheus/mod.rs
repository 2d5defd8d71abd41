//! Prometheus exposition of the apiserver: `GET /metrics` on the HTTPS listener (operator token) and,
//! with `--metrics-listen`, on a plain-HTTP listener of its own without auth, for scrapers. The
//! answer is the OpenMetrics text format (`prometheus-client`'s encoder), which Prometheus reads.
//!
//! # Layout
//! - [`Metrics`]: the process's registry and the families code updates as it runs: request
//!   durations by route template ([`requests`]), the scheduler's attempts and rounds
//!   ([`SchedulerMetrics`]).
//! - [`requests`]: the middleware timing each request.
//! - `scrape`: what a scrape reads at its time (the store's census, the DNS server's counts, every
//!   node's newest container samples from the store), as a registry of its own.
//! - `listener`: the `--metrics-listen` listener.

mod listener;
pub mod requests;
mod scrape;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use listener::serve_plain;

use crate::AppState;

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The apiserver's metrics: cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<requests::RequestLabels, Histogram, fn() -> Histogram>,
    scheduler: SchedulerMetrics,
    /// The embedded DNS server's counts, once it answers.
    dns: OnceLock<berth_dns::QueryCounts>,
}

fn request_histogram() -> Histogram {
    // 1 ms to 32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register(
            "berth_api_request_duration_seconds",
            "Time from a request reaching the router to its response head, by route template, method and status code",
            requests.clone(),
        );
        let scheduler = SchedulerMetrics::default();
        registry.register(
            "berth_scheduler_attempts",
            "Groups the scheduler tried to place, by result: scheduled, unschedulable (no node fits now), conflict (the store refused the reservation: retried), error (the round failed)",
            scheduler.attempts.clone(),
        );
        registry.register(
            "berth_scheduler_placement_duration_seconds",
            "Time of one scheduling round with groups to place: deciding, committing and telling the nodes",
            scheduler.placement.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                scheduler,
                dns: OnceLock::new(),
            }),
        }
    }

    /// The handles the scheduler counts its attempts and rounds with.
    pub fn scheduler(&self) -> SchedulerMetrics {
        self.inner.scheduler.clone()
    }

    /// Shows what the embedded DNS server answered (once; later calls change nothing).
    pub fn watch_dns(&self, counts: berth_dns::QueryCounts) {
        let _ = self.inner.dns.set(counts);
    }

    fn observe_request(&self, labels: &requests::RequestLabels, took: Duration) {
        self.inner
            .requests
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }
}

/// The answer to a scrape: every family, the process's and the scrape's own.
pub async fn scrape(state: &AppState) -> Response {
    let dns = state.metrics.inner.dns.get().cloned();
    let taken = scrape::Taken::read(&*state.store, dns.as_ref()).await;
    let mut text = String::new();
    let encoded = encode_registry(&mut text, &state.metrics.inner.registry)
        .and_then(|()| encode_registry(&mut text, &scrape::registry(&taken)))
        .and_then(|()| encode_eof(&mut text));
    if encoded.is_err() {
        // Writing to a String fails only if a metric's own encoding does: a bug, not the caller's.
        tracing::error!("the metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// What the scheduler counts; a default one counts into families no registry shows.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    attempts: Family<AttemptLabels, Counter>,
    placement: Histogram,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            // 1 ms to 16 s, as kube-scheduler's attempt durations.
            placement: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
}

/// How one group's scheduling attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Placed and committed.
    Scheduled,
    /// No node can hold it now: it waits.
    Unschedulable,
    /// Decided, but the store refused the reservation (the view was stale): retried.
    Conflict,
    /// The round failed (a store error).
    Error,
}

impl Attempt {
    fn as_str(self) -> &'static str {
        match self {
            Attempt::Scheduled => "scheduled",
            Attempt::Unschedulable => "unschedulable",
            Attempt::Conflict => "conflict",
            Attempt::Error => "error",
        }
    }
}

impl SchedulerMetrics {
    /// Counts `groups` attempts that ended as `attempt`.
    pub fn attempted(&self, attempt: Attempt, groups: u64) {
        if groups > 0 {
            self.attempts
                .get_or_create(&AttemptLabels {
                    result: attempt.as_str(),
                })
                .inc_by(groups);
        }
    }

    /// Records how long a round with groups to place took.
    pub fn round_took(&self, took: Duration) {
        self.placement.observe(took.as_secs_f64());
    }
}
