//! What the unit binaries share around their flags (DESIGN.md §8): value parsers, the log
//! format, logging set-up and the stop signals.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Log to stderr for people or for machines; the level comes from `RUST_LOG` (default
/// `info`). A second call is a no-op (tests may have set a subscriber).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// The checked queue list (a newtype, so clap takes the whole comma list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queues(pub Vec<String>);

/// `OSCIED_QUEUES`: comma-separated, each name checked.
pub fn parse_queues(s: &str) -> Result<Queues, String> {
    crate::queue::parse_queue_list(s).map(Queues)
}

/// The id goes into a URL path and log lines: 1–64 of `A-Z a-z 0-9 _ - .`.
pub fn parse_unit_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("a unit id has 1 to 64 letters, digits, '_', '-' or '.'".into())
    }
}

/// `amqp://user:pass@host/vhost` → `amqp://user:***@host/vhost`.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            parse_queues("publisher, gpu").unwrap(),
            Queues(vec!["publisher".into(), "gpu".into()])
        );
        assert!(parse_queues(" , ").is_err());
        assert_eq!(parse_unit_id("host-1.a_b").unwrap(), "host-1.a_b");
        assert!(parse_unit_id("a/b").is_err());
        assert!(parse_unit_id("").is_err());
        assert!(parse_unit_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_uri("amqp://guest:hunter2@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_uri("amqp://host"), "amqp://host");
        assert_eq!(redact_uri("no scheme"), "no scheme");
    }
}
