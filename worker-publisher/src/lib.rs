//! The OSCIED publisher unit (docs/architecture.md §5, §7): it publishes media directories from the
//! shared storage into its web root (`<www root>/medias/<id>/`, hard-linked or copied, see
//! [`publish`]), serves them over HTTP ([`serve`]) and removes them again on unpublish.
//!
//! The same code runs as the `worker-publisher` binary (cluster mode, RabbitMQ) and inside
//! the orchestra (standalone mode, in-process queues):
//!
//! ```no_run
//! # async fn demo(broker: std::sync::Arc<dyn oscied_protocol::Broker>) -> std::io::Result<()> {
//! use worker_publisher::{PublisherConfig, PublisherUnit};
//! let client = oscied_protocol::client::NodeClient::new("http://127.0.0.1:5000", "secret").unwrap();
//! let config = PublisherConfig::new("/srv/oscied/storage".into(), "/srv/oscied/www".into());
//! let unit = PublisherUnit::bind(config, broker, client).await?; // a taken port fails here
//! println!("publishing at {}", unit.public_url());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let handle = tokio::spawn(unit.run(async { let _ = stopped.await; }));
//! // ... later: cancel running publications, stop serving, return.
//! let _ = stop.send(());
//! let _ = handle.await;
//! # Ok(()) }
//! ```
//!
//! The unit is a [`oscied_protocol::unit::JobHandler`] run by
//! [`oscied_protocol::unit::run_unit`], which owns what every unit kind shares (the slots,
//! the claim, the lease reporter, the completion retries, the unit heartbeat, the drain);
//! this crate adds the publication, its URL check, the unpublish, the reconcile and the HTTP
//! server.
//!
//! How it behaves, and why:
//!
//! - **Consumers.** `concurrency` slots consume the configured queues (`publisher` unless
//!   named), and one more consumer takes the unit's own queue
//!   ([`oscied_protocol::queue::unit_queue`]), where the orchestra sends the unpublish jobs of
//!   the publications this unit holds. A job is handled by its `action` whatever queue it came
//!   from, so a misrouted message still does the right thing.
//! - **Publish.** Claim the task with the job's attempt over the node API (kind `publisher`;
//!   a stale claim is acked and dropped, an unreachable orchestra retried with the message
//!   held), ack, then build the publication in `<www root>/.staging/<task>-<attempt>/` and
//!   rename it into place while a lease reporter sends bare heartbeats (a copy can take a
//!   while). Then check that `<public url>/medias/<id>/<filename>` answers a GET with 200 and
//!   the file's size (a few tries over about 5 s): the URL handed to users must work, and a
//!   wrong `OSCIED_PUBLIC_URL` is caught here rather than by them. Success completes
//!   SUCCESS with that URL as `publish_uri`; a failed check unpublishes and completes FAILURE
//!   with what the URL answered.
//! - **Cancel and stale.** A lease answer with `cancel` stops the copy (or the check),
//!   removes whatever was published and completes REVOKED; a stale answer does the same
//!   without completing (unless a later attempt of the task runs here: its files are left
//!   alone).
//! - **Completion answers.** A SUCCESS answered SUCCESS or REVOKING keeps the files (a task
//!   revoked meanwhile gets an unpublish job on the own queue); any other answer, a stale or
//!   refused completion, or a stop before the answer removes them: nothing stays served that
//!   the orchestra does not list.
//! - **Unpublish.** No claim (the unit holds the task since its SUCCESS): remove
//!   `medias/<id>/`, then complete REVOKED with the job's attempt, retrying while the
//!   orchestra is unavailable. The message is acked only once the orchestra answered, or
//!   answered stale (then it is dropped): a unit killed in between gets it again, and both
//!   steps are idempotent (a media that is not here still completes REVOKED). A dir that
//!   cannot be removed, or a refused node secret, holds the message a while and requeues it.
//! - **Redeliveries** of a publication already running here are acked and skipped, like the
//!   transform unit does.
//! - **Whose files.** Before a publication is renamed into place, who makes it (unit id, task,
//!   attempt) is written to `<www root>/.oscied/publications/<media id>.json`, outside the
//!   served `medias/`; it is removed after the files. A reconcile keeps a publication iff
//!   the orchestra says that unit id holds that task at that attempt (SUCCESS or REVOKING,
//!   or STARTED/PROGRESS while it runs here), asking for every unit id found in the records
//!   (files made under an earlier id stay while that id holds them); one without a record
//!   (an older version's) stays iff its media is held. It runs at start before any job, when
//!   a claim or a completion is refused, and every `reconcile_secs`; when the orchestra
//!   cannot answer nothing is removed.
//! - **Heartbeat**: kind `publisher`, the configured queues (not the own one), no ffmpeg
//!   version, the running publications.
//! - **Shutdown** ([`oscied_protocol::unit::run_unit`]): stop consuming, let running
//!   publications finish for up to `drain_secs` (`OSCIED_DRAIN_SECS`, default 0), then cancel
//!   those still running (their staging and anything already renamed into place is removed)
//!   and hand them back to the orchestra, which queues them again at once; published media
//!   stay in place and served after a restart. The HTTP server serves until then, and stops
//!   gracefully, giving open downloads a few seconds.

pub mod config;
mod handler;
pub mod publish;
mod reconcile;
pub mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oscied_protocol::Broker;
use oscied_protocol::client::NodeClient;
use oscied_protocol::http::ServeLimits;
use oscied_protocol::queue::{PUBLISHER_QUEUE, unit_queue};
use oscied_protocol::unit::metrics::UnitMetrics;
use oscied_protocol::unit::{self, UnitError, UnitSpec, run_unit};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::handler::Publisher;

/// What a publisher unit needs besides its broker and node client. Plain data: the binary
/// fills it from flags, the orchestra from its own configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// How the unit calls itself on the node API; also names its own queue.
    pub unit_id: String,
    /// Where this host mounts the shared storage tree.
    pub storage_root: PathBuf,
    /// The served directory: publications go to `<www_root>/medias/<id>/`.
    pub www_root: PathBuf,
    /// The HTTP listener.
    pub listen: SocketAddr,
    /// The base URL users reach the listener at (`https://cdn.example.com`); when None,
    /// `http://<bound address>`.
    pub public_url: Option<String>,
    /// The queues consumed (`publisher` unless named), besides the unit's own queue.
    pub queues: Vec<String>,
    /// Publications run at once (≥ 1).
    pub concurrency: u32,
    /// Seconds between unit heartbeats.
    pub heartbeat_secs: u64,
    /// The HTTP server's header and body timeouts.
    pub serve_limits: ServeLimits,
    /// `OSCIED_DRAIN_SECS`: on stop, how long running publications may go on before they
    /// are handed back (0: at once).
    pub drain_secs: u64,
    /// Seconds a refused node secret is retried before `run` fails
    /// (`OSCIED_REFUSED_EXIT_SECS`, see [`oscied_protocol::unit::secret`]).
    pub refused_exit_secs: u64,
    /// Seconds between two reconciles of the web root with what the orchestra says is held.
    pub reconcile_secs: u64,
}

impl PublisherConfig {
    /// The defaults: a fresh UUID v4 id, queue `publisher`, listening on 127.0.0.1:5080, no
    /// public URL (the bound address), concurrency 1, a heartbeat every 5 seconds, no drain,
    /// a reconcile every 60.
    pub fn new(storage_root: PathBuf, www_root: PathBuf) -> PublisherConfig {
        PublisherConfig {
            unit_id: Uuid::new_v4().to_string(),
            storage_root,
            www_root,
            listen: SocketAddr::from(([127, 0, 0, 1], 5080)),
            public_url: None,
            queues: vec![PUBLISHER_QUEUE.to_owned()],
            concurrency: 1,
            heartbeat_secs: 5,
            serve_limits: ServeLimits::default(),
            drain_secs: 0,
            refused_exit_secs: unit::DEFAULT_REFUSED_EXIT_SECS,
            reconcile_secs: 60,
        }
    }
}

/// A publisher unit with its listener bound, ready to run.
pub struct PublisherUnit {
    config: PublisherConfig,
    broker: Arc<dyn Broker>,
    client: NodeClient,
    listener: TcpListener,
    local_addr: SocketAddr,
    public_url: String,
    metrics: Arc<UnitMetrics>,
    metrics_token: Option<String>,
}

impl PublisherUnit {
    /// Bind the HTTP listener (so a taken port fails here, at start), create the www dirs,
    /// clean staging.
    pub async fn bind(
        config: PublisherConfig,
        broker: Arc<dyn Broker>,
        client: NodeClient,
    ) -> std::io::Result<PublisherUnit> {
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (OSCIED_LISTEN): {e}", config.listen),
            )
        })?;
        PublisherUnit::with_listener(config, broker, client, listener).await
    }

    /// As [`PublisherUnit::bind`] on a listener bound already (`config.listen` unused): the
    /// standalone orchestra binds its listeners before anything else.
    pub async fn with_listener(
        config: PublisherConfig,
        broker: Arc<dyn Broker>,
        client: NodeClient,
        listener: TcpListener,
    ) -> std::io::Result<PublisherUnit> {
        let with_context = |what: String| {
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        let medias = config.www_root.join("medias");
        tokio::fs::create_dir_all(&medias)
            .await
            .map_err(with_context(format!("cannot create {}", medias.display())))?;
        // Leftovers of publications interrupted by a crash; nothing runs here yet.
        publish::clean_staging(&config.www_root)
            .await
            .map_err(with_context(format!(
                "cannot clean {}",
                config.www_root.join(publish::STAGING_DIR).display()
            )))?;
        let local_addr = listener.local_addr()?;
        let public_url = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                if local_addr.ip().is_unspecified() {
                    tracing::warn!(
                        %local_addr,
                        "listening on all interfaces without a public URL: publish_uris will \
                         name {local_addr}; set OSCIED_PUBLIC_URL"
                    );
                }
                format!("http://{local_addr}")
            }
        };
        Ok(PublisherUnit {
            config,
            broker,
            client,
            listener,
            local_addr,
            public_url,
            metrics: UnitMetrics::new(),
            metrics_token: None,
        })
    }

    /// Count into `metrics` (the standalone orchestra's, say) rather than into its own.
    pub fn with_metrics(mut self, metrics: Arc<UnitMetrics>) -> PublisherUnit {
        self.metrics = metrics;
        self
    }

    /// Answer `GET /metrics` only with `Authorization: Bearer <token>` (`OSCIED_METRICS_TOKEN`).
    pub fn with_metrics_token(mut self, token: Option<String>) -> PublisherUnit {
        self.metrics_token = token;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `public_url` from the config (without a trailing slash), else `http://<bound address>`.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Serve and consume until `shutdown` resolves; then take no new job, let running
    /// publications finish for up to `drain_secs`, cancel and hand back those still running
    /// (the orchestra queues them again at once), stop serving and return. Meant for
    /// `tokio::spawn`. Ends the same way, with an error, when the orchestra refused the node
    /// secret for `refused_exit_secs`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), UnitError> {
        let config = self.config;
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(handler::CHECK_TRY_TIMEOUT)
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                // Only a broken TLS backend makes this fail; the unit could check nothing.
                tracing::error!("publisher unit cannot start its HTTP client: {e}");
                return Err(UnitError::NotStarted(format!("HTTP client: {e}")));
            }
        };
        let spec = UnitSpec {
            own_queue: Some(unit_queue(&config.unit_id)),
            unit_id: config.unit_id,
            queues: config.queues,
            concurrency: config.concurrency,
            heartbeat_secs: config.heartbeat_secs,
            drain_secs: config.drain_secs,
            refused_exit_secs: config.refused_exit_secs,
        };
        let handler = Publisher {
            storage_root: config.storage_root,
            www_root: config.www_root,
            public_url: self.public_url,
            http,
            serve_limits: config.serve_limits,
            reconcile_secs: config.reconcile_secs,
            local_addr: self.local_addr,
            listener: Mutex::new(Some(self.listener)),
            reconcile_now: Notify::new(),
            metrics_token: self.metrics_token,
        };
        run_unit(
            handler,
            spec,
            self.broker,
            self.client,
            self.metrics,
            shutdown,
        )
        .await
    }
}
