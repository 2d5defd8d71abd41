//! How long since any apiserver was heard: the clock of the node's self-fencing.
//!
//! "Heard" is any `DesiredState`, from any replica (the apiserver answers every heartbeat with an empty
//! one). The watch starts when the node starts syncing; [`Silence::expired`] resolves once per silence
//! longer than `--fence-after`, and hearing again re-arms it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The watch over one node's silence.
#[derive(Debug)]
pub struct Silence {
    /// `None`: the node never fences.
    after: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    heard: Instant,
    /// [`Silence::expired`] has resolved for this silence already.
    fired: bool,
}

impl Silence {
    /// A watch that expires after `after` without news, counted from now; `None`: never.
    pub fn new(after: Option<Duration>) -> Self {
        Self {
            after,
            state: Mutex::new(State {
                heard: Instant::now(),
                fired: false,
            }),
        }
    }

    /// An apiserver was heard just now.
    pub fn heard(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.heard = Instant::now();
        state.fired = false;
    }

    /// Resolves, with how long nothing was heard, once nothing has been heard for `after`; once per
    /// silence (a later call waits for the next one). Never without `after`. Cancel-safe.
    pub async fn expired(&self) -> Duration {
        let Some(after) = self.after else {
            return std::future::pending().await;
        };
        loop {
            let wake = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let deadline = state.heard + after;
                if state.fired {
                    // Look again later: hearing meanwhile re-arms the watch.
                    now + after
                } else if now >= deadline {
                    state.fired = true;
                    return now - state.heard;
                } else {
                    deadline
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(20);

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_silence_counted_from_the_last_news() {
        let start = Instant::now();
        let silence = Silence::new(Some(AFTER));
        tokio::time::sleep(Duration::from_secs(15)).await;
        silence.heard();
        let silent = silence.expired().await;
        assert_eq!(silent, AFTER);
        assert_eq!(start.elapsed(), Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_once_per_silence_and_hearing_rearms_it() {
        let silence = Silence::new(Some(AFTER));
        silence.expired().await;
        // The same silence does not expire twice, however long it lasts.
        let again = tokio::time::timeout(Duration::from_secs(300), silence.expired()).await;
        assert!(again.is_err(), "expired twice for one silence");
        silence.heard();
        let heard = Instant::now();
        assert_eq!(silence.expired().await, AFTER);
        assert_eq!(heard.elapsed(), AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn news_while_waiting_push_the_deadline() {
        let silence = std::sync::Arc::new(Silence::new(Some(AFTER)));
        let start = Instant::now();
        let waiter = tokio::spawn({
            let silence = std::sync::Arc::clone(&silence);
            async move { silence.expired().await }
        });
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            silence.heard();
        }
        assert_eq!(waiter.await.unwrap(), AFTER);
        assert_eq!(start.elapsed(), Duration::from_secs(70));
    }

    #[tokio::test(start_paused = true)]
    async fn never_expires_when_fencing_is_off() {
        let silence = Silence::new(None);
        let waited = tokio::time::timeout(Duration::from_secs(3600), silence.expired()).await;
        assert!(waited.is_err());
    }
}
