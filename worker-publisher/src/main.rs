//! `worker-publisher`: the publisher unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{shutdown_signal, start};
use oscied_protocol::unit::state::UnitState;
use worker_publisher::PublisherUnit;
use worker_publisher::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let Some((client, broker)) = start(&config.unit, &config) else {
        return ExitCode::FAILURE;
    };
    // The id kept across restarts; the lock lives as long as `state`, i.e. the process.
    let state_dir = config
        .unit
        .state_dir
        .clone()
        .unwrap_or_else(|| config.www_root.join(".oscied"));
    let state = match UnitState::open(&state_dir, config.unit.unit_id.as_deref()) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut unit_config = config.unit_config();
    unit_config.unit_id = state.unit_id().to_owned();
    // Creates the www root when missing, and fails on a taken port.
    let unit = match PublisherUnit::bind(unit_config, broker, client).await {
        Ok(unit) => unit,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // A failure (a node secret refused for good) is logged by `run`.
    let ended = unit.run(shutdown_signal()).await;
    drop(state);
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
