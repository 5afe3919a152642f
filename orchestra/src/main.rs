//! `orchestra`: the OSCIED REST service. See `orchestra --help` and docs/architecture.md §8.

use clap::{Parser, Subcommand};
use orchestra::config::Config;

/// The service, unless a command is given.
#[derive(Parser)]
#[command(
    name = "orchestra",
    version,
    about = "OSCIED orchestra: the REST service of the OSCIED media transcoding orchestrator",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Print a diagram's Graphviz source, drawn from the code (schematics/README.md):
    /// transform-tasks or publisher-tasks, the task state machines.
    Diagram { name: String },
}

/// glibc raises its mmap threshold to the size of the last large block freed, so after the
/// first argon2 check (19 MiB) those blocks come from per-thread arenas and stay resident in
/// each arena a thread wanders to: a few hundred MB with only two checks at a time. A fixed
/// threshold keeps blocks this large mmapped, and freeing them returns them to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_blocks_mmapped() {
    // SAFETY: mallopt only sets an allocator parameter; called once, at start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_blocks_mmapped() {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Diagram { name }) = cli.command {
        return match orchestra::diagram::render(&name) {
            Some(dot) => {
                print!("{dot}");
                std::process::ExitCode::SUCCESS
            }
            None => {
                let known: Vec<&str> = orchestra::diagram::DIAGRAMS
                    .iter()
                    .map(|d| d.name)
                    .collect();
                eprintln!(
                    "orchestra: no diagram {name:?}; one of: {}",
                    known.join(", ")
                );
                std::process::ExitCode::FAILURE
            }
        };
    }
    keep_large_blocks_mmapped();
    let config = cli.config;
    orchestra::startup::init_tracing(config.log_format);
    match orchestra::startup::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Through the log, so in JSON format this line is JSON too.
            tracing::error!("orchestra: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
