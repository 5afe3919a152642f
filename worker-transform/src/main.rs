//! `worker-transform`: the transform unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{shutdown_signal, start};
use worker_transform::TransformUnit;
use worker_transform::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let Some((client, broker)) = start(&config.unit, &config) else {
        return ExitCode::FAILURE;
    };
    // Once, before any job: a kernel that cannot confine ffmpeg stops the unit here.
    if let Err(e) = oscied_protocol::sandbox::check(config.run.sandbox) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let unit = TransformUnit::new(config.unit_config(), broker, client);
    // A failure (a node secret refused for good) is logged by `run`.
    match unit.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
