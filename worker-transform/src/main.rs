//! `worker-transform`: the transform unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{shutdown_signal, start};
use oscied_protocol::unit::state::{UnitState, default_transform_dir};
use worker_transform::TransformUnit;
use worker_transform::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let Some((client, broker)) = start(&config.unit, &config) else {
        return ExitCode::FAILURE;
    };
    // The id kept across restarts; the lock lives as long as `state`, i.e. the process.
    let state_dir = match config
        .unit
        .state_dir
        .clone()
        .map_or_else(default_transform_dir, Ok)
    {
        Ok(dir) => dir,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let state = match UnitState::open(&state_dir, config.unit.unit_id.as_deref()) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut unit_config = config.unit_config();
    unit_config.unit_id = state.unit_id().to_owned();
    // Once, before any job: a kernel that cannot confine ffmpeg stops the unit here.
    if let Err(e) = oscied_protocol::sandbox::check(config.run.sandbox) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let unit = TransformUnit::new(unit_config, broker, client);
    // A failure (a node secret refused for good) is logged by `run`.
    let ended = unit.run(shutdown_signal()).await;
    drop(state);
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
