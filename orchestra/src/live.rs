//! The event stream a caller watches (`GET /api/v1/events`, docs/architecture.md §16): the
//! events of [`crate::events`] that the caller may see and asked for, after its last one
//! when it resumes, then live.
//!
//! A stream outlives the request that opened it, so it checks its caller again every
//! [`RECHECK`]: a revoked token, a changed secret or a deleted user ends it, and a user made
//! or unmade admin sees accordingly. Each caller may hold `OSCIED_EVENTS_MAX_STREAMS` at once.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::auth::{self, Caller, Credentials};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventFilter, Live, Replay, StreamGuard};
use crate::models::{PublisherTask, TransformTask};
use crate::state::AppState;
use crate::{medias, tasks};

/// How often an open stream checks that its caller may still watch.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Who watches, with what they proved it (to prove it again).
pub struct Watcher {
    pub caller: Caller,
    pub credentials: Credentials,
    pub ip: Option<IpAddr>,
}

/// Open a stream: the filter's task or media must be one the caller may see (404
/// otherwise); `last_id` is the client's `Last-Event-ID`.
pub async fn open(
    state: &AppState,
    watcher: Watcher,
    filter: EventFilter,
    last_id: Option<&str>,
) -> ApiResult<impl Stream<Item = Live> + Send + 'static> {
    let caller = &watcher.caller;
    if let Some(id) = filter.task_id {
        visible_task(state, caller, id).await?;
    }
    if let Some(id) = filter.media_id {
        medias::visible(state, caller, id).await?;
    }
    let max = usize::try_from(state.config.events_max_streams).unwrap_or(usize::MAX);
    let guard = state
        .events
        .open_stream(caller.user_id(), max)
        .ok_or_else(|| {
            ApiError::too_many_requests(
                format!(
                    "{max} event streams are open for this account already \
                     (OSCIED_EVENTS_MAX_STREAMS): close one first"
                ),
                5,
            )
        })?;
    let (replay, live) = state.events.subscribe(last_id);
    let replay = match replay {
        Replay::Events(events) => events.into_iter().map(Live::Event).collect(),
        Replay::Reset(why) => VecDeque::from([Live::Reset(why)]),
    };
    let cursor = Cursor {
        state: state.clone(),
        watcher,
        filter,
        replay,
        live,
        closing: state.events.closing(),
        recheck: tokio::time::Instant::now() + RECHECK,
        _guard: guard,
    };
    Ok(futures_util::stream::unfold(cursor, Cursor::next))
}

/// A task id of either kind the caller may see.
async fn visible_task(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    match tasks::find::<TransformTask>(state, caller, id).await {
        Ok(_) => Ok(()),
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
            tasks::find::<PublisherTask>(state, caller, id)
                .await
                .map(|_| ())
                .map_err(|_| ApiError::not_found("task", id).on("task_id"))
        }
        Err(e) => Err(e),
    }
}

enum Woke {
    Closing,
    Recheck,
    Live(Result<Live, broadcast::error::RecvError>),
}

struct Cursor {
    state: AppState,
    watcher: Watcher,
    filter: EventFilter,
    replay: VecDeque<Live>,
    live: broadcast::Receiver<Live>,
    closing: watch::Receiver<bool>,
    recheck: tokio::time::Instant,
    _guard: StreamGuard,
}

impl Cursor {
    async fn next(mut self) -> Option<(Live, Cursor)> {
        loop {
            if let Some(item) = self.replay.pop_front() {
                if self.wants(&item) {
                    return Some((item, self));
                }
                continue;
            }
            let woke = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => Woke::Closing,
                () = tokio::time::sleep_until(self.recheck) => Woke::Recheck,
                got = self.live.recv() => Woke::Live(got),
            };
            match woke {
                Woke::Closing | Woke::Live(Err(broadcast::error::RecvError::Closed)) => {
                    return None;
                }
                Woke::Recheck => {
                    if !self.still_allowed().await {
                        return None;
                    }
                }
                Woke::Live(Ok(item)) => {
                    if self.wants(&item) {
                        return Some((item, self));
                    }
                }
                Woke::Live(Err(broadcast::error::RecvError::Lagged(_))) => {
                    return Some((Live::Reset("this stream fell behind the events"), self));
                }
            }
        }
    }

    /// What the filter asked for and the caller may see: its own tasks' and medias' events
    /// (everyone's for admins), and every unit's.
    fn wants(&self, item: &Live) -> bool {
        match item {
            Live::Reset(_) => true,
            Live::Event(event) => {
                self.filter.matches(event)
                    && event
                        .user_id
                        .is_none_or(|owner| self.watcher.caller.can_see(Some(owner)))
            }
        }
    }

    /// The caller proves itself again; an unreachable store lets the stream go on.
    async fn still_allowed(&mut self) -> bool {
        self.recheck = tokio::time::Instant::now() + RECHECK;
        let proved = auth::authenticate(
            &self.state,
            self.watcher.credentials.clone(),
            self.watcher.ip,
        )
        .await;
        match proved {
            Ok(authenticated) => {
                self.watcher.caller = authenticated.caller;
                true
            }
            Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => true,
            Err(e) => {
                tracing::info!(reason = %e.message, "event stream closed: its caller may no longer watch");
                false
            }
        }
    }
}
