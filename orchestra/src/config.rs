//! Command-line flags with `OSCIED_*` environment fallbacks (DESIGN.md §8).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "orchestra",
    version,
    about = "OSCIED orchestra: the REST service of the OSCIED media transcoding orchestrator"
)]
pub struct Config {
    /// HTTP listener.
    #[arg(long, env = "OSCIED_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// SQLite file, root and node secrets, default storage root.
    #[arg(long, env = "OSCIED_DATA_DIR", default_value = "./oscied-data")]
    pub data_dir: PathBuf,

    /// Shared storage tree (uploads/, medias/, tmp/). Default: <data dir>/storage.
    #[arg(long, env = "OSCIED_STORAGE_ROOT")]
    pub storage_root: Option<PathBuf>,

    /// MongoDB connection string; unset = the embedded SQLite store.
    #[arg(long, env = "OSCIED_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,

    /// RabbitMQ connection string (`amqp://user:pass@host:5672/vhost`); unset = in-process
    /// queues and in-process units (standalone).
    #[arg(long, env = "OSCIED_AMQP_URI", hide_env_values = true)]
    pub amqp_uri: Option<String>,

    /// Transform tasks the in-process unit of standalone mode runs at once.
    #[arg(long, env = "OSCIED_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,

    /// Standalone mode's in-process publisher: where it serves published medias.
    #[arg(
        long,
        env = "OSCIED_PUBLISHER_LISTEN",
        default_value = "127.0.0.1:5080"
    )]
    pub publisher_listen: SocketAddr,

    /// Standalone mode's in-process publisher: its web root. Default: <data dir>/www.
    #[arg(long, env = "OSCIED_WWW_ROOT")]
    pub www_root: Option<PathBuf>,

    /// Standalone mode's in-process publisher: the base URL clients reach it at (behind a
    /// proxy, say). Default: `http://<publisher listen address>`.
    #[arg(long, env = "OSCIED_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds a unit may stay silent about a running task before the task is taken back
    /// and re-queued with attempt + 1.
    #[arg(long, env = "OSCIED_TASK_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=86400))]
    pub task_lease_secs: u64,

    /// Standalone mode: on SIGTERM or SIGINT the in-process units take no new job, then with
    /// 0 hand their running tasks back at once (queued again for the next start), or with N
    /// let them finish for up to N seconds first; then the orchestra stops.
    #[arg(long, env = "OSCIED_DRAIN_SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub drain_secs: u64,

    /// Seconds after its last heartbeat an offline unit is dropped from `GET /units` (and
    /// the store), unless it still holds a running task or a publication; 0: never.
    #[arg(long, env = "OSCIED_UNIT_FORGET_SECS", default_value_t = 86400)]
    pub unit_forget_secs: u64,

    /// Attempts a task gets (lost leases included; hand-backs by stopping units are not
    /// counted) before it ends in FAILURE.
    #[arg(long, env = "OSCIED_TASK_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub task_max_attempts: u32,

    /// Secret of the `root` account. Unset: generated once, printed, kept in the data dir.
    #[arg(long, env = "OSCIED_ROOT_SECRET", hide_env_values = true)]
    pub root_secret: Option<String>,

    /// Secret units authenticate with as `node`. Unset: generated and kept in the data dir.
    #[arg(long, env = "OSCIED_NODE_SECRET", hide_env_values = true)]
    pub node_secret: Option<String>,

    /// Largest accepted upload (larger ones answer 413): bytes, or with a unit such as
    /// `500M`, `2GiB`, `16G` (powers of 1024).
    #[arg(long, env = "OSCIED_MAX_UPLOAD_BYTES", default_value = "16GiB", value_parser = parse_size)]
    pub max_upload_bytes: u64,

    /// Seconds a client has to send a request's headers (and a kept-alive connection may sit
    /// idle) before the connection is closed.
    #[arg(long, env = "OSCIED_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,

    /// Seconds a request body may send nothing before the request fails; a stalled upload
    /// is cut and its partial file removed.
    #[arg(long, env = "OSCIED_BODY_IDLE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_idle_secs: u64,

    /// Lifetime of bearer tokens from POST /auth/token, in seconds.
    #[arg(long, env = "OSCIED_TOKEN_TTL", default_value_t = 12 * 3600)]
    pub token_ttl: u64,

    /// Argon2 checks and hashings run at once (each holds 19 MiB); others wait. Default: the
    /// number of cores.
    #[arg(long, env = "OSCIED_ARGON2_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub argon2_concurrency: Option<u32>,

    /// Failed logins one account (a mail, root) may have in a row before it is limited.
    #[arg(long, env = "OSCIED_LOGIN_ACCOUNT_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_account_burst: u32,

    /// Then one more failed login per this many seconds, per account.
    #[arg(long, env = "OSCIED_LOGIN_ACCOUNT_REFILL_SECS", default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub login_account_refill_secs: u64,

    /// Failed logins one client address (IPv6: a /64) may have in a row before it is limited.
    #[arg(long, env = "OSCIED_LOGIN_ADDRESS_BURST", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_address_burst: u32,

    /// Then one more failed login per this many seconds, per client address.
    #[arg(long, env = "OSCIED_LOGIN_ADDRESS_REFILL_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub login_address_refill_secs: u64,

    /// Log format.
    #[arg(long, env = "OSCIED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// `OSCIED_SANDBOX` (ffprobe on uploads and, in standalone mode, the in-process unit's
    /// ffmpeg), `OSCIED_TASK_MAX_SECS` and `OSCIED_MAX_OUTPUT_BYTES` (the in-process unit).
    #[command(flatten)]
    pub run: worker_transform::config::RunArgs,
}

pub use oscied_protocol::sandbox::SandboxMode;

/// `human` or `json`, as for the units.
pub use oscied_protocol::unit::cli::LogFormat;

/// Sizes as the units take them (`500M`, `16GiB`).
pub use oscied_protocol::unit::cli::parse_size;

impl Config {
    /// The HTTP server's timeouts, shared with the in-process publisher.
    pub fn serve_limits(&self) -> oscied_protocol::http::ServeLimits {
        oscied_protocol::http::ServeLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_idle: std::time::Duration::from_secs(self.body_idle_secs),
        }
    }

    /// `OSCIED_ARGON2_CONCURRENCY`, else the number of cores.
    pub fn argon2_permits(&self) -> usize {
        self.argon2_concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            |n| n as usize,
        )
    }

    pub fn www_root(&self) -> PathBuf {
        self.www_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("www"))
    }

    pub fn storage_root(&self) -> PathBuf {
        self.storage_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
    }

    /// Defaults for tests and embedding: everything under `data_dir`, listening on a free port.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let mut config = Config::parse_from(["orchestra"]);
        config.data_dir = data_dir.into();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.publisher_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("16g"), Ok(16 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
