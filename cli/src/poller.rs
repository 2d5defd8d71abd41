//! Waits for a long-running operation through its `Azure-AsyncOperation` status monitor, as ARM
//! clients do: GET the monitor until `status` is Succeeded, Failed or Canceled (any case), sleeping
//! `Retry-After` seconds between polls (1 s without one, never more than 5 s).

use std::io::IsTerminal as _;
use std::time::Duration;

use berth_proto::arm::OperationStatus;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{Client, ClientError, Response};

/// Poll interval when the server sends no `Retry-After`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest poll interval, whatever `Retry-After` says.
const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest poll interval, so a `Retry-After: 0` does not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Network or 5xx failures in a row that polling rides out.
const TRANSIENT_RETRIES: u32 = 3;

/// How an operation ended, if not well.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The operation's status is `Failed`; `code` and `message` are its `error`.
    #[error("{}{message}", code.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Failed {
        code: Option<String>,
        message: String,
    },
    /// The operation's status is `Canceled`.
    #[error("the operation was canceled")]
    Canceled,
    /// `--timeout` passed first; the operation goes on on the server.
    #[error(
        "gave up after {seconds} s waiting for the operation (last status: {last}); it goes on on the server"
    )]
    Timeout { seconds: u64, last: String },
}

/// The pause before the next poll.
pub fn next_interval(retry_after: Option<Duration>) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_INTERVAL)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Follows the operation that `accepted` (the answer to the PUT/POST/DELETE) names, until it ends or
/// `timeout` passes. `what` labels the spinner ("creating web"). Returns `Ok(None)` if `accepted`
/// names no operation: the request was complete.
pub async fn wait(
    client: &Client,
    accepted: &Response,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<Option<OperationStatus>> {
    let Some(monitor) = accepted.async_operation() else {
        return Ok(None);
    };
    let spinner = Spinner::start(what);
    let mut last = String::from("Accepted");
    let outcome = tokio::time::timeout(
        timeout,
        poll(client, monitor, accepted.retry_after(), &spinner, &mut last),
    )
    .await;
    spinner.finish();
    match outcome {
        Ok(status) => status.map(Some),
        Err(_elapsed) => Err(WaitError::Timeout {
            seconds: timeout.as_secs(),
            last,
        }
        .into()),
    }
}

async fn poll(
    client: &Client,
    monitor: &str,
    first_retry_after: Option<Duration>,
    spinner: &Spinner,
    last: &mut String,
) -> anyhow::Result<OperationStatus> {
    let mut interval = next_interval(first_retry_after);
    let mut failures = 0;
    loop {
        tokio::time::sleep(interval).await;
        let answer = match client.get(monitor).await {
            Ok(answer) => answer,
            Err(e) if is_transient(&e) && failures < TRANSIENT_RETRIES => {
                failures += 1;
                interval = MAX_INTERVAL;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        failures = 0;
        let status: OperationStatus = answer.json()?;
        interval = next_interval(answer.retry_after());
        spinner.status(&status.status);
        last.clone_from(&status.status);
        match status.status.to_ascii_lowercase().as_str() {
            "succeeded" => return Ok(status),
            "failed" => {
                let (code, message) = match status.error {
                    Some(e) => (Some(e.code), e.message),
                    None => (None, "the operation failed without saying why".to_owned()),
                };
                return Err(WaitError::Failed { code, message }.into());
            }
            "canceled" | "cancelled" => return Err(WaitError::Canceled.into()),
            _ => {}
        }
    }
}

fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        ClientError::Api { status, .. } => *status >= 500,
        _ => false,
    }
}

/// A spinner on stderr, only when stderr is a terminal.
struct Spinner {
    bar: Option<ProgressBar>,
    what: String,
}

impl Spinner {
    fn start(what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(format!("{what}: Accepted"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            what: what.to_owned(),
        }
    }

    fn status(&self, status: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {status}", self.what));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_honour_retry_after_within_bounds() {
        assert_eq!(next_interval(None), Duration::from_secs(1));
        assert_eq!(
            next_interval(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            next_interval(Some(Duration::from_secs(30))),
            Duration::from_secs(5)
        );
        assert_eq!(
            next_interval(Some(Duration::ZERO)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn failure_messages() {
        let e = WaitError::Failed {
            code: Some("InaccessibleImage".into()),
            message: "no".into(),
        };
        assert_eq!(e.to_string(), "InaccessibleImage: no");
        let e = WaitError::Timeout {
            seconds: 2,
            last: "Pending".into(),
        };
        assert!(e.to_string().contains("last status: Pending"));
    }
}
