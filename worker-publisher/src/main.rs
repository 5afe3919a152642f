//! `worker-publisher`: the publisher unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{shutdown_signal, start};
use worker_publisher::PublisherUnit;
use worker_publisher::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let Some((client, broker)) = start(&config.unit, &config) else {
        return ExitCode::FAILURE;
    };
    // Creates the www root when missing, and fails on a taken port.
    let unit = match PublisherUnit::bind(config.unit_config(), broker, client).await {
        Ok(unit) => unit,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // A failure (a node secret refused for good) is logged by `run`.
    match unit.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
