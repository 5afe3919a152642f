//! What every request handler shares.

use std::sync::Arc;

use crate::auth::{Secrets, VerifiedCache};
use crate::config::Config;
use crate::storage::Storage;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub storage: Storage,
    pub secrets: Arc<Secrets>,
    pub config: Arc<Config>,
    pub verified: Arc<VerifiedCache>,
}
