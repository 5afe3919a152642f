//! `orchestra`: the OSCIED REST service. See `orchestra --help` and DESIGN.md §8.

use clap::Parser;
use orchestra::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    orchestra::startup::init_tracing(config.log_format);
    match orchestra::startup::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestra: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
