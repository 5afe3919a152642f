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
//! - **Shutdown** ([`oscied_protocol::unit::wind_down`]): stop consuming, let running
//!   publications finish for up to `drain_secs` (`OSCIED_DRAIN_SECS`, default 0), then cancel
//!   those still running (their staging and anything already renamed into place is removed)
//!   and hand them back to the orchestra, which queues them again at once; published media
//!   stay in place and served after a restart. The HTTP server serves until then, and stops
//!   gracefully, giving open downloads a few seconds.

pub mod config;
pub mod publish;
pub mod serve;
mod slot;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oscied_protocol::client::NodeClient;
use oscied_protocol::http::ServeLimits;
use oscied_protocol::node::HeldPublication;
use oscied_protocol::node::UnitKind;
use oscied_protocol::queue::{PUBLISHER_QUEUE, check_unit_queues, unit_queue};
use oscied_protocol::unit::{self, Running, UnitError, UnitInfo, UnitLink};
use oscied_protocol::{Broker, TaskStatus};
use tokio::net::TcpListener;
use tokio::sync::Notify;
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

    /// Serve and consume until `shutdown` resolves; then take no new job, let running
    /// publications finish for up to `drain_secs`, cancel and hand back those still running
    /// (the orchestra queues them again at once), stop serving and return. Meant for
    /// `tokio::spawn`. Ends the same way, with an error, when the orchestra refused the node
    /// secret for `refused_exit_secs`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), UnitError> {
        let mut config = self.config;
        config.concurrency = config.concurrency.max(1);
        config.heartbeat_secs = config.heartbeat_secs.max(1);
        // The binary's flags refuse them already; a library caller gets the same rule.
        if let Err(e) = check_unit_queues(UnitKind::Publisher, &config.queues) {
            tracing::error!("publisher unit not started: {e}");
            return Err(UnitError::NotStarted(e.to_string()));
        }
        let (mut link, stop) =
            UnitLink::new(self.client, config.unit_id.clone(), UnitKind::Publisher);
        link.set_refused_exit(Duration::from_secs(config.refused_exit_secs));
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(slot::CHECK_TRY_TIMEOUT)
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                // Only a broken TLS backend makes this fail; the unit could check nothing.
                tracing::error!("publisher unit cannot start its HTTP client: {e}");
                return Err(UnitError::NotStarted(format!("HTTP client: {e}")));
            }
        };
        let ctx = Arc::new(Ctx {
            config,
            broker: self.broker,
            link,
            running: Running::default(),
            public_url: self.public_url,
            http,
            reconcile_now: Notify::new(),
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
        if let Err(e) = publish::remove_orphan_owners(&ctx.config.www_root).await {
            tracing::warn!("cannot clean the publication records: {e}");
        }
        reconcile(&ctx, 3).await;
        let reconciler = tokio::spawn(reconcile_loop(ctx.clone()));
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
        let mut ended = Ok(());
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                failure = ctx.link.refused_for_good() => {
                    tracing::error!("{failure}; the unit stops");
                    ended = Err(failure);
                    break;
                }
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
        unit::wind_down(&stop, &ctx.running, &mut slots, ctx.config.drain_secs).await;
        heartbeat.abort();
        reconciler.abort();
        if !server.is_finished()
            && tokio::time::timeout(SERVER_GRACE, &mut server)
                .await
                .is_err()
        {
            tracing::warn!("downloads still open after {SERVER_GRACE:?}: closing the server");
            server.abort();
        }
        tracing::info!("publisher unit stopped");
        ended
    }
}

/// Keep in the web root only what the orchestra says is held, so nothing stays served that
/// an unpublish would not reach: a publication recorded as made by (unit, task, attempt)
/// stays iff that unit id holds that task at that attempt SUCCESS or REVOKING, or STARTED or
/// PROGRESS while it runs here right now. Every unit id found in the records is asked (its
/// own first): files made under an earlier id (its state dir lost) stay while that id holds
/// them. A publication without a record (made by an older version) stays iff its media is
/// held. When the orchestra cannot answer, nothing is removed: serving a stale copy for a
/// while is better than removing a held one.
///
/// Run before taking any job (nothing runs here then, so an attempt of ours still STARTED or
/// PROGRESS is a lost one), when a claim or a completion is refused, and every
/// `reconcile_secs`.
async fn reconcile(ctx: &Ctx, tries: u32) {
    let www = &ctx.config.www_root;
    let published = match publish::published_ids(www).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("cannot list the web root: {e}");
            return;
        }
    };
    // Read before what runs here and what the orchestra says: a publication put in place
    // meanwhile is under another record, and its files are removed only if still this one's.
    let mut owned = Vec::with_capacity(published.len());
    for media in published {
        owned.push((media, publish::read_owner(www, media).await));
    }
    let running = ctx.running.attempts();
    let mut unit_ids = vec![ctx.config.unit_id.clone()];
    for owner in owned.iter().filter_map(|(_, owner)| owner.as_ref()) {
        if !unit_ids.contains(&owner.unit_id) {
            unit_ids.push(owner.unit_id.clone());
        }
    }
    let mut held: HashMap<String, Vec<HeldPublication>> = HashMap::new();
    let mut held_medias = HashSet::new();
    for unit_id in &unit_ids {
        let mut answer = None;
        for try_ in 1..=tries.max(1) {
            match ctx.link.client.held_publications(unit_id).await {
                Ok(held) => {
                    answer = Some(held);
                    break;
                }
                Err(e) => {
                    tracing::debug!(unit = %unit_id, "cannot list the publications held yet: {e}");
                    if try_ < tries {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        let Some(answer) = answer else {
            tracing::warn!(
                unit = %unit_id,
                "the orchestra could not say which publications are held; none removed"
            );
            return;
        };
        held_medias.extend(answer.media_ids);
        held.insert(unit_id.clone(), answer.publications);
    }
    for (media, owner) in owned {
        let keep = match &owner {
            Some(owner) => held.get(&owner.unit_id).is_some_and(|tasks| {
                tasks.iter().any(|p| {
                    p.task_id == owner.task_id
                        && p.attempt == owner.attempt
                        && match p.status {
                            TaskStatus::Success | TaskStatus::Revoking => true,
                            TaskStatus::Started | TaskStatus::Progress => {
                                owner.unit_id == ctx.config.unit_id
                                    && running.contains(&(owner.task_id, owner.attempt))
                            }
                            _ => false,
                        }
                })
            }),
            None => held_medias.contains(&media),
        };
        if keep {
            continue;
        }
        let removed = match &owner {
            Some(owner) => publish::unpublish_owned(www, media, &owner.staging_name()).await,
            None => publish::unpublish(www, media).await,
        };
        match removed {
            Ok(()) => tracing::info!(
                %media, made_by = ?owner, "removed a publication no unit of ours holds"
            ),
            Err(e) => tracing::warn!(
                %media, "cannot remove a publication no unit of ours holds: {e}"
            ),
        }
    }
}

/// The periodic reconcile, also run at once when a slot asks (a refused claim or
/// completion).
async fn reconcile_loop(ctx: Arc<Ctx>) {
    let every = Duration::from_secs(ctx.config.reconcile_secs.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = ctx.reconcile_now.notified() => {}
            () = ctx.link.stopped() => return,
        }
        reconcile(&ctx, 1).await;
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
    /// Asks [`reconcile_loop`] for a reconcile now.
    pub reconcile_now: Notify,
}
