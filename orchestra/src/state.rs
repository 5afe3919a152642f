//! What every request handler shares.

use std::sync::Arc;

use oscied_protocol::Broker;

use crate::auth::{Secrets, VerifiedCache};
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::lifecycle::TaskLocks;
use crate::logins::{Argon, LoginLimits};
use crate::storage::Storage;
use crate::store::Store;
use crate::thumbnails::Thumbnailer;

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
    /// One task's read-check-write at a time.
    pub locks: Arc<TaskLocks>,
    /// One media's read-modify-write at a time (a publication's URL, a metadata patch, a
    /// delete). Always taken after a task's lock, never before one.
    pub media_locks: Arc<TaskLocks>,
    pub dispatcher: Arc<Dispatcher>,
    /// Thumbnail making: bounded runs, one per media, recent failures.
    pub thumbnailer: Arc<Thumbnailer>,
}
