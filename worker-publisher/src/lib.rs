//! The OSCIED publisher unit (DESIGN.md §5, §7): it publishes media directories from the
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
//! - **Heartbeat**: kind `publisher`, the configured queues (not the own one), no ffmpeg
//!   version, the running publications.
//! - **Shutdown**: stop consuming, cancel running publications (their staging and anything
//!   already renamed into place is removed, nothing completed: the orchestra's lease reaper
//!   re-queues them), then stop the HTTP server gracefully, giving open downloads a few
//!   seconds.

pub mod config;
pub mod publish;
pub mod serve;
mod slot;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::Broker;
use oscied_protocol::client::NodeClient;
use oscied_protocol::http::ServeLimits;
use oscied_protocol::node::UnitKind;
use oscied_protocol::queue::{PUBLISHER_QUEUE, check_unit_queues, unit_queue};
use oscied_protocol::unit::{self, Running, UnitInfo, UnitLink};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use uuid::Uuid;

/// How long the HTTP server waits for open downloads after the unit stopped.
const SERVER_GRACE: Duration = Duration::from_secs(5);

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
}

impl PublisherConfig {
    /// The defaults: a fresh UUID v4 id, queue `publisher`, listening on 127.0.0.1:5080, no
    /// public URL (the bound address), concurrency 1, a heartbeat every 5 seconds.
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
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `public_url` from the config (without a trailing slash), else `http://<bound address>`.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Serve and consume until `shutdown` resolves; then cancel the running publications
    /// (without completing: the orchestra's lease reaper re-queues them), stop serving and
    /// return. Meant for `tokio::spawn`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut config = self.config;
        config.concurrency = config.concurrency.max(1);
        config.heartbeat_secs = config.heartbeat_secs.max(1);
        // The binary's flags refuse them already; a library caller gets the same rule.
        if let Err(e) = check_unit_queues(UnitKind::Publisher, &config.queues) {
            tracing::error!("publisher unit not started: {e}");
            return;
        }
        let (link, stop) = UnitLink::new(self.client, config.unit_id.clone(), UnitKind::Publisher);
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(slot::CHECK_TRY_TIMEOUT)
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                // Only a broken TLS backend makes this fail; the unit could check nothing.
                tracing::error!("publisher unit cannot start its HTTP client: {e}");
                return;
            }
        };
        let ctx = Arc::new(Ctx {
            config,
            broker: self.broker,
            link,
            running: Running::default(),
            public_url: self.public_url,
            http,
        });
        let own_queue = vec![unit_queue(&ctx.config.unit_id)];
        let published = publish::published_ids(&ctx.config.www_root)
            .await
            .map(|ids| ids.len())
            .unwrap_or(0);
        tracing::info!(
            unit_id = %ctx.config.unit_id,
            queues = %oscied_protocol::unit::log::List(&ctx.config.queues),
            own_queue = %own_queue[0],
            concurrency = ctx.config.concurrency,
            storage_root = %ctx.config.storage_root.display(),
            www_root = %ctx.config.www_root.display(),
            listen = %self.local_addr,
            public_url = %ctx.public_url,
            published,
            broker = ctx.broker.kind(),
            "publisher unit started"
        );
        reconcile(&ctx).await;
        let app = serve::router(ctx.config.www_root.clone(), ctx.config.unit_id.clone());
        let server_link = ctx.link.clone();
        let ctx_limits = ctx.config.serve_limits;
        let mut server = tokio::spawn(async move {
            let served = oscied_protocol::http::serve(self.listener, app, ctx_limits, async move {
                server_link.stopped().await
            })
            .await;
            if let Err(e) = served {
                tracing::error!("the HTTP server failed: {e}");
            }
        });
        // Each slot's queues, by task id, to restart a slot that died with the same ones.
        let mut slots = JoinSet::new();
        let mut slot_queues = HashMap::new();
        let mut queue_sets = vec![ctx.config.queues.clone(); ctx.config.concurrency as usize];
        queue_sets.push(own_queue.clone());
        for queues in queue_sets {
            let handle = slots.spawn(slot::run(ctx.clone(), queues.clone()));
            slot_queues.insert(handle.id(), queues);
        }
        let heartbeat = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let info = UnitInfo {
                    queues: ctx.config.queues.clone(),
                    concurrency: ctx.config.concurrency,
                    heartbeat_secs: ctx.config.heartbeat_secs,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ffmpeg_version: None,
                };
                unit::heartbeat(&ctx.link, info, &ctx.running).await;
            }
        });
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(ended) = slots.join_next_with_id() => {
                    // A slot only ends on shutdown; a panic must not shrink the unit.
                    let (id, error) = match ended {
                        Ok((id, ())) => (id, None),
                        Err(e) => (e.id(), Some(e)),
                    };
                    let queues = slot_queues
                        .remove(&id)
                        .unwrap_or_else(|| ctx.config.queues.clone());
                    tracing::error!(
                        queues = %oscied_protocol::unit::log::List(&queues),
                        error = error.as_ref().map(tracing::field::display),
                        "a job slot ended unexpectedly; restarting it"
                    );
                    let handle = slots.spawn(slot::run(ctx.clone(), queues.clone()));
                    slot_queues.insert(handle.id(), queues);
                }
                _ = &mut server => {
                    // The listener is gone: the unit could publish but not serve.
                    tracing::error!("the HTTP server stopped; stopping the unit");
                    break;
                }
            }
        }
        tracing::info!("publisher unit stopping");
        stop.send_replace(true);
        while let Some(ended) = slots.join_next().await {
            if let Err(e) = ended {
                tracing::error!("a job slot failed while stopping: {e}");
            }
        }
        heartbeat.abort();
        if !server.is_finished()
            && tokio::time::timeout(SERVER_GRACE, &mut server)
                .await
                .is_err()
        {
            tracing::warn!("downloads still open after {SERVER_GRACE:?}: closing the server");
            server.abort();
        }
        tracing::info!("publisher unit stopped");
    }
}

/// Before taking any job, remove what this unit serves but no longer holds: a unit killed
/// mid-publish (after its files were in place, before the orchestra heard of it) leaves a
/// publication whose task then ran elsewhere. When the orchestra cannot say (it is not up
/// yet), everything stays: serving a stale copy is better than removing a held one.
async fn reconcile(ctx: &Ctx) {
    let mut held = None;
    for _ in 0..3 {
        match ctx.link.client.held_publications(&ctx.config.unit_id).await {
            Ok(answer) => {
                held = Some(answer.media_ids);
                break;
            }
            Err(e) => {
                tracing::debug!("cannot list the publications this unit holds yet: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let Some(held) = held else {
        tracing::warn!(
            "the orchestra could not say which publications this unit holds; none removed"
        );
        return;
    };
    let published = match publish::published_ids(&ctx.config.www_root).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("cannot list the web root: {e}");
            return;
        }
    };
    for media in published.into_iter().filter(|id| !held.contains(id)) {
        match publish::unpublish(&ctx.config.www_root, media).await {
            Ok(()) => tracing::info!(%media, "removed a publication this unit does not hold"),
            Err(e) => {
                tracing::warn!(%media, "cannot remove a publication this unit does not hold: {e}")
            }
        }
    }
}

/// What every slot and the heartbeat share.
pub(crate) struct Ctx {
    pub config: PublisherConfig,
    pub broker: Arc<dyn Broker>,
    /// The node client, the unit id and the shutdown switch.
    pub link: UnitLink,
    pub running: Running,
    /// Without a trailing slash.
    pub public_url: String,
    /// For checking published URLs.
    pub http: reqwest::Client,
}
