//! `worker-transform`: the transform unit as a process (cluster mode).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use oscied_protocol::broker::AmqpBroker;
use oscied_protocol::client::NodeClient;
use oscied_protocol::unit::cli::{init_tracing, shutdown_signal};
use worker_transform::TransformUnit;
use worker_transform::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    if !config.storage_root.is_dir() {
        tracing::error!(
            storage_root = %config.storage_root.display(),
            "OSCIED_STORAGE_ROOT is not a directory (is the shared storage mounted?)"
        );
        return ExitCode::FAILURE;
    }
    let client = match NodeClient::new(&config.api_url, &config.node_secret) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(api = %client.base(), "configuration: {config:?}");
    // Connects in the background and reconnects on its own; never fails here.
    let broker = Arc::new(AmqpBroker::connect(&config.amqp_uri));
    let unit = TransformUnit::new(config.unit_config(), broker, client);
    unit.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}
