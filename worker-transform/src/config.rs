//! The binary's flags, each with an `OSCIED_*` environment fallback (docs/architecture.md §8).

use clap::Parser;
use oscied_protocol::node::UnitKind;
use oscied_protocol::sandbox::SandboxMode;
pub use oscied_protocol::unit::cli::{LogFormat, Queues, UnitArgs, redact_uri};
use oscied_protocol::unit::cli::{kind_flags, parse_size};

use crate::{TaskLimits, UnitConfig};

/// The OSCIED transform unit: consumes transform jobs and runs ffmpeg.
#[derive(Clone, Parser)]
#[command(name = "worker-transform", version, about)]
#[command(mut_args = kind_flags(UnitKind::Transform))]
pub struct Config {
    #[command(flatten)]
    pub unit: UnitArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Where the unit serves its `GET /metrics` (e.g. 0.0.0.0:9102); unset: nowhere. The
    /// unit has no other HTTP server.
    #[arg(long, env = "OSCIED_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// How ffmpeg is confined and bounded: the flags this binary shares with the orchestra, which
/// probes uploads and, in standalone mode, runs a transform unit of its own.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// `on`: ffmpeg and ffprobe run confined (Landlock, seccomp, no capabilities); the binary
    /// refuses to start on a kernel without Landlock or seccomp. `off`: unconfined, for
    /// trusted users only (logged loudly at start).
    #[arg(long, env = "OSCIED_SANDBOX", value_enum, default_value_t = SandboxMode::On)]
    pub sandbox: SandboxMode,
    /// Wall-clock seconds a transform task may run; unset: max(600, 20 × the input's duration).
    #[arg(long, env = "OSCIED_TASK_MAX_SECS",
          value_parser = clap::value_parser!(u64).range(1..=30 * 86400))]
    pub task_max_secs: Option<u64>,
    /// Bytes a transform task's output may take (all its files): bytes, or with a unit such
    /// as `500M`, `16GiB`.
    #[arg(long, env = "OSCIED_MAX_OUTPUT_BYTES", default_value = "16GiB", value_parser = parse_size)]
    pub max_output_bytes: u64,
}

impl RunArgs {
    pub fn limits(&self) -> TaskLimits {
        TaskLimits {
            max_secs: self.task_max_secs,
            max_output_bytes: self.max_output_bytes,
        }
    }
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
        unit.sandbox = self.run.sandbox;
        unit.limits = self.run.limits();
        unit.drain_secs = self.unit.drain_secs;
        unit.refused_exit_secs = self.unit.refused_exit_secs;
        unit
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unit
            .debug_fields(&mut f.debug_struct("Config"))
            .field("run", &self.run)
            .field("metrics_listen", &self.metrics_listen)
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
        assert_eq!(unit.sandbox, SandboxMode::On);
        assert_eq!(unit.limits, TaskLimits::default());
        assert_eq!(unit.limits.max_output_bytes, 16 << 30);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.unit.metrics_token, None);
    }

    #[test]
    fn metrics_listener() {
        let mut args = REQUIRED.to_vec();
        args.extend([
            "--metrics-listen",
            "127.0.0.1:9102",
            "--metrics-token",
            "t0ken",
        ]);
        let c = Config::try_parse_from(args).unwrap();
        assert_eq!(c.metrics_listen, Some(([127, 0, 0, 1], 9102).into()));
        assert_eq!(c.unit.metrics_token.as_deref(), Some("t0ken"));
        assert!(!format!("{c:?}").contains("t0ken"));
    }

    #[test]
    fn sandbox_and_limits() {
        let mut args = REQUIRED.to_vec();
        args.extend([
            "--sandbox",
            "off",
            "--task-max-secs",
            "90",
            "--max-output-bytes",
            "2M",
        ]);
        let unit = Config::try_parse_from(args).unwrap().unit_config();
        assert_eq!(unit.sandbox, SandboxMode::Off);
        assert_eq!(unit.limits.max_secs, Some(90));
        assert_eq!(unit.limits.max_output_bytes, 2 << 20);
        for (flag, value) in [
            ("--sandbox", "maybe"),
            ("--task-max-secs", "0"),
            ("--max-output-bytes", "lots"),
        ] {
            let mut args = REQUIRED.to_vec();
            args.extend([flag, value]);
            assert!(Config::try_parse_from(args).is_err(), "{flag} {value}");
        }
        let help = Config::command().render_long_help().to_string();
        for var in [
            "OSCIED_SANDBOX",
            "OSCIED_TASK_MAX_SECS",
            "OSCIED_MAX_OUTPUT_BYTES",
        ] {
            assert!(help.contains(var), "{var}: {help}");
        }
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
