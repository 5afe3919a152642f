//! What every request handler shares.

use std::sync::Arc;

use oscied_protocol::Broker;

use crate::auth::{Secrets, VerifiedCache};
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::lifecycle::TaskLocks;
use crate::storage::Storage;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub storage: Storage,
    pub secrets: Arc<Secrets>,
    pub config: Arc<Config>,
    pub verified: Arc<VerifiedCache>,
    pub locks: Arc<TaskLocks>,
    pub dispatcher: Arc<Dispatcher>,
}
