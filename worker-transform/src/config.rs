//! The binary's flags, each with an `OSCIED_*` environment fallback (DESIGN.md §8).

use clap::Parser;
use oscied_protocol::node::UnitKind;
use oscied_protocol::unit::cli::kind_flags;
pub use oscied_protocol::unit::cli::{LogFormat, Queues, UnitArgs, redact_uri};

use crate::UnitConfig;

/// The OSCIED transform unit: consumes transform jobs and runs ffmpeg.
#[derive(Clone, Parser)]
#[command(name = "worker-transform", version, about)]
#[command(mut_args = kind_flags(UnitKind::Transform))]
pub struct Config {
    #[command(flatten)]
    pub unit: UnitArgs,
}

impl Config {
    pub fn unit_config(&self) -> UnitConfig {
        let mut unit = UnitConfig::new(self.unit.storage_root.clone());
        if let Some(id) = &self.unit.unit_id {
            unit.unit_id = id.clone();
        }
        unit.queues = self.unit.queues(UnitKind::Transform);
        unit.concurrency = self.unit.concurrency;
        unit.heartbeat_secs = self.unit.heartbeat_secs;
        unit
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unit
            .debug_fields(&mut f.debug_struct("Config"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

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
        assert_eq!(c.unit.log_format, LogFormat::Human);
    }

    #[test]
    fn help_names_the_default_queue() {
        let help = Config::command().render_long_help().to_string();
        assert!(help.contains("[default: transform]"), "{help}");
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
        assert_eq!(c.unit.log_format, LogFormat::Json);
    }

    // The common flags' values and the redaction are the protocol's tests (`UnitArgs`).
    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", Config::try_parse_from(REQUIRED).unwrap());
        assert!(text.starts_with("Config { api_url:"), "{text}");
        assert!(
            !text.contains("s3cret-node") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
