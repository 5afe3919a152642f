//! `worker-publisher`: the publisher unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{Started, exit_code, shutdown_signal, start};
use worker_publisher::PublisherUnit;
use worker_publisher::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // The id travels with the files it serves: by default the state dir is in the web root.
    let in_www_root = || Ok(config.www_root.join(".oscied"));
    let Some(Started {
        client,
        broker,
        state,
    }) = start(&config.unit, in_www_root, &config)
    else {
        return ExitCode::FAILURE;
    };
    let mut unit_config = config.unit_config();
    unit_config.unit_id = state.unit_id().to_owned();
    // Creates the www root when missing, and fails on a taken port.
    let unit = match PublisherUnit::bind(unit_config, broker, client).await {
        Ok(unit) => unit.with_metrics_token(config.unit.metrics_token.clone()),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let ended = unit.run(shutdown_signal()).await;
    // The state dir stays locked until the unit has stopped.
    drop(state);
    exit_code(ended)
}
