//! `worker-transform`: the transform unit as a process (cluster mode).

use std::process::ExitCode;

use clap::Parser;
use oscied_protocol::unit::cli::{Started, exit_code, shutdown_signal, start};
use oscied_protocol::unit::state::default_transform_dir;
use worker_transform::TransformUnit;
use worker_transform::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let Some(Started {
        client,
        broker,
        state,
    }) = start(&config.unit, default_transform_dir, &config)
    else {
        return ExitCode::FAILURE;
    };
    let mut unit_config = config.unit_config();
    unit_config.unit_id = state.unit_id().to_owned();
    // Once, before any job: a kernel that cannot confine ffmpeg stops the unit here.
    if let Err(e) = oscied_protocol::sandbox::check(config.run.sandbox) {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let unit = TransformUnit::new(unit_config, broker, client);
    // Bound before any job, so a taken port stops the unit at start.
    let metrics = match config.metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(%addr, "serving the unit's metrics at http://{addr}/metrics");
                let serve = oscied_protocol::unit::metrics::serve(
                    listener,
                    unit.metrics(),
                    config.unit.metrics_token.clone(),
                    std::future::pending(),
                );
                Some(tokio::spawn(serve))
            }
            Err(e) => {
                tracing::error!("cannot listen on {addr} (OSCIED_METRICS_LISTEN): {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let ended = unit.run(shutdown_signal()).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    // The state dir stays locked until the unit has stopped.
    drop(state);
    exit_code(ended)
}
