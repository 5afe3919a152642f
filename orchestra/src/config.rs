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

    /// Secret of the `root` account. Unset: generated once, printed, kept in the data dir.
    #[arg(long, env = "OSCIED_ROOT_SECRET", hide_env_values = true)]
    pub root_secret: Option<String>,

    /// Secret units authenticate with as `node`. Unset: generated and kept in the data dir.
    #[arg(long, env = "OSCIED_NODE_SECRET", hide_env_values = true)]
    pub node_secret: Option<String>,

    /// Largest accepted upload, in bytes (larger ones answer 413).
    #[arg(long, env = "OSCIED_MAX_UPLOAD_BYTES", default_value_t = 16 * 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Lifetime of bearer tokens from POST /auth/token, in seconds.
    #[arg(long, env = "OSCIED_TOKEN_TTL", default_value_t = 12 * 3600)]
    pub token_ttl: u64,

    /// Log format.
    #[arg(long, env = "OSCIED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl Config {
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
        config
    }
}
