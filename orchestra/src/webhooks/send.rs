//! Sending deliveries: one POST per attempt, signed, with what came of it kept on the
//! delivery (docs/architecture.md §17).
//!
//! A delivery is stored before it is first sent, so it survives a restart or the death of
//! its replica: whoever finds it due sends it (its replica at once, the loops' leader when
//! it is due again). Before each attempt the sender claims it with a fenced write that moves
//! `next_at` past the attempt's timeout, so two replicas never send one attempt twice, and a
//! sender that dies mid-attempt lets another retry after that. At least once: a receiver
//! dedupes on `X-OSCIED-Delivery`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::models::{Delivery, DeliveryAttempt, DeliveryFilter, DeliveryStatus, ListOptions, now};
use crate::state::AppState;
use crate::store::StoreError;
use crate::webhook_client::{Outcome, Target, backoff};

/// A delivery is retried until it is this old.
pub const RETRY_FOR: chrono::Duration = chrono::Duration::hours(24);
/// The most due deliveries one pass starts.
const PASS: u64 = 500;

/// Start every due delivery not in flight here (the loops' leader, each second).
pub async fn deliver_due(state: &AppState) {
    let filter = DeliveryFilter {
        due_before: Some(now()),
        ..DeliveryFilter::default()
    };
    let opts = ListOptions {
        sort: "next_at",
        ..ListOptions::scan(PASS)
    };
    match state.store.list_deliveries(&filter, &opts).await {
        Ok(page) => {
            for delivery in page.items {
                spawn_attempt(state, delivery.id);
            }
        }
        Err(e) => tracing::debug!(error = %e, "webhook deliveries: store unavailable"),
    }
}

/// Send delivery `id` in the background if it is due and not in flight here.
pub fn spawn_attempt(state: &AppState, id: Uuid) {
    let work = state.clone();
    spawn_guarded(state, id, async move { attempt(&work, id).await });
}

/// Send a delivery just stored already claimed (its first attempt, where its event was):
/// no store read before the POST.
pub fn spawn_first(state: &AppState, delivery: Delivery, target: Target) {
    let work = state.clone();
    spawn_guarded(state, delivery.id, async move {
        send_claimed(&work, delivery, &target).await
    });
}

/// Run `work` in the background unless delivery `id` is in flight here already, within the
/// replica's bound of attempts at once.
fn spawn_guarded(
    state: &AppState,
    id: Uuid,
    work: impl Future<Output = Result<(), StoreError>> + Send + 'static,
) {
    if !state.webhooks.enter(id) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let client = &state.webhooks;
        if let Some(_permit) = client.permit().await
            && let Err(e) = work.await
        {
            tracing::debug!(delivery = %id, error = %e, "webhook delivery attempt not made");
        }
        client.leave(id);
    });
}

/// When a delivery stored now is claimed until: its first attempt's.
pub fn claimed_until(state: &AppState) -> DateTime<Utc> {
    now() + chrono::Duration::from_std(state.webhooks.claim()).unwrap_or_default()
}

/// Claim, send and record one attempt of delivery `id`.
async fn attempt(state: &AppState, id: Uuid) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let Some(mut delivery) = store.get_delivery(id).await? else {
        return Ok(());
    };
    let at = now();
    if delivery.status != DeliveryStatus::Pending || delivery.next_at.is_some_and(|t| t > at) {
        return Ok(());
    }
    let Some(hook) = store.get_webhook(delivery.webhook_id).await? else {
        return Ok(());
    };
    if !hook.webhook.enabled {
        let why = hook
            .webhook
            .disabled_reason
            .as_deref()
            .unwrap_or("by a PATCH");
        cancel(&mut delivery, &format!("the webhook was disabled: {why}"));
        if store.update_delivery(&mut delivery).await? {
            state.metrics.webhook_delivery("cancelled");
        }
        return Ok(());
    }
    delivery.next_at = Some(claimed_until(state));
    if !store.update_delivery(&mut delivery).await? {
        // Another sender claimed it.
        return Ok(());
    }
    send_claimed(state, delivery, &Target::of(&hook)).await
}

/// Send a claimed delivery and record how it went.
async fn send_claimed(
    state: &AppState,
    mut delivery: Delivery,
    target: &Target,
) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let id = delivery.id;
    let (tried, outcome) = state.webhooks.post(target, &delivery).await;
    let delivered = outcome == Outcome::Delivered;
    let error = tried.error.clone();
    tracing::debug!(delivery = %id, webhook = %target.webhook_id, status = ?tried.status, ?outcome, "webhook attempt");
    let base = Duration::from_secs_f64(state.config.webhook_retry_secs);
    // The claim holds off every other writer but the webhook's deletion.
    let mut rounds = 0;
    loop {
        settle(&mut delivery, tried.clone(), &outcome, base);
        if store.update_delivery(&mut delivery).await? {
            break;
        }
        rounds += 1;
        match store.get_delivery(id).await? {
            Some(fresh) if rounds < 5 => delivery = fresh,
            _ => return Ok(()),
        }
    }
    state.metrics.webhook_delivery(match delivery.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Pending => "retried",
        DeliveryStatus::Failed | DeliveryStatus::Cancelled => "failed",
    });
    if state.webhooks.count_changes(target, delivered) {
        super::attempted(state, target.webhook_id, delivered, error).await;
    }
    Ok(())
}

/// Record an attempt on the delivery and decide what comes next.
fn settle(delivery: &mut Delivery, tried: DeliveryAttempt, outcome: &Outcome, base: Duration) {
    let at = tried.at;
    let failures = u32::try_from(delivery.attempts.len() + 1).unwrap_or(u32::MAX);
    delivery.attempts.push(tried);
    match outcome {
        Outcome::Delivered => finish(delivery, DeliveryStatus::Delivered, at),
        Outcome::Final => finish(delivery, DeliveryStatus::Failed, at),
        Outcome::Retry(asked) => {
            let wait = asked.unwrap_or_else(|| backoff(base, failures));
            let next = at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            if next > delivery.created_at + RETRY_FOR {
                finish(delivery, DeliveryStatus::Failed, at);
            } else {
                delivery.next_at = Some(next);
            }
        }
    }
}

fn finish(delivery: &mut Delivery, status: DeliveryStatus, at: DateTime<Utc>) {
    delivery.status = status;
    delivery.next_at = None;
    delivery.finished_at = Some(at);
}

/// A pending delivery that will not be sent.
pub fn cancel(delivery: &mut Delivery, why: &str) {
    let at = now();
    delivery.attempts.push(DeliveryAttempt {
        at,
        status: None,
        latency_ms: 0,
        error: Some(why.to_owned()),
    });
    finish(delivery, DeliveryStatus::Cancelled, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook_client::MAX_DELAY;

    #[test]
    fn retries_stop_after_a_day() {
        let at = now();
        let mut delivery = Delivery {
            id: Uuid::new_v4(),
            webhook_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            event_id: "e".into(),
            event_type: "task.finished".into(),
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_at: Some(at),
            replay_of: None,
            body: "{}".into(),
            created_at: at,
            finished_at: None,
            expires_at: at,
            revision: 0,
        };
        let tried = |at| DeliveryAttempt {
            at,
            status: Some(503),
            latency_ms: 1,
            error: Some("503".into()),
        };
        settle(
            &mut delivery,
            tried(at),
            &Outcome::Retry(None),
            Duration::from_secs(10),
        );
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert!(delivery.next_at.unwrap() > at);
        let late = at + chrono::Duration::hours(23) + chrono::Duration::minutes(30);
        settle(
            &mut delivery,
            tried(late),
            &Outcome::Retry(Some(MAX_DELAY)),
            Duration::from_secs(10),
        );
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempts.len(), 2);
        assert!(delivery.next_at.is_none());
    }
}
