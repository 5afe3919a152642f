//! Webhooks (docs/architecture.md §17): a user's subscriptions to the live events
//! (`/api/v1/webhooks`), and a task's `callback_url`, which is a subscription to that
//! task's events. Each event a subscription's owner may see (the rule of the event stream)
//! and asked for becomes a stored [`Delivery`], which [`send`] POSTs, signed, until the
//! receiver takes it or a day has passed.
//!
//! Events are matched on the replica that emitted them ([`Hub::take_own`]), each once in
//! the cluster. The enabled subscriptions are kept in the webhook client for [`FRESH`]: one
//! made or changed on another replica is matched there within that much.
//!
//! [`Hub::take_own`]: crate::events::Hub::take_own
//! [`FRESH`]: crate::webhook_client::FRESH

pub mod send;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, EventFilter, EventType};
use crate::models::{
    Delivery, DeliveryFilter, DeliveryStatus, ListOptions, Page, Webhook, WebhookFilter,
    WebhookRecord, now,
};
use crate::state::AppState;
use crate::store::backoff;
use crate::webhook_client::{Sub, Target};

/// Subscriptions per account (a task's callback does not count).
const MAX_PER_USER: u64 = 50;
/// Deliveries are forgotten this long after they were made.
const KEPT: chrono::Duration = chrono::Duration::days(3);
/// Events waiting to be matched while the store is slow.
const BACKLOG: usize = 50_000;
/// The event types of a task's `callback_url`.
const CALLBACK_EVENTS: [EventType; 3] = [
    EventType::TaskCreated,
    EventType::TaskStatus,
    EventType::TaskFinished,
];

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: `http(s)://`, not a loopback, link-local or private address
    /// (unless the operator allows it), at most 2048 bytes. Redirects are not followed.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// Event types (`task.finished`) or subjects (`task`, `media`, `unit`); empty or absent:
    /// every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// The signing secret (16 to 256 visible ASCII characters); absent: one is generated.
    /// Answered once, in this request's answer.
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
}

/// `PATCH /webhooks/{id}`: what is given changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `true` starts a disabled webhook again (its failure count back to 0); `false` stops it.
    pub enabled: Option<bool>,
}

fn event_types(words: &[String]) -> ApiResult<Vec<String>> {
    let mut kept = BTreeSet::new();
    for (i, word) in words.iter().enumerate() {
        if EventType::named(word).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::invalid_field(
                format!("events[{i}]"),
                format!(
                    "no event type or subject {word:?}: use one of {}, or task, media, unit",
                    known.join(", ")
                ),
            ));
        }
        kept.insert(word.clone());
    }
    Ok(kept.into_iter().collect())
}

fn filter_of(webhook: &Webhook) -> EventFilter {
    let mut types: Vec<EventType> = webhook
        .events
        .iter()
        .filter_map(|word| EventType::named(word))
        .flatten()
        .collect();
    types.sort_by_key(|t| t.as_str());
    types.dedup();
    EventFilter {
        types,
        task_id: webhook.task_id,
        media_id: None,
    }
}

async fn check_url(state: &AppState, field: &str, url: &str) -> ApiResult<String> {
    state
        .webhooks
        .targets()
        .check(url)
        .await
        .map(|url| url.to_string())
        .map_err(|why| ApiError::invalid_field(field, format!("{url:?}: {why}")))
}

fn check_secret(field: &str, secret: Option<String>) -> ApiResult<(String, bool)> {
    match secret {
        None => Ok((
            format!(
                "whsec_{}{}",
                Uuid::new_v4().simple(),
                Uuid::new_v4().simple()
            ),
            true,
        )),
        Some(secret)
            if (16..=256).contains(&secret.len())
                && secret.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok((secret, false))
        }
        Some(_) => Err(ApiError::invalid_field(
            field,
            "a secret is 16 to 256 visible ASCII characters (no spaces)",
        )),
    }
}

fn record(
    user_id: Uuid,
    url: String,
    events: Vec<String>,
    task_id: Option<Uuid>,
    key: String,
) -> WebhookRecord {
    let at = now();
    WebhookRecord {
        webhook: Webhook {
            id: Uuid::new_v4(),
            user_id,
            url,
            events,
            task_id,
            enabled: true,
            disabled_reason: None,
            failures: 0,
            created_at: at,
            updated_at: at,
            secret: None,
            revision: 0,
        },
        signing_key: key,
    }
}

/// Register a subscription; the answer carries its secret, this once.
pub async fn create(state: &AppState, caller: &Caller, new: NewWebhook) -> ApiResult<Webhook> {
    let user = caller.require_user()?;
    let events = event_types(&new.events)?;
    let (key, _) = check_secret("secret", new.secret)?;
    let url = check_url(state, "url", &new.url).await?;
    let filter = WebhookFilter {
        user_id: Some(user.id),
        task_id: Some(None),
        enabled: None,
    };
    let held = state
        .store
        .list_webhooks(&filter, &ListOptions::count_only())
        .await?
        .total;
    if held >= MAX_PER_USER {
        return Err(ApiError::invalid(format!(
            "an account may hold at most {MAX_PER_USER} webhooks: delete one first"
        )));
    }
    let record = record(user.id, url, events, None, key);
    state.store.create_webhook(&record).await?;
    state.webhooks.changed(None);
    tracing::info!(webhook = %record.webhook.id, user = %user.id, "webhook registered");
    Ok(shown_once(record))
}

fn shown_once(record: WebhookRecord) -> Webhook {
    Webhook {
        secret: Some(record.signing_key),
        ..record.webhook
    }
}

/// A task's `callback_url` and `callback_secret`, checked before anything is written.
pub struct Callback {
    url: String,
    key: String,
    generated: bool,
}

/// Check a task's callback fields (None without a URL).
pub async fn callback(
    state: &AppState,
    url: Option<String>,
    secret: Option<String>,
) -> ApiResult<Option<Callback>> {
    let Some(url) = url else {
        if secret.is_some() {
            return Err(ApiError::invalid_field(
                "callback_secret",
                "a callback_secret without a callback_url",
            ));
        }
        return Ok(None);
    };
    let url = check_url(state, "callback_url", &url).await?;
    let (key, generated) = check_secret("callback_secret", secret)?;
    Ok(Some(Callback {
        url,
        key,
        generated,
    }))
}

impl Callback {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Store the task's subscription (before the task, so that its first event is sent);
    /// the secret to answer once when it was generated.
    pub async fn register(
        self,
        state: &AppState,
        user_id: Uuid,
        task_id: Uuid,
    ) -> ApiResult<Option<String>> {
        let events = CALLBACK_EVENTS.iter().map(|t| t.as_str().to_owned());
        let record = record(user_id, self.url, events.collect(), Some(task_id), self.key);
        state.store.create_webhook(&record).await?;
        state.webhooks.changed(Some(task_id));
        Ok(self.generated.then_some(record.signing_key))
    }
}

/// A webhook the caller may see (its owner's, any for admins); others are a 404.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<WebhookRecord> {
    match state.store.get_webhook(id).await? {
        Some(hook) if caller.can_see(Some(hook.webhook.user_id)) => Ok(hook),
        _ => Err(ApiError::not_found("webhook", id)),
    }
}

pub async fn get(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Webhook> {
    Ok(visible(state, caller, id).await?.webhook)
}

/// The caller's webhooks (anyone's for admins, `owner` narrowing); `task_id`: that task's
/// callback.
pub async fn list(
    state: &AppState,
    owner: Option<Option<Uuid>>,
    task_id: Option<Uuid>,
    opts: &ListOptions,
) -> ApiResult<Page<Webhook>> {
    let Some(user_id) = owner else {
        return Ok(Page::empty());
    };
    let filter = WebhookFilter {
        user_id,
        task_id: task_id.map(Some),
        enabled: None,
    };
    let page = state.store.list_webhooks(&filter, opts).await?;
    Ok(Page {
        total: page.total,
        items: page.items.into_iter().map(|r| r.webhook).collect(),
    })
}

/// Apply `change` to the webhook, fenced: on a conflict it is read and changed again.
async fn mutate(
    state: &AppState,
    id: Uuid,
    mut change: impl FnMut(&mut Webhook) -> bool,
) -> ApiResult<Option<WebhookRecord>> {
    for round in 0..20 {
        let Some(mut hook) = state.store.get_webhook(id).await? else {
            return Ok(None);
        };
        if !change(&mut hook.webhook) {
            return Ok(Some(hook));
        }
        hook.webhook.updated_at = now();
        if state.store.update_webhook(&mut hook).await? {
            state.webhooks.changed(hook.webhook.task_id);
            return Ok(Some(hook));
        }
        tokio::time::sleep(backoff(round)).await;
    }
    Err(ApiError::conflict(format!(
        "webhook {id} kept changing underneath; try again"
    )))
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    patch: WebhookPatch,
) -> ApiResult<Webhook> {
    let found = visible(state, caller, id).await?;
    let events = patch.events.as_deref().map(event_types).transpose()?;
    if found.webhook.task_id.is_some() && events.is_some() {
        return Err(ApiError::invalid_field(
            "events",
            "a task's callback receives that task's events: its events cannot change",
        ));
    }
    let url = match &patch.url {
        Some(url) => Some(check_url(state, "url", url).await?),
        None => None,
    };
    let changed = mutate(state, id, |hook| {
        if let Some(url) = &url {
            hook.url.clone_from(url);
        }
        if let Some(events) = &events {
            hook.events.clone_from(events);
        }
        match patch.enabled {
            Some(true) => {
                hook.enabled = true;
                hook.disabled_reason = None;
                hook.failures = 0;
            }
            Some(false) if hook.enabled => {
                hook.enabled = false;
                hook.disabled_reason = Some("disabled by a PATCH".into());
            }
            _ => {}
        }
        true
    })
    .await?;
    changed
        .map(|hook| hook.webhook)
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

/// Remove a webhook and its deliveries.
pub async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    let found = visible(state, caller, id).await?;
    state.store.delete_webhook(id).await?;
    state.webhooks.changed(found.webhook.task_id);
    Ok(())
}

/// A deleted user's webhooks go with it, their deliveries too.
pub async fn forget_user(state: &AppState, user_id: Uuid) -> ApiResult<()> {
    let filter = WebhookFilter {
        user_id: Some(user_id),
        ..WebhookFilter::default()
    };
    let hooks = state
        .store
        .list_webhooks(&filter, &ListOptions::scan(100_000))
        .await?;
    for hook in hooks.items {
        state.store.delete_webhook(hook.webhook.id).await?;
        state.webhooks.changed(hook.webhook.task_id);
    }
    Ok(())
}

/// A webhook's deliveries, newest first by default.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    status: Option<DeliveryStatus>,
    opts: &ListOptions,
) -> ApiResult<Page<Delivery>> {
    visible(state, caller, id).await?;
    let filter = DeliveryFilter {
        webhook_id: Some(id),
        status,
        due_before: None,
    };
    Ok(state.store.list_deliveries(&filter, opts).await?)
}

pub async fn delivery(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    delivery_id: Uuid,
) -> ApiResult<Delivery> {
    visible(state, caller, id).await?;
    of_webhook(state, id, delivery_id).await
}

/// Delivery `delivery_id` of webhook `id`; another webhook's is not found either.
async fn of_webhook(state: &AppState, id: Uuid, delivery_id: Uuid) -> ApiResult<Delivery> {
    match state.store.get_delivery(delivery_id).await? {
        Some(d) if d.webhook_id == id => Ok(d),
        _ => Err(ApiError::not_found("delivery", delivery_id)),
    }
}

/// Send a delivery's event again, as a new delivery (its own id, `replay_of` the first).
pub async fn replay(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    delivery_id: Uuid,
) -> ApiResult<Delivery> {
    let hook = visible(state, caller, id).await?;
    if !hook.webhook.enabled {
        return Err(ApiError::illegal_state(format!(
            "webhook {id} is disabled ({}): enable it with PATCH {{\"enabled\": true}} first",
            hook.webhook
                .disabled_reason
                .as_deref()
                .unwrap_or("by a PATCH")
        )));
    }
    let first = of_webhook(state, id, delivery_id).await?;
    let at = now();
    let again = Delivery {
        id: Uuid::new_v4(),
        status: DeliveryStatus::Pending,
        attempts: vec![],
        next_at: Some(at),
        replay_of: Some(first.id),
        created_at: at,
        finished_at: None,
        expires_at: at + KEPT,
        revision: 0,
        ..first
    };
    state.store.create_delivery(&again).await?;
    send::spawn_attempt(state, again.id);
    Ok(again)
}

/// After an attempt: a delivered one clears the webhook's failure count; a failed one adds
/// to it, and past `OSCIED_WEBHOOK_MAX_FAILURES` in a row disables the webhook.
pub(crate) async fn attempted(state: &AppState, id: Uuid, delivered: bool, error: Option<String>) {
    let max = state.config.webhook_max_failures;
    let mut disabled = false;
    let changed = mutate(state, id, |hook| {
        disabled = false;
        if delivered {
            let was = hook.failures;
            hook.failures = 0;
            return was > 0;
        }
        hook.failures = hook.failures.saturating_add(1);
        if hook.enabled && hook.failures >= max {
            hook.enabled = false;
            hook.disabled_reason = Some(format!(
                "{} attempts failed in a row (OSCIED_WEBHOOK_MAX_FAILURES), the last: {}",
                hook.failures,
                error.as_deref().unwrap_or("no answer")
            ));
            disabled = true;
        }
        true
    })
    .await;
    match changed {
        Ok(Some(hook)) if disabled => tracing::warn!(
            webhook = %id,
            user = %hook.webhook.user_id,
            reason = hook.webhook.disabled_reason.as_deref().unwrap_or(""),
            "webhook disabled"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(webhook = %id, error = %e.message, "webhook failure count not kept")
        }
    }
}

/// The subscriptions that may want `event`: every user's (cached), and its task's callbacks.
async fn candidates(state: &AppState, event: &Event) -> Vec<Sub> {
    let client = &state.webhooks;
    let subscriptions = match client.subscriptions() {
        Some(subs) => subs,
        None => {
            let subs = Arc::new(load(state, Some(None)).await);
            client.keep_subscriptions(subs.clone());
            subs
        }
    };
    let mut found: Vec<Sub> = subscriptions.iter().cloned().collect();
    // Callbacks take the events that carry the task, which says whether it has one: no
    // lookup for the tasks (nearly all) that have none.
    let has_callback = event.data["task"]["callback_url"].is_string();
    if let Some(task) = event.task_id.filter(|_| has_callback) {
        let callbacks = match client.callbacks(task) {
            Some(subs) => subs,
            None => {
                let subs = Arc::new(load(state, Some(Some(task))).await);
                client.keep_callbacks(task, subs.clone());
                subs
            }
        };
        found.extend(callbacks.iter().cloned());
    }
    found
}

/// The enabled webhooks of `task_id` (see [`WebhookFilter`]), as matched.
async fn load(state: &AppState, task_id: Option<Option<Uuid>>) -> Vec<Sub> {
    let filter = WebhookFilter {
        user_id: None,
        task_id,
        enabled: Some(true),
    };
    let hooks = match state
        .store
        .list_webhooks(&filter, &ListOptions::scan(100_000))
        .await
    {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(error = %e, "webhooks not read: events are not delivered until the store is back");
            return vec![];
        }
    };
    let mut admins: HashMap<Uuid, bool> = HashMap::new();
    let mut subs = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let owner = hook.webhook.user_id;
        let sees_all = match admins.get(&owner) {
            Some(admin) => *admin,
            None => {
                let admin = matches!(
                    state.store.get_user(owner).await,
                    Ok(Some(user)) if user.user.admin_platform
                );
                admins.insert(owner, admin);
                admin
            }
        };
        subs.push(Sub {
            target: Target::of(&hook),
            owner,
            sees_all,
            filter: filter_of(&hook.webhook),
        });
    }
    subs
}

/// Store one delivery per subscription that wants `event`, and send each at once.
async fn fan_in(state: &AppState, event: &Event) {
    let wanted: Vec<Sub> = candidates(state, event)
        .await
        .into_iter()
        .filter(|sub| sub.wants(event))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Ok(body) = serde_json::to_string(event) else {
        return;
    };
    let at = now();
    for sub in wanted {
        let delivery = Delivery {
            id: Uuid::new_v4(),
            webhook_id: sub.target.webhook_id,
            user_id: sub.owner,
            event_id: event.id.clone(),
            event_type: event.kind.as_str().to_owned(),
            status: DeliveryStatus::Pending,
            attempts: vec![],
            // Stored claimed by this replica for its first attempt, sent at once.
            next_at: Some(send::claimed_until(state)),
            replay_of: None,
            body: body.clone(),
            created_at: at,
            finished_at: None,
            expires_at: at + KEPT,
            revision: 0,
        };
        if !keep(state, &delivery).await {
            tracing::warn!(event = %event.id, webhook = %sub.target.webhook_id, "webhook delivery lost: the store is away");
            continue;
        }
        send::spawn_first(state, delivery, sub.target);
    }
}

/// Store a new delivery, retrying for about 30 s while the store is away.
async fn keep(state: &AppState, delivery: &Delivery) -> bool {
    let mut pause = Duration::from_millis(200);
    loop {
        match state.store.create_delivery(delivery).await {
            Ok(()) => return true,
            Err(e) if pause < Duration::from_secs(30) => {
                tracing::debug!(error = %e, "webhook delivery not stored yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(_) => return false,
        }
    }
}

/// Match this replica's events to the subscriptions, in order, until the process ends.
pub fn spawn(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let mut own = state.events.take_own(BACKLOG)?;
    Some(tokio::spawn(async move {
        while let Some(event) = own.recv().await {
            fan_in(&state, &event).await;
        }
    }))
}

/// Forget deliveries past their keeping time (the loops' leader, now and then).
pub async fn sweep(state: &AppState) {
    match state.store.delete_expired_deliveries(now()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(forgotten = n, "old webhook deliveries forgotten"),
        Err(e) => tracing::debug!(error = %e, "webhook deliveries not swept"),
    }
}
