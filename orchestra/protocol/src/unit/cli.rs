//! What the unit binaries share around their flags (docs/architecture.md §8): the common flags, value
//! parsers, the log format, logging set-up, the start and the stop signals.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Arg, Args, ValueEnum};

use crate::broker::AmqpBroker;
use crate::client::NodeClient;
use crate::node::UnitKind;
use crate::queue::default_queue;
use crate::unit::UnitError;
use crate::unit::state::{StateError, UnitState};

/// The flags every unit kind takes, each with an `OSCIED_*` environment fallback. A binary
/// flattens them into its `Config` (`#[command(flatten)]`) and applies [`kind_flags`] to its
/// command for the default queue and the wording of its kind.
#[derive(Clone, Args)]
pub struct UnitArgs {
    /// The orchestra's URL (with or without `/api/v1`), e.g. http://10.0.0.1:5000; or several
    /// orchestra replicas' URLs, comma separated: a call goes to the one that answered last
    /// and moves to the next when it cannot be reached or answers 502, 503 or 504.
    #[arg(long, env = "OSCIED_API_URL", value_parser = parse_api_url)]
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
    /// The queues to consume, comma separated; the kind's queue when unset (see
    /// [`UnitArgs::queues`]). [`kind_flags`] words this help and the next two per kind.
    #[arg(long, env = "OSCIED_QUEUES", value_parser = parse_queues)]
    pub queues: Option<Queues>,
    /// Tasks run at once.
    #[arg(long, env = "OSCIED_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How the unit names itself to the orchestra; a fresh UUID v4 when unset.
    #[arg(long, env = "OSCIED_UNIT_ID", value_parser = parse_unit_id)]
    pub unit_id: Option<String>,
    /// Where the unit keeps its id across restarts, locked while it runs. [`kind_flags`]
    /// words its default per kind.
    #[arg(long, env = "OSCIED_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds between unit heartbeats.
    #[arg(long, env = "OSCIED_HEARTBEAT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
    /// Seconds the unit keeps checking while the orchestra refuses its node secret (taking no
    /// job meanwhile) before it exits with failure.
    #[arg(long, env = "OSCIED_REFUSED_EXIT_SECS", default_value_t = super::DEFAULT_REFUSED_EXIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub refused_exit_secs: u64,
    /// Log lines for people or for machines.
    #[arg(long, env = "OSCIED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// On SIGTERM or SIGINT the unit takes no new job, then: with 0, hands its running tasks
    /// back at once (the orchestra queues them again for another unit); with N, lets them
    /// finish for up to N seconds and hands back what still runs. Then it removes its work
    /// files and exits 0.
    #[arg(long, env = "OSCIED_DRAIN_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub drain_secs: u64,
    /// When set, the unit's `GET /metrics` answers only `Authorization: Bearer <this>`;
    /// unset, it is open (firewall it).
    #[arg(long, env = "OSCIED_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl UnitArgs {
    /// The queues given, else the kind's own queue.
    pub fn queues(&self, kind: UnitKind) -> Vec<String> {
        match &self.queues {
            Some(queues) => queues.0.clone(),
            None => vec![default_queue(kind).to_owned()],
        }
    }

    /// Adds the flags to a binary's `Debug`, never the node secret nor the AMQP password.
    pub fn debug_fields<'a, 'b, 'c>(
        &self,
        f: &'a mut fmt::DebugStruct<'b, 'c>,
    ) -> &'a mut fmt::DebugStruct<'b, 'c> {
        // Unset only where the kind's flags were not applied (no default from clap).
        let queues: &dyn fmt::Debug = match &self.queues {
            Some(queues) => &queues.0,
            None => &"<the kind's>",
        };
        f.field("api_url", &self.api_url)
            .field("node_secret", &"<hidden>")
            .field("storage_root", &self.storage_root)
            .field("amqp_uri", &redact_uri(&self.amqp_uri))
            .field("queues", queues)
            .field("concurrency", &self.concurrency)
            .field("unit_id", &self.unit_id)
            .field("state_dir", &self.state_dir)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("refused_exit_secs", &self.refused_exit_secs)
            .field("log_format", &self.log_format)
            .field("drain_secs", &self.drain_secs)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<hidden>"),
            )
    }
}

impl fmt::Debug for UnitArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_fields(&mut f.debug_struct("UnitArgs")).finish()
    }
}

/// What sets one kind's [`UnitArgs`] apart: the default queue (shown by `--help`) and the
/// wording of some helps. For the binary's command:
/// `#[command(mut_args = kind_flags(UnitKind::…))]`.
pub fn kind_flags(kind: UnitKind) -> impl FnMut(Arg) -> Arg {
    let (queues, concurrency, unit_id, state_dir) = match kind {
        UnitKind::Transform => (
            "The queues to consume, comma separated",
            "Jobs run at once",
            "How the unit names itself to the orchestra; when unset, the id kept in the state \
             dir (a fresh UUID v4 the first time)",
            "Where the unit keeps its id (`unit_id`) across restarts, locked while it runs (a \
             second unit on it fails at start); default $STATE_DIRECTORY (systemd's \
             StateDirectory=), else $XDG_STATE_HOME/oscied/transform, else \
             $HOME/.local/state/oscied/transform",
        ),
        UnitKind::Publisher => (
            "The queues to consume, comma separated (the unit's own queue is consumed besides)",
            "Publications run at once",
            "How the unit names itself to the orchestra; when unset, the id kept in the state \
             dir (a fresh UUID v4 the first time). The unit's own queue (its unpublish jobs) \
             is named after it",
            "Where the unit keeps its id (`unit_id`) across restarts, locked while it runs (a \
             second unit on it fails at start); default <www root>/.oscied, so the id stays \
             with the files it serves (never served itself)",
        ),
    };
    move |arg| match arg.get_id().as_str() {
        // A unit refuses at start the other kind's queues: it could never run their jobs.
        "queues" => arg
            .help(queues)
            .default_value(default_queue(kind))
            .value_parser(move |s: &str| parse_queues_for(kind, s)),
        "concurrency" => arg.help(concurrency),
        "unit_id" => arg.help(unit_id),
        "state_dir" => arg.help(state_dir),
        _ => arg,
    }
}

/// What a unit binary holds once started: the orchestra's client, the broker (which connects
/// in the background and reconnects on its own) and its state dir, whose lock is held as long
/// as this lives (the binary keeps it until it exits).
pub struct Started {
    pub client: NodeClient,
    pub broker: Arc<AmqpBroker>,
    /// The unit's id, kept across restarts (`OSCIED_STATE_DIR`, `OSCIED_UNIT_ID`).
    pub state: UnitState,
}

/// A unit binary's start: logging as asked, a check that the storage is mounted, the state
/// dir locked (`OSCIED_STATE_DIR`, else `default_state_dir`) before anything connects, the
/// orchestra's client and the broker. `config` is the binary's whole configuration, logged
/// once. `None` once the failure is logged: the binary exits with failure.
pub fn start(
    unit: &UnitArgs,
    default_state_dir: impl FnOnce() -> Result<PathBuf, StateError>,
    config: &dyn fmt::Debug,
) -> Option<Started> {
    init_tracing(unit.log_format);
    if !unit.storage_root.is_dir() {
        tracing::error!(
            storage_root = %unit.storage_root.display(),
            "OSCIED_STORAGE_ROOT is not a directory (is the shared storage mounted?)"
        );
        return None;
    }
    let state = unit
        .state_dir
        .clone()
        .map_or_else(default_state_dir, Ok)
        .and_then(|dir| UnitState::open(&dir, unit.unit_id.as_deref()));
    let state = match state {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("{e}");
            return None;
        }
    };
    let client = match NodeClient::new(&unit.api_url, &unit.node_secret) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("{e}");
            return None;
        }
    };
    let api = client.bases().join(",");
    tracing::info!(%api, unit_id = state.unit_id(), "configuration: {config:?}");
    let broker = Arc::new(AmqpBroker::connect(&unit.amqp_uri));
    Some(Started {
        client,
        broker,
        state,
    })
}

/// A unit binary's exit status: success after a stop by signal, failure when `run` ended
/// with an error (logged by `run`, such as a node secret refused for good).
pub fn exit_code(ended: Result<(), UnitError>) -> ExitCode {
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The filter without `RUST_LOG`: info, but none of lapin's own lines, which repeat each
/// connection failure three times and call a plain retry "backoff attempts exhausted,
/// aborting recovery"; the broker logs every failure itself, with its cause
/// (`RUST_LOG=info,lapin=debug` brings them back).
pub const DEFAULT_LOG_FILTER: &str = "info,lapin=off";

/// Log to stderr for people or for machines, one event per line (see [`super::log`]); the
/// level comes from `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]). Colour only on a terminal
/// and without `NO_COLOR`. A second call is a no-op (tests may have set a subscriber).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(super::log::colour())
            .fmt_fields(super::log::HumanFields)
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(super::log::JsonFields)
            .event_format(super::log::JsonEvent)
            .try_init(),
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

/// `OSCIED_API_URL`: checked by [`crate::client::parse_api_urls`], kept as given.
pub fn parse_api_url(s: &str) -> Result<String, String> {
    crate::client::parse_api_urls(s).map(|_| s.to_owned())
}

/// The checked queue list (a newtype, so clap takes the whole comma list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queues(pub Vec<String>);

/// `OSCIED_QUEUES`: comma-separated, each name checked.
pub fn parse_queues(s: &str) -> Result<Queues, String> {
    crate::queue::parse_queue_list(s).map(Queues)
}

/// `OSCIED_QUEUES` of a unit of this kind: the names checked, none of the other kind's.
pub fn parse_queues_for(kind: UnitKind, s: &str) -> Result<Queues, String> {
    crate::queue::parse_unit_queues(kind, s).map(Queues)
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

/// `1048576`, `512K`, `500M`, `2GiB`, `16G`: a byte count with an optional binary unit.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1048576, 500M or 2GiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown size unit {other:?}; use K, M, G or T")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
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
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    #[command(mut_args = kind_flags(UnitKind::Transform))]
    struct TransformCli {
        #[command(flatten)]
        unit: UnitArgs,
    }

    #[derive(Parser)]
    #[command(mut_args = kind_flags(UnitKind::Publisher))]
    struct PublisherCli {
        #[command(flatten)]
        unit: UnitArgs,
    }

    const REQUIRED: [&str; 9] = [
        "unit",
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
    fn the_default_queue_is_the_kinds() {
        let transform = TransformCli::try_parse_from(REQUIRED).unwrap().unit;
        assert_eq!(transform.queues(UnitKind::Transform), vec!["transform"]);
        let publisher = PublisherCli::try_parse_from(REQUIRED).unwrap().unit;
        assert_eq!(publisher.queues(UnitKind::Publisher), vec!["publisher"]);
        // Without the kind's flags (no default from clap), resolved from the kind.
        let unset = UnitArgs {
            queues: None,
            ..publisher.clone()
        };
        assert_eq!(unset.queues(UnitKind::Transform), vec!["transform"]);
        assert_eq!(unset.queues(UnitKind::Publisher), vec!["publisher"]);
        let mut args = REQUIRED.to_vec();
        args.extend(["--queues", "cdn, publisher-eu"]);
        let given = PublisherCli::try_parse_from(args).unwrap().unit;
        assert_eq!(
            given.queues(UnitKind::Publisher),
            vec!["cdn", "publisher-eu"]
        );
    }

    #[test]
    fn a_unit_refuses_the_other_kinds_queues() {
        for (queues, transform_ok, publisher_ok) in [
            ("transform, gpu", true, false),
            ("transform-eu", true, false),
            ("publisher, cdn", false, true),
            ("publisher_eu", false, true),
            ("gpu, cdn", true, true),
        ] {
            let mut args = REQUIRED.to_vec();
            args.extend(["--queues", queues]);
            let transform = TransformCli::try_parse_from(&args);
            assert_eq!(transform.is_ok(), transform_ok, "transform {queues}");
            let publisher = PublisherCli::try_parse_from(&args);
            assert_eq!(publisher.is_ok(), publisher_ok, "publisher {queues}");
        }
        let mut args = REQUIRED.to_vec();
        args.extend(["--queues", "transform,publisher"]);
        let err = TransformCli::try_parse_from(&args)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("a transform unit cannot consume queue \"publisher\""),
            "{err}"
        );
    }

    #[test]
    fn help_shows_each_kinds_default_and_wording() {
        let transform = TransformCli::command().render_long_help().to_string();
        assert!(transform.contains("[default: transform]"), "{transform}");
        assert!(transform.contains("Jobs run at once"), "{transform}");
        let publisher = PublisherCli::command().render_long_help().to_string();
        assert!(publisher.contains("[default: publisher]"), "{publisher}");
        assert!(
            publisher.contains("Publications run at once"),
            "{publisher}"
        );
        assert!(publisher.contains("<www root>/.oscied"), "{publisher}");
        assert!(transform.contains("StateDirectory="), "{transform}");
        for var in [
            "OSCIED_API_URL",
            "OSCIED_NODE_SECRET",
            "OSCIED_STORAGE_ROOT",
            "OSCIED_AMQP_URI",
            "OSCIED_QUEUES",
            "OSCIED_CONCURRENCY",
            "OSCIED_UNIT_ID",
            "OSCIED_STATE_DIR",
            "OSCIED_HEARTBEAT_SECS",
            "OSCIED_REFUSED_EXIT_SECS",
            "OSCIED_LOG_FORMAT",
            "OSCIED_DRAIN_SECS",
        ] {
            assert!(transform.contains(var), "{var}: {transform}");
            assert!(publisher.contains(var), "{var}: {publisher}");
        }
    }

    #[test]
    fn refuses_bad_values() {
        for (flag, value) in [
            ("--concurrency", "0"),
            ("--concurrency", "257"),
            ("--queues", "a b"),
            ("--queues", " , "),
            ("--unit-id", "a/b"),
            ("--heartbeat-secs", "0"),
            ("--refused-exit-secs", "0"),
            ("--log-format", "xml"),
            ("--drain-secs", "-1"),
            ("--drain-secs", "86401"),
            ("--drain-secs", "soon"),
        ] {
            let mut args = REQUIRED.to_vec();
            args.extend([flag, value]);
            assert!(
                TransformCli::try_parse_from(&args).is_err(),
                "{flag} {value}"
            );
            assert!(
                PublisherCli::try_parse_from(&args).is_err(),
                "{flag} {value}"
            );
        }
        // Each of the four first flags is required.
        for missing in (1..REQUIRED.len()).step_by(2) {
            let mut args = REQUIRED.to_vec();
            args.drain(missing..missing + 2);
            assert!(TransformCli::try_parse_from(args).is_err(), "{missing}");
        }
    }

    #[test]
    fn the_api_url_may_name_several_replicas() {
        let mut args = REQUIRED.to_vec();
        args[2] = "http://a:5000, https://b.example/api/v1/";
        let unit = TransformCli::try_parse_from(&args).unwrap().unit;
        assert_eq!(unit.api_url, "http://a:5000, https://b.example/api/v1/");
        for bad in [
            "http://a:5000,ftp://b",
            "a:5000",
            " , ",
            "http://a:5000,http://",
        ] {
            args[2] = bad;
            let err = TransformCli::try_parse_from(&args)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("OSCIED_API_URL"), "{bad}: {err}");
        }
        args[2] = "http://a:5000,ftp://b";
        let err = PublisherCli::try_parse_from(&args).err().expect("refused");
        assert!(err.to_string().contains("\"ftp://b\""), "{err}");
    }

    #[test]
    fn drain_defaults_to_handing_back_at_once() {
        let unit = TransformCli::try_parse_from(REQUIRED).unwrap().unit;
        assert_eq!(unit.drain_secs, 0);
        let mut args = REQUIRED.to_vec();
        args.extend(["--drain-secs", "120"]);
        assert_eq!(
            PublisherCli::try_parse_from(args).unwrap().unit.drain_secs,
            120
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let unit = TransformCli::try_parse_from(REQUIRED).unwrap().unit;
        let text = format!("{unit:?}");
        assert!(text.starts_with("UnitArgs {"), "{text}");
        assert!(!text.contains("s3cret-node"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
            "{text}"
        );
    }

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
