//! The orchestra's background work (docs/architecture.md §5), above the engine it drives:
//! the dispatch loop (messages that did not go out), the lease reaper (running tasks whose
//! unit went silent), the sweep of long-offline units, and start-up recovery. Nothing
//! imports this module but start-up.
//!
//! With several replicas on one store the loops run on one of them: the one holding the
//! `loops` lease in the store, renewed every few seconds. When it dies another takes the
//! lease within one lease period (`OSCIED_TASK_LEASE_SECS`) and carries on. Every change the
//! loops make is a fenced write through [`crate::tasks`] anyway, so even two loops racing
//! (a replica paused past its lease) could not take one task back twice.

use std::time::{Duration, Instant};

use oscied_protocol::TaskStatus;

use crate::models::{ListOptions, PublisherTask, TaskFilter, TransformTask, now};
use crate::state::AppState;
use crate::tasks::{self, TaskKind};
use crate::{units, webhooks};

/// How often the loops wake up.
const TICK: Duration = Duration::from_secs(1);
/// How often the dispatch loop looks for undispatched tasks even when no publication
/// failed here.
const SWEEP: Duration = Duration::from_secs(30);
/// How often it looks for offline units to drop (`OSCIED_UNIT_FORGET_SECS`): at most this
/// late, or the forget time when shorter.
const UNIT_SWEEP: Duration = Duration::from_secs(60);
/// How often the leader looks for units gone silent (their `unit.offline` event).
const UNIT_WATCH: Duration = Duration::from_secs(5);
/// How often expired idempotency keys are forgotten.
const IDEMPOTENCY_SWEEP: Duration = Duration::from_secs(600);
/// The store lease the loops run under.
const LEASE: &str = "loops";

/// One pass of the dispatch loop: tasks whose message did not go out (queued tasks, and
/// publications being unpublished).
pub async fn dispatch_pending(state: &AppState) {
    let filter = TaskFilter {
        statuses: TaskStatus::QUEUED.to_vec(),
        undispatched: true,
        ..TaskFilter::default()
    };
    dispatch_kind::<TransformTask>(state, &filter).await;
    let mut filter = filter;
    filter.statuses.push(TaskStatus::Revoking);
    dispatch_kind::<PublisherTask>(state, &filter).await;
}

async fn dispatch_kind<K: TaskKind>(state: &AppState, filter: &TaskFilter) {
    match tasks::list::<K>(state, filter, &ListOptions::scan(200)).await {
        Ok(page) => {
            for task in page.items {
                tasks::dispatch::<K>(state, task.id).await;
            }
        }
        Err(e) => {
            state.outbox.retry_later();
            tracing::debug!(error = %e.message, "dispatch loop: store unavailable");
        }
    }
}

/// One pass of the lease reaper: running tasks whose unit went silent.
pub async fn reap(state: &AppState) {
    reap_kind::<TransformTask>(state).await;
    reap_kind::<PublisherTask>(state).await;
}

async fn reap_kind<K: TaskKind>(state: &AppState) {
    let filter = TaskFilter {
        statuses: TaskStatus::RUNNING.to_vec(),
        lease_expired_before: Some(now()),
        ..TaskFilter::default()
    };
    let lapsed = match tasks::list::<K>(state, &filter, &ListOptions::scan(200)).await {
        Ok(page) => page.items,
        Err(e) => {
            tracing::debug!(error = %e.message, "reaper: store unavailable");
            return;
        }
    };
    for task in lapsed {
        if let Err(e) = tasks::take_back::<K>(state, task.id, false).await {
            tracing::warn!(task = %task.id, error = %e.message, "reaper could not take the task back");
        }
    }
}

/// How long the loops' lease lasts: a replica that stops renewing it is replaced this late.
fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.task_lease_secs.clamp(3, 30))
}

/// Run the loops until the process ends, on whichever replica holds their lease. The reaper
/// looks every quarter lease (1 to 5 s): a lapsed lease is noticed within that much.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ttl = lease_ttl(&state);
        let renew_every = ttl / 3;
        let reap_every = Duration::from_secs((state.config.task_lease_secs / 4).clamp(1, 5));
        let unit_sweep = UNIT_SWEEP.min(Duration::from_secs(state.config.unit_forget_secs.max(1)));
        let (mut last_sweep, mut last_reap) = (Instant::now(), Instant::now());
        let mut last_unit_sweep = Instant::now();
        let mut last_unit_watch = Instant::now();
        let mut last_idempotency_sweep = Instant::now();
        let mut online = None;
        let mut leading: Option<Instant> = None;
        loop {
            tick.tick().await;
            if leading.is_none_or(|at| at.elapsed() >= renew_every) {
                leading = hold_lease(&state, ttl, leading.is_some()).await;
            }
            if leading.is_none() {
                // Whoever leads next compares with what it sees then.
                online = None;
                continue;
            }
            if state.outbox.take_failed() || last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                dispatch_pending(&state).await;
            }
            if last_reap.elapsed() >= reap_every {
                last_reap = Instant::now();
                reap(&state).await;
            }
            if online.is_none() || last_unit_watch.elapsed() >= UNIT_WATCH {
                last_unit_watch = Instant::now();
                units::notice_offline(&state, &mut online).await;
            }
            // Retries due (a delivery's first attempt is made at once where its event was).
            webhooks::send::deliver_due(&state).await;
            if last_idempotency_sweep.elapsed() >= IDEMPOTENCY_SWEEP {
                last_idempotency_sweep = Instant::now();
                crate::idempotency::sweep(&state).await;
                webhooks::sweep(&state).await;
            }
            if last_unit_sweep.elapsed() >= unit_sweep {
                last_unit_sweep = Instant::now();
                units::forget_offline(&state).await;
            }
        }
    })
}

/// Take or renew the loops' lease; when (renewed) this replica leads.
async fn hold_lease(state: &AppState, ttl: Duration, was_leading: bool) -> Option<Instant> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
    match state.store.acquire_lease(LEASE, &state.replica, ttl).await {
        Ok(true) => {
            if !was_leading {
                tracing::info!(replica = %state.replica, "this orchestra runs the dispatch loop and the reaper");
                // Whatever the last leader left: look at once.
                state.outbox.retry_later();
            }
            Some(Instant::now())
        }
        Ok(false) => {
            if was_leading {
                tracing::warn!(replica = %state.replica, "another orchestra took over the dispatch loop and the reaper");
            }
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "loops lease: store unavailable");
            // Without the store there is nothing the loops could do; keep the last answer
            // until the lease would have lapsed anyway.
            None
        }
    }
}

/// A stopping replica gives the loops' lease up, so that another takes over at once.
pub async fn release(state: &AppState) {
    if let Err(e) = state.store.release_lease(LEASE, &state.replica).await {
        tracing::debug!(error = %e, "loops lease not released; it lapses");
    }
}

/// At start: with in-process queues nothing queued survived the last run, so every queued
/// task is dispatched again; tasks the last run's in-process units held are taken back now
/// rather than when their lease lapses. (On RabbitMQ, with separate units, there is nothing
/// to recover: messages are durable and units' leases lapse on their own.)
pub async fn recover(state: &AppState, local_units: &[&str]) {
    recover_kind::<TransformTask>(state, local_units).await;
    recover_kind::<PublisherTask>(state, local_units).await;
}

async fn recover_kind<K: TaskKind>(state: &AppState, local_units: &[&str]) {
    let lost = !state.broker.durable();
    if !lost && local_units.is_empty() {
        return;
    }
    let filter = TaskFilter {
        statuses: TaskStatus::ACTIVE.to_vec(),
        ..TaskFilter::default()
    };
    let found = match tasks::list::<K>(state, &filter, &ListOptions::oldest_first(10_000)).await {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(error = %e.message, "could not recover tasks at start");
            return;
        }
    };
    let local = |unit: Option<&str>| unit.is_some_and(|u| local_units.contains(&u));
    for task in found {
        let recovered = tasks::mutate::<K, ()>(state, task.id, |t| {
            if lost && t.wants_message() {
                t.dispatched_at = None;
                return Ok((true, ()));
            }
            if t.status.is_running() && t.leased() && local(t.unit_id.as_deref()) {
                t.lease_expires_at = Some(now());
                return Ok((true, ()));
            }
            Ok((false, ()))
        })
        .await;
        if let Err(e) = recovered {
            tracing::warn!(task = %task.id, error = %e.message, "could not recover task");
        }
    }
}
