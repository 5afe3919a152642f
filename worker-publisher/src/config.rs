//! The binary's flags, each with an `OSCIED_*` environment fallback (docs/architecture.md §8).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use oscied_protocol::node::UnitKind;
use oscied_protocol::unit::cli::kind_flags;
pub use oscied_protocol::unit::cli::{LogFormat, Queues, UnitArgs, redact_uri};

use crate::PublisherConfig;

/// The OSCIED publisher unit: publishes media dirs into its web root and serves them.
#[derive(Clone, Parser)]
#[command(name = "worker-publisher", version, about)]
#[command(mut_args = kind_flags(UnitKind::Publisher))]
pub struct Config {
    #[command(flatten)]
    pub unit: UnitArgs,
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
    /// Seconds a client has to send a request's headers (and a kept-alive connection may sit
    /// idle) before the connection is closed.
    #[arg(long, env = "OSCIED_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request fails.
    #[arg(long, env = "OSCIED_BODY_IDLE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_idle_secs: u64,
    /// Seconds between two reconciles of the web root with what the orchestra says this unit
    /// holds (publications it no longer holds are removed); also done at start and when a
    /// claim or a completion is refused.
    #[arg(long, env = "OSCIED_RECONCILE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub reconcile_secs: u64,
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
        let args = &self.unit;
        let mut unit = PublisherConfig::new(args.storage_root.clone(), self.www_root.clone());
        if let Some(id) = &args.unit_id {
            unit.unit_id = id.clone();
        }
        unit.listen = self.listen;
        unit.public_url = self.public_url.clone();
        unit.serve_limits = oscied_protocol::http::ServeLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_idle: std::time::Duration::from_secs(self.body_idle_secs),
        };
        unit.reconcile_secs = self.reconcile_secs;
        unit.queues = args.queues(UnitKind::Publisher);
        unit.concurrency = args.concurrency;
        unit.heartbeat_secs = args.heartbeat_secs;
        unit.drain_secs = args.drain_secs;
        unit.refused_exit_secs = args.refused_exit_secs;
        unit
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.unit
            .debug_fields(&mut f.debug_struct("Config"))
            .field("listen", &self.listen)
            .field("www_root", &self.www_root)
            .field("public_url", &self.public_url)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("body_idle_secs", &self.body_idle_secs)
            .field("reconcile_secs", &self.reconcile_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

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
        assert_eq!(c.unit.log_format, LogFormat::Human);
        assert_eq!(unit.serve_limits.header_timeout.as_secs(), 30);
        assert_eq!(unit.serve_limits.body_idle.as_secs(), 60);
        assert_eq!(unit.reconcile_secs, 60);
    }

    #[test]
    fn help_names_the_default_queue() {
        let help = Config::command().render_long_help().to_string();
        assert!(help.contains("[default: publisher]"), "{help}");
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
        assert_eq!(c.unit.log_format, LogFormat::Json);
    }

    // The common flags' values and the redaction are the protocol's tests (`UnitArgs`).
    #[test]
    fn refuses_bad_values() {
        for (flag, value) in [
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
        let text = format!("{:?}", Config::try_parse_from(REQUIRED).unwrap());
        assert!(text.contains("www_root: \"/srv/www\""), "{text}");
        assert!(
            !text.contains("s3cret-node") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
