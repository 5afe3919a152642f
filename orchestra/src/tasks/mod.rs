//! The task engine (docs/architecture.md §3–5): one implementation of a task's life — create,
//! dispatch, claim, progress, complete, revoke, hand-back, take-back — for every kind. A kind
//! (`transform`, `publish`) says only what differs ([`TaskKind`]); [`crate::lifecycle`]'s
//! rule table decides every status; [`crate::outbox`] sends the messages.
//!
//! Nothing here is guarded by an in-process lock. Every change is a read → decide → fenced
//! write ([`change`]): the write lands only if the record is still the one read (its store
//! revision), else the decision is taken again on the fresh record, so replicas sharing the
//! store can race on one task and exactly one write wins. What a change sets in motion (a
//! final state's clean-up, the next message) runs once, after the winning write, by its
//! writer ([`settle`]).

pub mod publish;
pub mod transform;

use std::ops::{Deref, DerefMut};

use async_trait::async_trait;
use oscied_protocol::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, ProgressAnswer, ProgressRequest,
    ReleaseAnswer, ReleaseRequest,
};
use oscied_protocol::{ProgressReport, TaskStatus};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventType};
use crate::lifecycle::{self, check_holder, move_to, out_of_attempts, stale};
use crate::models::{Hold, ListOptions, Page, Revised, TaskFilter, TaskHeader, now};
use crate::outbox::Outgoing;
use crate::state::AppState;
use crate::store::{Store, StoreResult};

/// How many times a decision is taken again when its write lost a race, before the caller
/// gets a 409 (a record changing under every try is hot beyond reason).
const ROUNDS: u32 = 24;

/// What differs between task kinds. The record derefs to its [`TaskHeader`]; the rest is
/// the kind's own fields.
#[async_trait]
pub trait TaskKind:
    Revised
    + Deref<Target = TaskHeader>
    + DerefMut
    + Clone
    + serde::Serialize
    + Send
    + Sync
    + Sized
    + 'static
{
    /// How messages and errors name it: `transform task`, `publisher task`.
    const WHAT: &'static str;
    /// How events name its kind: `transform`, `publisher`.
    const KIND: &'static str;
    /// How its lapsed holder is named in the task's error: `unit`, `publisher unit`.
    const HOLDER: &'static str;
    /// Whether SUCCESS can still be undone (a publication is unpublished).
    const REVOCABLE_SUCCESS: bool;
    /// What a completion prepares outside the record before it is decided (a transform
    /// takes its output in).
    type Prepared: Send + Sync;

    async fn insert(&self, store: &dyn Store) -> StoreResult<()>;
    async fn get(store: &dyn Store, id: Uuid) -> StoreResult<Option<Self>>;
    /// The fenced replace (see [`Store`]).
    async fn put(&mut self, store: &dyn Store) -> StoreResult<bool>;
    async fn list(
        store: &dyn Store,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> StoreResult<Page<Self>>;

    /// The media its events are about, and the input media (a transform's) if any.
    fn medias(&self) -> (Uuid, Option<Uuid>);
    /// The progress its progress events carry.
    fn progress_view(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// What a claim, a hand-back or a take-back clears: the last attempt's traces.
    fn clear_attempt(&mut self) {}
    /// Whether a unit's lease applies: a publication whose files are out runs no job.
    fn leased(&self) -> bool {
        true
    }
    /// What a progress report stores.
    fn on_progress(&mut self, _report: ProgressReport) {}
    /// Whether the task, as it stands, is one whose message belongs on the broker (a
    /// queued task's job).
    fn wants_message(&self) -> bool {
        self.status.is_queued()
    }
    /// Whether the task waits for a message that has not gone out.
    fn awaits_message(&self) -> bool {
        self.wants_message() && self.dispatched_at.is_none()
    }
    /// The message the task needs now, from its records as they are; None when it needs
    /// none; the inner `Err` is why it cannot run at all (its input or profile is gone).
    async fn message(&self, state: &AppState) -> StoreResult<Result<Option<Outgoing>, String>>;
    /// A stopping unit hands back what it runs; what the kind refuses to take back.
    fn check_release(&self, _req: &ReleaseRequest) -> ApiResult<()> {
        Ok(())
    }
    /// Revoking again a task being revoked; whether that changed it (a publication's
    /// unpublish job is sent again).
    fn revoke_again(&mut self) -> bool {
        false
    }
    /// The 409 of revoking a task that is over.
    fn refuse_revoke(&self) -> ApiError;

    /// Before the decision: what a unit's completion needs done outside the record.
    async fn prepare(
        state: &AppState,
        task: &Self,
        req: &CompleteRequest,
    ) -> ApiResult<Self::Prepared>;
    /// The completion decided on the record as it is now (after the holder check): whether
    /// it changed.
    fn complete(
        task: &mut Self,
        req: &CompleteRequest,
        prepared: &Self::Prepared,
    ) -> ApiResult<bool>;
    /// Just before the write that ends the task (it may run again if that write loses a
    /// race): what must be true by the time anyone reads the final status (a failed
    /// transform's output is DELETED, its files gone).
    async fn ending(_state: &AppState, _task: &Self) {}
    /// Once, by the writer that ended it: what a final status cleans up or publishes.
    async fn finished(state: &AppState, task: &Self);
}

/// The task, or a 404.
pub async fn load<K: TaskKind>(state: &AppState, id: Uuid) -> ApiResult<K> {
    K::get(state.store.as_ref(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(K::WHAT, id))
}

/// A task the caller may see (others' answer 404).
pub async fn find<K: TaskKind>(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<K> {
    let task: K = load(state, id).await?;
    if caller.can_see(Some(task.user_id)) {
        Ok(task)
    } else {
        Err(ApiError::not_found(K::WHAT, id))
    }
}

/// A page of tasks.
pub async fn list<K: TaskKind>(
    state: &AppState,
    filter: &TaskFilter,
    opts: &ListOptions,
) -> ApiResult<Page<K>> {
    Ok(K::list(state.store.as_ref(), filter, opts).await?)
}

/// A page of a list route: [`list`], with a total kept from an earlier count while no task
/// has changed since, where counting walks the matches ([`crate::totals`]). Not for the
/// domain's own checks, which must count now.
pub async fn page<K: TaskKind>(
    state: &AppState,
    filter: &TaskFilter,
    opts: &ListOptions,
) -> ApiResult<Page<K>> {
    // Several statuses read uncounted are several queries merged (see the MongoDB store):
    // those count as before.
    if opts.uncounted || !state.store.counts_by_walking() || filter.statuses.len() > 1 {
        return list(state, filter, opts).await;
    }
    // Read before the count: a change landing during it leaves the total kept under an
    // older number.
    let changes = state.events.task_changes();
    let Some(total) = state.totals.get(K::KIND, filter, changes) else {
        let page = list::<K>(state, filter, opts).await?;
        state.totals.keep(K::KIND, filter, changes, page.total);
        return Ok(page);
    };
    let uncounted = ListOptions {
        uncounted: true,
        ..opts.clone()
    };
    let mut page = list::<K>(state, filter, &uncounted).await?;
    let listed = match page.items.len() {
        0 => 0,
        n => opts.skip.saturating_add(n as u64),
    };
    // A short page tells the total itself; a kept one is never below what was just listed.
    page.total = opts
        .total_of_page(page.items.len())
        .unwrap_or(total.max(listed));
    Ok(page)
}

/// A winning write: the record as stored, its status before, the decision's answer.
pub struct Written<K, R> {
    pub task: K,
    pub before: TaskStatus,
    pub changed: bool,
    pub answer: R,
}

/// Read → decide → fenced write, until the write lands on the record decided on. `decide`
/// returns whether it changed the record, and an answer; it is called again on the fresh
/// record after a lost race, so it must only look at and change the record.
pub async fn mutate<K: TaskKind, R: Send>(
    state: &AppState,
    id: Uuid,
    decide: impl FnMut(&mut K) -> ApiResult<(bool, R)> + Send,
) -> ApiResult<Written<K, R>> {
    mutate_from(state, id, None, decide).await
}

/// [`mutate`], deciding first on `read`, a copy the caller has just read (with its revision):
/// one store read fewer on the hot paths (a dispatch's note, a completion). A copy that is
/// no longer current only costs a lost write, after which the record is read again.
async fn mutate_from<K: TaskKind, R: Send>(
    state: &AppState,
    id: Uuid,
    mut read: Option<K>,
    mut decide: impl FnMut(&mut K) -> ApiResult<(bool, R)> + Send,
) -> ApiResult<Written<K, R>> {
    for round in 0..ROUNDS {
        let mut task: K = match read.take() {
            Some(task) => task,
            None => load(state, id).await?,
        };
        let before = task.status;
        let (changed, answer) = decide(&mut task)?;
        if !changed {
            return Ok(Written {
                task,
                before,
                changed,
                answer,
            });
        }
        if !before.is_final() && task.status.is_final() {
            K::ending(state, &task).await;
        }
        if task.put(state.store.as_ref()).await? {
            return Ok(Written {
                task,
                before,
                changed,
                answer,
            });
        }
        tracing::debug!(task = %id, round, "{} changed underneath; deciding again", K::WHAT);
        tokio::time::sleep(crate::store::backoff(round)).await;
    }
    Err(ApiError::conflict(format!(
        "{} {id} kept changing while this request was applied; try again",
        K::WHAT
    )))
}

/// [`mutate`], then what the change sets in motion ([`settle`]).
pub async fn change<K: TaskKind, R: Send>(
    state: &AppState,
    id: Uuid,
    decide: impl FnMut(&mut K) -> ApiResult<(bool, R)> + Send,
) -> ApiResult<Written<K, R>> {
    change_from(state, id, None, decide).await
}

/// [`change`] deciding first on a copy just read ([`mutate_from`]).
async fn change_from<K: TaskKind, R: Send>(
    state: &AppState,
    id: Uuid,
    read: Option<K>,
    decide: impl FnMut(&mut K) -> ApiResult<(bool, R)> + Send,
) -> ApiResult<Written<K, R>> {
    let written = mutate_from(state, id, read, decide).await?;
    if written.changed {
        settle(state, written.before, &written.task).await;
    }
    Ok(written)
}

/// An event about `task`, as it is now.
fn event<K: TaskKind>(kind: EventType, task: &K, data: serde_json::Value) -> Event {
    let mut event = Event::new(kind, data);
    let (media, media_in) = task.medias();
    event.user_id = Some(task.user_id);
    event.task_id = Some(task.id);
    event.task_kind = Some(K::KIND.to_owned());
    event.media_id = Some(media);
    event.media_in_id = media_in;
    event.unit_id = task.unit_id.clone();
    event
}

/// The event of a status change that `task` has just been written with.
fn emit_status<K: TaskKind>(state: &AppState, before: TaskStatus, task: &K) {
    let kind = if task.status.is_final() {
        state.events.task_over(task.id);
        EventType::TaskFinished
    } else {
        EventType::TaskStatus
    };
    let data = serde_json::json!({"from": before, "task": task});
    state.events.emit(event(kind, task, data));
}

/// After a winning write: its event if the status changed; a task that has just ended is
/// counted ([`crate::metrics`]) and cleaned up (once: only the writer that ended it gets
/// here), and one waiting for a message is sent it.
pub async fn settle<K: TaskKind>(state: &AppState, before: TaskStatus, task: &K) {
    if before != task.status {
        emit_status(state, before, task);
    }
    if !before.is_final() && task.status.is_final() {
        state.metrics.task_finished(
            K::KIND,
            &task.queue,
            task.status,
            task.ran_secs(),
            task.error.as_deref(),
        );
        K::finished(state, task).await;
    }
    if task.awaits_message() {
        // Boxed: dispatching may end the task (its input is gone), which settles again.
        Box::pin(dispatch::<K>(state, task.id)).await;
    }
}

/// Store a new task and send its message: `ready` when the caller has built it from the
/// records it read (no store read before the publication), else it is built here.
pub async fn create<K: TaskKind>(
    state: &AppState,
    task: K,
    ready: Option<Outgoing>,
) -> ApiResult<K> {
    task.insert(state.store.as_ref()).await?;
    Ok(start(state, task, ready).await)
}

/// Send the message of a task just stored ([`create`] does both).
pub async fn start<K: TaskKind>(state: &AppState, task: K, ready: Option<Outgoing>) -> K {
    tracing::info!(task = %task.id, queue = %task.queue, "{} created", K::WHAT);
    let data = serde_json::json!({ "task": &task });
    state
        .events
        .emit(event(EventType::TaskCreated, &task, data));
    let id = task.id;
    let sent = match ready {
        Some(out) => send(state, task.clone(), out).await,
        None => dispatch::<K>(state, id).await,
    };
    sent.unwrap_or(task)
}

/// Send a task's message if it waits for one, and note when the broker confirmed it.
/// Returns the task as it is then, or None when nothing went out (the dispatch loop tries
/// again).
pub async fn dispatch<K: TaskKind>(state: &AppState, id: Uuid) -> Option<K> {
    let _in_flight = state.outbox.enter(id)?;
    let task: K = match K::get(state.store.as_ref(), id).await {
        Ok(task) => task?,
        Err(e) => {
            tracing::debug!(task = %id, error = %e, "dispatch postponed");
            state.outbox.retry_later();
            return None;
        }
    };
    if !task.awaits_message() {
        return Some(task);
    }
    let out = match task.message(state).await {
        Ok(Ok(Some(out))) => out,
        Ok(Ok(None)) => return Some(task),
        Ok(Err(reason)) => return cannot_run::<K>(state, id, reason).await,
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "dispatch postponed");
            state.outbox.retry_later();
            return None;
        }
    };
    send_entered(state, task, out).await
}

/// [`send_entered`], unless this process is publishing the task already.
async fn send<K: TaskKind>(state: &AppState, task: K, out: Outgoing) -> Option<K> {
    let _in_flight = state.outbox.enter(task.id)?;
    send_entered(state, task, out).await
}

/// Publish `out` for `task` as read, then note the dispatch unless a unit claimed it (or it
/// moved on) meanwhile: only the message sent for this very state is noted. The caller holds
/// the task's in-flight guard.
async fn send_entered<K: TaskKind>(state: &AppState, task: K, out: Outgoing) -> Option<K> {
    let id = task.id;
    if !state.outbox.send(id, &out).await {
        return None;
    }
    let (attempt, status) = (task.attempt, task.status);
    let noted = mutate_from::<K, ()>(state, id, Some(task.clone()), |t| {
        let same = t.attempt == attempt && t.status == status && t.dispatched_at.is_none();
        if same {
            t.dispatched_at = Some(now());
        }
        Ok((same, ()))
    })
    .await;
    match noted {
        Ok(written) => {
            tracing::debug!(task = %id, attempt, queue = %out.queue, "{} dispatched", K::WHAT);
            Some(written.task)
        }
        Err(e) => {
            tracing::warn!(task = %id, error = %e.message, "could not note the dispatch");
            Some(task)
        }
    }
}

/// A queued task that cannot run at all ends in FAILURE, saying why.
async fn cannot_run<K: TaskKind>(state: &AppState, id: Uuid, reason: String) -> Option<K> {
    let written = change::<K, ()>(state, id, |t| {
        if !t.status.is_queued() {
            return Ok((false, ()));
        }
        move_to(t, TaskStatus::Failure, K::REVOCABLE_SUCCESS)?;
        t.error = Some(reason.clone());
        Ok((true, ()))
    })
    .await;
    match written {
        Ok(w) => {
            if w.changed {
                tracing::warn!(task = %id, %reason, "{} cannot run: FAILURE", K::WHAT);
            }
            Some(w.task)
        }
        Err(e) => {
            tracing::warn!(task = %id, error = %e.message, "could not fail a task that cannot run");
            None
        }
    }
}

fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(state.config.task_lease_secs).unwrap_or(30))
}

/// A unit claims an attempt it received (see [`lifecycle::claim`]).
pub async fn claim<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: ClaimRequest,
) -> ApiResult<ClaimAnswer> {
    let lease = lease(state);
    let written = change::<K, ()>(state, id, |t| {
        let claimed = lifecycle::claim(t, &req, lease)?;
        if claimed {
            t.clear_attempt();
        }
        Ok((claimed, ()))
    })
    .await?;
    let task = written.task;
    if written.changed {
        tracing::info!(task = %id, attempt = task.attempt, unit = task.unit_id.as_deref(),
            "{} started", K::WHAT);
    }
    Ok(ClaimAnswer {
        task_id: id,
        attempt: task.attempt,
        lease_secs: state.config.task_lease_secs,
    })
}

/// Progress (or a bare lease report) renews the lease; the answer tells the unit of a task
/// being revoked to stop.
pub async fn progress<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: ProgressRequest,
) -> ApiResult<ProgressAnswer> {
    let lease = lease(state);
    let written = change::<K, ()>(state, id, |t| {
        check_holder(t, &req.unit_id, req.attempt)?;
        if !t.status.is_running() || !t.leased() {
            return Err(stale(format!("{} {id} is {}: stop", K::WHAT, t.status)));
        }
        lifecycle::renew(t, now() + lease)?;
        if let Some(report) = req.progress.clone() {
            if t.status == TaskStatus::Started {
                move_to(t, TaskStatus::Progress, K::REVOCABLE_SUCCESS)?;
            }
            t.on_progress(report);
        }
        Ok((true, ()))
    })
    .await?;
    let task = &written.task;
    if req.progress.is_some() && task.status.is_running() && state.events.progress_due(id) {
        let data = serde_json::json!({"status": task.status, "progress": task.progress_view()});
        state
            .events
            .emit(event(EventType::TaskProgress, task, data));
    }
    Ok(ProgressAnswer {
        cancel: task.status == TaskStatus::Revoking,
    })
}

/// A lease in the store held for one critical section across replicas (see
/// `Store::acquire_lease`), named for what it guards; given up by [`Held::release`], or it
/// lapses on its own if its holder dies.
pub struct Held {
    name: String,
    holder: String,
}

/// How long a held section may last before another may take it over.
const SECTION_TTL: i64 = 60;

impl Held {
    /// Take `name`, waiting up to `wait` for its holder to finish (None: still held).
    pub async fn take(
        state: &AppState,
        name: String,
        wait: std::time::Duration,
    ) -> ApiResult<Option<Held>> {
        let holder = Uuid::new_v4().to_string();
        let ttl = chrono::Duration::seconds(SECTION_TTL);
        let started = std::time::Instant::now();
        let mut round = 0;
        while !state.store.acquire_lease(&name, &holder, ttl).await? {
            if started.elapsed() >= wait {
                return Ok(None);
            }
            tokio::time::sleep(crate::store::backoff(round)).await;
            round += 1;
        }
        Ok(Some(Held { name, holder }))
    }

    pub async fn release(self, state: &AppState) {
        if let Err(e) = state.store.release_lease(&self.name, &self.holder).await {
            tracing::debug!(lease = %self.name, error = %e, "lease not released; it lapses");
        }
    }
}

/// How long a completion's [`Hold`] on its task lasts: what it does outside the record (a
/// transform moving its output in) takes well under a second; a hold left by a replica that
/// died mid-way lapses after this, and the reaper may then take the attempt back.
const HOLD_SECS: i64 = 60;

/// How long a copy of a completion waits for another copy holding the task.
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A unit's completion, fenced by attempt and unit; repeating an accepted one answers the
/// same. What the kind accepts is its [`TaskKind::complete`].
///
/// What a completion prepares outside the record (a transform moves its output in and marks
/// it READY) must not meet a reaper taking the attempt back, nor a second copy of the same
/// completion moving the same files. So it first takes a [`Hold`] on the task, a fenced write
/// on the copy it read (on every replica, of two racers one wins); a take-back skips a held
/// task, a copy arriving meanwhile waits for the hold to end, then answers the same (or a
/// 503 after [`HOLD_WAIT`]: the unit retries, on another replica if it has one). The
/// decision's own write ends the hold.
pub async fn complete<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: CompleteRequest,
) -> ApiResult<CompleteAnswer> {
    let me = Uuid::new_v4().to_string();
    let Some(task) = hold::<K>(state, id, &req, &me).await? else {
        // Over already (a repeated completion, a take-back that won): the answer is the same.
        let task: K = load(state, id).await?;
        return Ok(CompleteAnswer {
            status: task.status,
        });
    };
    let answer = complete_held::<K>(state, id, &req, task, &me).await;
    if answer.is_err() {
        unhold::<K>(state, id, &me).await;
    }
    answer
}

/// Take the completion's hold on the task: the task as written with it, or None when it is
/// over (nothing to hold). A stale attempt is answered at once.
async fn hold<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: &CompleteRequest,
    me: &str,
) -> ApiResult<Option<K>> {
    let waited = std::time::Instant::now();
    let mut round = 0;
    loop {
        let mut task: K = load(state, id).await?;
        check_holder(&task, &req.unit_id, req.attempt)?;
        if task.status.is_final() {
            return Ok(None);
        }
        // A reaper fenced the lease first: this completion is too late to count.
        lifecycle::check_unsealed(&task)?;
        let at = now();
        if task.hold.as_ref().is_some_and(|h| h.bars(me, at)) {
            if waited.elapsed() >= HOLD_WAIT {
                return Err(ApiError::unavailable(format!(
                    "{} {id} is being completed elsewhere; try again",
                    K::WHAT
                )));
            }
        } else {
            task.set_hold(Some(Hold {
                by: me.to_owned(),
                until: at + chrono::Duration::seconds(HOLD_SECS),
            }));
            if task.put(state.store.as_ref()).await? {
                return Ok(Some(task));
            }
        }
        tokio::time::sleep(crate::store::backoff(round)).await;
        round += 1;
    }
}

/// The completion under its hold: prepare, then decide on the copy just written (one read
/// fewer), ending the hold in the same write.
async fn complete_held<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: &CompleteRequest,
    task: K,
    me: &str,
) -> ApiResult<CompleteAnswer> {
    let prepared = K::prepare(state, &task, req).await?;
    let written = change_from::<K, ()>(state, id, Some(task), |t| {
        check_holder(t, &req.unit_id, req.attempt)?;
        let ended = t.end_hold(me);
        Ok((K::complete(t, req, &prepared)? || ended, ()))
    })
    .await?;
    Ok(CompleteAnswer {
        status: written.task.status,
    })
}

/// Give the hold up after a completion that failed (best effort: it lapses anyway).
async fn unhold<K: TaskKind>(state: &AppState, id: Uuid, me: &str) {
    let given = mutate::<K, ()>(state, id, |t| Ok((t.end_hold(me), ()))).await;
    if let Err(e) = given {
        tracing::debug!(task = %id, error = %e.message, "hold not given up; it lapses");
    }
}

/// Revoke: a queued task is REVOKED at once; a running one goes REVOKING and its unit is
/// told to stop at its next report; a revocable SUCCESS (a publication) goes REVOKING and its
/// unit is sent the job that undoes it. Returns the task as this request wrote it.
pub async fn revoke<K: TaskKind>(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<K> {
    find::<K>(state, caller, id).await?;
    let written = change::<K, ()>(state, id, |t| {
        let changed = match t.status {
            TaskStatus::Pending | TaskStatus::Retry => {
                move_to(t, TaskStatus::Revoked, K::REVOCABLE_SUCCESS)?;
                true
            }
            TaskStatus::Started | TaskStatus::Progress => {
                move_to(t, TaskStatus::Revoking, K::REVOCABLE_SUCCESS)?;
                true
            }
            TaskStatus::Revoking => t.revoke_again(),
            TaskStatus::Success if K::REVOCABLE_SUCCESS => {
                move_to(t, TaskStatus::Revoking, K::REVOCABLE_SUCCESS)?;
                t.dispatched_at = None;
                true
            }
            TaskStatus::Success | TaskStatus::Failure | TaskStatus::Revoked => {
                return Err(t.refuse_revoke());
            }
        };
        Ok((changed, ()))
    })
    .await?;
    if written.changed {
        tracing::info!(task = %id, from = %written.before, to = %written.task.status,
            unit = written.task.unit_id.as_deref(), "{} revoked by its owner", K::WHAT);
    }
    Ok(written.task)
}

/// A stopping unit hands back the attempt it runs ([`lifecycle::release`]): the task is
/// queued again at once with attempt + 1, or REVOKED if it was being revoked.
pub async fn release<K: TaskKind>(
    state: &AppState,
    id: Uuid,
    req: ReleaseRequest,
) -> ApiResult<ReleaseAnswer> {
    let written = change::<K, TaskStatus>(state, id, |t| {
        t.check_release(&req)?;
        let status = lifecycle::release(t, &req)?;
        t.clear_attempt();
        Ok((true, status))
    })
    .await?;
    tracing::info!(task = %id, unit = %req.unit_id, status = %written.answer,
        attempt = written.task.attempt, "{} handed back by its stopping unit", K::WHAT);
    Ok(ReleaseAnswer {
        status: written.answer,
        attempt: written.task.attempt,
    })
}

/// The reaper's decision for a running task whose lease lapsed (or, `now`, whose unit was
/// forgotten): re-queue with attempt + 1, or FAILURE past the last attempt; a REVOKING one
/// is simply REVOKED (nothing runs any more). Whether it was taken back.
pub async fn take_back<K: TaskKind>(state: &AppState, id: Uuid, now_: bool) -> ApiResult<bool> {
    let (lease_secs, max_attempts) = (state.config.task_lease_secs, state.config.task_max_attempts);
    // First the fence, a write that changes nothing else: once it lands, the holder's late
    // report or hand-back is refused, so that the decision below, which may discard the
    // output before its write, cannot lose that write to a renewal and leave a running task
    // without its output. A completion under way (its hold) decides first; the next pass
    // looks again. A hold that lapsed (its replica died) is cleared with the seal.
    let sealed = mutate::<K, ()>(state, id, |t| {
        let at = now();
        let lapsed = now_ || t.lease_lapsed(at);
        if !t.status.is_running() || !lapsed || !t.leased() || t.lease_sealed() {
            return Ok((false, ()));
        }
        if t.hold.as_ref().is_some_and(|h| h.stands(at)) {
            return Ok((false, ()));
        }
        t.seal_lease();
        t.set_hold(None);
        Ok((true, ()))
    })
    .await?;
    if !sealed.task.lease_sealed() {
        return Ok(false);
    }
    let written = change_from::<K, ()>(state, id, Some(sealed.task), |t| {
        // Only what ends the task can have changed it since the fence.
        if !t.status.is_running() || !t.leased() || !t.lease_sealed() {
            return Ok((false, ()));
        }
        let unit = t.unit_id.clone().unwrap_or_default();
        if t.status == TaskStatus::Revoking {
            move_to(t, TaskStatus::Revoked, K::REVOCABLE_SUCCESS)?;
        } else if out_of_attempts(t, max_attempts) {
            move_to(t, TaskStatus::Failure, K::REVOCABLE_SUCCESS)?;
            t.error = Some(format!(
                "{} {unit} went silent (no report for {lease_secs} s) on attempt {} of \
                 {max_attempts}: giving up",
                K::HOLDER,
                t.attempt - t.handed_back,
            ));
        } else {
            move_to(t, TaskStatus::Retry, K::REVOCABLE_SUCCESS)?;
            let error = format!(
                "{} {unit} went silent on attempt {}; retrying",
                K::HOLDER,
                t.attempt
            );
            t.next_attempt(error, false);
            t.clear_attempt();
        }
        Ok((true, ()))
    })
    .await?;
    if written.changed {
        tracing::warn!(task = %id, unit = written.task.unit_id.as_deref(),
            status = %written.task.status, attempt = written.task.attempt,
            "{}: lease lost, taken back", K::WHAT);
    }
    Ok(written.changed)
}
