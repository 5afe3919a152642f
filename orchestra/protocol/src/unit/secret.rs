//! Whether the orchestra accepts this unit's node secret. A refused secret (401) is a
//! misconfiguration no retry fixes, so it must be loud and must not cost jobs: while it is
//! refused the unit takes no delivery (one it already holds is requeued, not acked, so a
//! well-configured unit runs it), logs an error naming the fix at most every
//! [`LOG_EVERY`], keeps checking with its heartbeat, takes jobs again as soon as the secret is
//! accepted (the orchestra restarted with the right one), and ends with
//! [`UnitError::SecretRefused`] once it was refused for `OSCIED_REFUSED_EXIT_SECS` on end, so
//! the binary exits non-zero and systemd shows the unit failed.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How often the refusal is logged again while it lasts.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// `OSCIED_REFUSED_EXIT_SECS`'s default: how long a refused unit keeps checking before it exits.
pub const DEFAULT_REFUSED_EXIT_SECS: u64 = 60;
/// While refused, the heartbeat checks at least this often (whatever `OSCIED_HEARTBEAT_SECS`).
pub const REFUSED_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why a unit's `run` ended with a failure (the binary exits non-zero).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UnitError {
    #[error(
        "the orchestra refused the node secret for {0} s: set OSCIED_NODE_SECRET to the \
         orchestra's node secret (its <data dir>/node_secret file, or its OSCIED_NODE_SECRET)"
    )]
    SecretRefused(u64),
    /// The unit could not start (its configuration is refused, a client could not be built).
    #[error("{0}")]
    NotStarted(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No answer yet (the unit just started, or the orchestra is unreachable).
    Unknown,
    Accepted,
    Refused {
        since: Instant,
    },
}

/// Shared by every clone of a [`super::UnitLink`].
#[derive(Debug)]
pub(crate) struct SecretState {
    state: watch::Sender<State>,
    exit_after: Duration,
    last_log: Mutex<Option<Instant>>,
}

impl SecretState {
    pub(crate) fn new(exit_after: Duration) -> SecretState {
        SecretState {
            state: watch::Sender::new(State::Unknown),
            exit_after: exit_after.max(Duration::from_secs(1)),
            last_log: Mutex::new(None),
        }
    }

    pub(crate) fn is_refused(&self) -> bool {
        matches!(*self.state.borrow(), State::Refused { .. })
    }

    /// A node call went through: the secret is accepted.
    pub(crate) fn accepted(&self) {
        let was = self.state.send_replace(State::Accepted);
        if let State::Refused { since } = was {
            *self.last_log.lock().unwrap_or_else(PoisonError::into_inner) = None;
            tracing::info!(
                refused_secs = since.elapsed().as_secs(),
                "the orchestra accepts the node secret again: taking jobs"
            );
        }
    }

    /// A node call was answered 401 (`what`: which call, `message`: the orchestra's words).
    pub(crate) fn refused(&self, api: &str, what: &str, message: &str) {
        let mut since = Instant::now();
        self.state.send_if_modified(|state| match *state {
            State::Refused { since: first } => {
                since = first;
                false
            }
            _ => {
                *state = State::Refused { since };
                true
            }
        });
        let now = Instant::now();
        {
            let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let left = self.exit_after.saturating_sub(since.elapsed()).as_secs();
        tracing::error!(
            %api,
            call = %what,
            "the orchestra refuses this unit's node secret (401: {message}): \
             OSCIED_NODE_SECRET must equal the orchestra's node secret (its <data dir>/node_secret \
             file, or its OSCIED_NODE_SECRET); taking no jobs, checking every {} s, exiting in \
             {left} s unless it is accepted",
            REFUSED_CHECK_EVERY.as_secs()
        );
    }

    /// Resolves once the secret is not (or no longer) known to be refused.
    pub(crate) async fn until_not_refused(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`.
        let _ = rx
            .wait_for(|state| !matches!(state, State::Refused { .. }))
            .await;
    }

    /// Resolves once the secret is refused.
    pub(crate) async fn until_refused(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx
            .wait_for(|state| matches!(state, State::Refused { .. }))
            .await;
    }

    /// Resolves once the secret has been refused for `exit_after` without a break.
    pub(crate) async fn refused_for_good(&self) -> UnitError {
        let mut rx = self.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            match state {
                State::Refused { since } => {
                    let deadline = tokio::time::Instant::from_std(since + self.exit_after);
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            if *rx.borrow() == state {
                                return UnitError::SecretRefused(self.exit_after.as_secs());
                            }
                        }
                        changed = rx.changed() => if changed.is_err() {
                            return std::future::pending().await;
                        }
                    }
                }
                _ => {
                    if rx.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_ends_the_unit_unless_accepted_meanwhile() {
        let secret = SecretState::new(Duration::from_secs(1));
        assert!(!secret.is_refused());
        secret.refused("http://o", "heartbeat", "wrong credentials");
        assert!(secret.is_refused());
        // Accepted again before the bound: the clock starts over at the next refusal.
        tokio::time::sleep(Duration::from_millis(600)).await;
        secret.accepted();
        assert!(!secret.is_refused());
        secret.until_not_refused().await;
        let started = Instant::now();
        secret.refused("http://o", "claim", "wrong credentials");
        secret.until_refused().await;
        // Repeated refusals keep the first one's start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        secret.refused("http://o", "heartbeat", "wrong credentials");
        let failure = secret.refused_for_good().await;
        assert!(matches!(failure, UnitError::SecretRefused(1)), "{failure}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
            "{waited:?}"
        );
        assert!(failure.to_string().contains("OSCIED_NODE_SECRET"));
    }
}
