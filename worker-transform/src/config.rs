//! The binary's flags, each with an `OSCIED_*` environment fallback (DESIGN.md §8).

use std::path::PathBuf;

use clap::Parser;
pub use oscied_protocol::unit::cli::{LogFormat, Queues, redact_uri};
use oscied_protocol::unit::cli::{parse_queues, parse_unit_id};

use crate::UnitConfig;

/// The OSCIED transform unit: consumes transform jobs and runs ffmpeg.
#[derive(Clone, Parser)]
#[command(name = "worker-transform", version, about)]
pub struct Config {
    /// The orchestra's URL (with or without `/api/v1`), e.g. http://10.0.0.1:5000.
    #[arg(long, env = "OSCIED_API_URL")]
    pub api_url: String,
    /// The node secret the orchestra was given (HTTP Basic `node:<secret>`).
    #[arg(long, env = "OSCIED_NODE_SECRET", hide_env_values = true)]
    pub node_secret: String,
    /// Where this host mounts the shared storage tree.
    #[arg(long, env = "OSCIED_STORAGE_ROOT")]
    pub storage_root: PathBuf,
    /// The RabbitMQ URI, e.g. amqp://user:pass@10.0.0.1:5672/%2f.
    #[arg(long, env = "OSCIED_AMQP_URI", hide_env_values = true)]
    pub amqp_uri: String,
    /// The queues to consume, comma separated.
    #[arg(long, env = "OSCIED_QUEUES", default_value = "transform", value_parser = parse_queues)]
    pub queues: Queues,
    /// Jobs run at once.
    #[arg(long, env = "OSCIED_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How the unit names itself to the orchestra; a fresh UUID v4 when unset.
    #[arg(long, env = "OSCIED_UNIT_ID", value_parser = parse_unit_id)]
    pub unit_id: Option<String>,
    /// Seconds between unit heartbeats.
    #[arg(long, env = "OSCIED_HEARTBEAT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
    /// Log lines for people or for machines.
    #[arg(long, env = "OSCIED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl Config {
    pub fn unit_config(&self) -> UnitConfig {
        let mut unit = UnitConfig::new(self.storage_root.clone());
        if let Some(id) = &self.unit_id {
            unit.unit_id = id.clone();
        }
        unit.queues = self.queues.0.clone();
        unit.concurrency = self.concurrency;
        unit.heartbeat_secs = self.heartbeat_secs;
        unit
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the node secret, nor the AMQP password.
        f.debug_struct("Config")
            .field("api_url", &self.api_url)
            .field("node_secret", &"<hidden>")
            .field("storage_root", &self.storage_root)
            .field("amqp_uri", &redact_uri(&self.amqp_uri))
            .field("queues", &self.queues.0)
            .field("concurrency", &self.concurrency)
            .field("unit_id", &self.unit_id)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("log_format", &self.log_format)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 9] = [
        "worker-transform",
        "--api-url",
        "http://127.0.0.1:5000",
        "--node-secret",
        "s3cret-node",
        "--storage-root",
        "/srv/storage",
        "--amqp-uri",
        "amqp://guest:hunter2@127.0.0.1:5672/%2f",
    ];

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(REQUIRED).unwrap();
        let unit = c.unit_config();
        assert_eq!(unit.queues, vec!["transform"]);
        assert_eq!(unit.concurrency, 1);
        assert_eq!(unit.heartbeat_secs, 5);
        assert!(uuid::Uuid::parse_str(&unit.unit_id).is_ok());
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn flags() {
        let mut args = REQUIRED.to_vec();
        args.extend([
            "--queues",
            "transform, gpu",
            "--concurrency",
            "3",
            "--unit-id",
            "host-1",
            "--log-format",
            "json",
        ]);
        let c = Config::try_parse_from(args).unwrap();
        let unit = c.unit_config();
        assert_eq!(unit.queues, vec!["transform", "gpu"]);
        assert_eq!(unit.concurrency, 3);
        assert_eq!(unit.unit_id, "host-1");
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn refuses_bad_values() {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--queues", "a b"),
            ("--queues", " , "),
            ("--unit-id", "a/b"),
            ("--heartbeat-secs", "0"),
        ] {
            let mut args = REQUIRED.to_vec();
            args.extend([flag, value]);
            assert!(Config::try_parse_from(args).is_err(), "{flag} {value}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config::try_parse_from(REQUIRED).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret-node"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
            "{text}"
        );
    }
}
