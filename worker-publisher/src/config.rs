//! The binary's flags, each with an `OSCIED_*` environment fallback (DESIGN.md §8).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
pub use oscied_protocol::unit::cli::{LogFormat, Queues, redact_uri};
use oscied_protocol::unit::cli::{parse_queues, parse_unit_id};

use crate::PublisherConfig;

/// The OSCIED publisher unit: publishes media dirs into its web root and serves them.
#[derive(Clone, Parser)]
#[command(name = "worker-publisher", version, about)]
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
    /// The queues to consume, comma separated (the unit's own queue is consumed besides).
    #[arg(long, env = "OSCIED_QUEUES", default_value = "publisher", value_parser = parse_queues)]
    pub queues: Queues,
    /// Publications run at once.
    #[arg(long, env = "OSCIED_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How the unit names itself to the orchestra; a fresh UUID v4 when unset. Give a stable
    /// one: the unit's own queue (its unpublish jobs) is named after it.
    #[arg(long, env = "OSCIED_UNIT_ID", value_parser = parse_unit_id)]
    pub unit_id: Option<String>,
    /// Seconds between unit heartbeats.
    #[arg(long, env = "OSCIED_HEARTBEAT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
    /// Log lines for people or for machines.
    #[arg(long, env = "OSCIED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// The HTTP listener serving the published medias.
    #[arg(long, env = "OSCIED_LISTEN", default_value = "127.0.0.1:5080")]
    pub listen: SocketAddr,
    /// The web root: publications go to `<www root>/medias/<id>/`; created when missing.
    #[arg(long, env = "OSCIED_WWW_ROOT")]
    pub www_root: PathBuf,
    /// The base URL users reach the listener at (http or https, e.g. behind a proxy);
    /// `http://<listen address>` when unset.
    #[arg(long, env = "OSCIED_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
}

/// An http(s) URL with a host, without query, fragment or trailing slash.
fn parse_public_url(s: &str) -> Result<String, String> {
    let url = s.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("the public URL must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("the public URL must name a host".into());
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err("the public URL must not hold a query, a fragment or spaces".into());
    }
    Ok(url.to_owned())
}

impl Config {
    pub fn unit_config(&self) -> PublisherConfig {
        let mut unit = PublisherConfig::new(self.storage_root.clone(), self.www_root.clone());
        if let Some(id) = &self.unit_id {
            unit.unit_id = id.clone();
        }
        unit.listen = self.listen;
        unit.public_url = self.public_url.clone();
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
            .field("listen", &self.listen)
            .field("www_root", &self.www_root)
            .field("public_url", &self.public_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 11] = [
        "worker-publisher",
        "--api-url",
        "http://127.0.0.1:5000",
        "--node-secret",
        "s3cret-node",
        "--storage-root",
        "/srv/storage",
        "--amqp-uri",
        "amqp://guest:hunter2@127.0.0.1:5672/%2f",
        "--www-root",
        "/srv/www",
    ];

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(REQUIRED).unwrap();
        let unit = c.unit_config();
        assert_eq!(unit.queues, vec!["publisher"]);
        assert_eq!(unit.concurrency, 1);
        assert_eq!(unit.heartbeat_secs, 5);
        assert_eq!(unit.listen, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(unit.public_url, None);
        assert_eq!(unit.www_root, PathBuf::from("/srv/www"));
        assert!(uuid::Uuid::parse_str(&unit.unit_id).is_ok());
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn flags() {
        let mut args = REQUIRED.to_vec();
        args.extend([
            "--queues",
            "publisher, cdn",
            "--concurrency",
            "3",
            "--unit-id",
            "web-1",
            "--listen",
            "0.0.0.0:8080",
            "--public-url",
            "https://cdn.example.com/oscied/",
            "--log-format",
            "json",
        ]);
        let c = Config::try_parse_from(args).unwrap();
        let unit = c.unit_config();
        assert_eq!(unit.queues, vec!["publisher", "cdn"]);
        assert_eq!(unit.concurrency, 3);
        assert_eq!(unit.unit_id, "web-1");
        assert_eq!(unit.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            unit.public_url.as_deref(),
            Some("https://cdn.example.com/oscied")
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn refuses_bad_values() {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--queues", "a b"),
            ("--unit-id", "a/b"),
            ("--heartbeat-secs", "0"),
            ("--listen", "localhost"),
            ("--public-url", "ftp://example.com"),
            ("--public-url", "example.com"),
            ("--public-url", "http://"),
            ("--public-url", "http://h/?a=1"),
        ] {
            let mut args = REQUIRED.to_vec();
            args.extend([flag, value]);
            assert!(Config::try_parse_from(args).is_err(), "{flag} {value}");
        }
        // The www root is required.
        assert!(Config::try_parse_from(&REQUIRED[..9]).is_err());
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
