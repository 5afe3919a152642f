//! What every request handler shares.

use std::sync::Arc;

use oscied_protocol::Broker;

use crate::config::Config;
use crate::events::Hub;
use crate::logins::{Argon, LoginLimits};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::secrets::{Secrets, VerifiedCache};
use crate::storage::Storage;
use crate::store::Store;
use crate::thumbnails::Thumbnailer;
use crate::totals::Totals;
use crate::webhook_client::WebhookClient;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub storage: Storage,
    pub secrets: Arc<Secrets>,
    pub config: Arc<Config>,
    pub verified: Arc<VerifiedCache>,
    /// Every argon2 hashing and verification goes through it (bounded, off the async threads).
    pub argon: Arc<Argon>,
    /// Failed-login buckets per account and per client address.
    pub logins: Arc<LoginLimits>,
    /// Messages to the broker, and which this process is sending right now.
    pub outbox: Arc<Outbox>,
    /// This process among the replicas sharing the store: the holder name of its leases.
    pub replica: Arc<str>,
    /// Live events: emitted after each winning write, streamed, shared with the replicas.
    pub events: Arc<Hub>,
    /// Webhook subscriptions as matched, and the sender of their deliveries.
    pub webhooks: Arc<WebhookClient>,
    /// Thumbnail making: bounded runs, one per media, recent failures.
    pub thumbnailer: Arc<Thumbnailer>,
    /// What `GET /metrics` shows: this process's counters, the store's gauges.
    pub metrics: Arc<Metrics>,
    /// Task lists' totals as last counted, while no task has changed (MongoDB).
    pub totals: Arc<Totals>,
}
