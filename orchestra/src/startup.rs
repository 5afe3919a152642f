//! Building the orchestra from its configuration and serving it.

use std::net::SocketAddr;
use std::sync::Arc;

use oscied_protocol::Broker;
use oscied_protocol::broker::{AmqpBroker, MemoryBroker};
use oscied_protocol::unit::metrics::UnitMetrics;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::error::ApiError;
use crate::logins::{Argon, LoginLimits};
use crate::loops;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::profiles::seed_builtins;
use crate::secrets::{RootSecret, Secrets, VerifiedCache};
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::{MongoStore, SqliteStore, Store};
use crate::thumbnails::Thumbnailer;

/// Logging to stderr, as the units do (`OSCIED_LOG_FORMAT`, `RUST_LOG`).
pub use oscied_protocol::unit::cli::init_tracing;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(
        "data dir {0} is in use by another orchestra ({1}); give each orchestra its own \
         OSCIED_DATA_DIR"
    )]
    DataDirBusy(String, String),
    #[error("storage root {0}: {1}")]
    Storage(String, std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretError),
    #[error("in-process units: {0}")]
    Units(String),
    #[error("argon2: {0}")]
    Argon(String),
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("cannot listen on {1} ({0}): {2}")]
    Listen(&'static str, SocketAddr, std::io::Error),
    #[error("{0}")]
    Sandbox(#[from] oscied_protocol::sandbox::SandboxError),
}

/// An exclusive lock on the data dir (`flock` on `<data dir>/orchestra.lock`, which names
/// its holder), held while the orchestra runs; the kernel drops it when the process ends.
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    const FILE: &str = "orchestra.lock";

    /// Create the data dir if needed and lock it, or say who holds it.
    pub fn take(data_dir: &std::path::Path) -> Result<DataDirLock, StartupError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let shown = data_dir.display().to_string();
        let io = |e| StartupError::DataDir(shown.clone(), e);
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join(Self::FILE))
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "holder unknown".to_owned(),
                named => named.to_owned(),
            };
            return Err(StartupError::DataDirBusy(shown, holder));
        }
        let host =
            hostname::get().map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned());
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "pid {} on {host}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Open the stores and storage, load the secrets (announcing a generated root secret), seed
/// the built-ins. [`spawn`] binds the listeners and locks the data dir first.
pub async fn build(config: Config) -> Result<AppState, StartupError> {
    // Before anything is served: a kernel that cannot confine ffprobe/ffmpeg stops here.
    oscied_protocol::sandbox::check(config.run.sandbox)?;
    let data_dir = config.data_dir.display().to_string();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartupError::DataDir(data_dir.clone(), e))?;
    let root = config.storage_root();
    let replica_id =
        replica_id(&config.data_dir).map_err(|e| StartupError::DataDir(data_dir.clone(), e))?;
    let storage = Storage::open(&root)
        .map(|s| s.owned_by(&replica_id))
        .map_err(|e| StartupError::Storage(root.display().to_string(), e))?;
    match storage.sweep_own_scratch() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "scratch files of this orchestra's last run removed"
        ),
        Err(e) => tracing::warn!(error = %e, "could not sweep this orchestra's scratch files"),
    }
    let store: Arc<dyn Store> = match &config.mongodb_uri {
        Some(uri) => Arc::new(MongoStore::connect(uri).await?),
        None => Arc::new(SqliteStore::open(&config.data_dir.join("oscied.db"))?),
    };
    let (secrets, root_secret) = Secrets::load(
        &config.data_dir,
        store.as_ref(),
        config.root_secret.as_deref(),
        config.rotate_root_secret,
        config.node_secret.as_deref(),
        config.amqp_uri.is_some(),
    )
    .await?;
    if let RootSecret::Generated(secret) = &root_secret {
        // The one place a secret is ever shown: on stderr once, in the log format, whatever
        // RUST_LOG says. It is kept in the data dir of the orchestra that generated it.
        let kept = config.data_dir.join("root_secret").display().to_string();
        oscied_protocol::unit::log::announce(
            config.log_format,
            "orchestra",
            "root secret generated: keep it (every orchestra on this store takes it)",
            &[("root_secret", secret), ("kept_in", &kept)],
        );
    }
    warn_without_ffprobe().await;
    let broker: Arc<dyn Broker> = match &config.amqp_uri {
        Some(uri) => Arc::new(AmqpBroker::connect(uri)),
        None => Arc::new(MemoryBroker::new()),
    };
    let seeded = seed_builtins(store.as_ref()).await?;
    if seeded > 0 {
        tracing::info!(seeded, "built-in profiles seeded");
    }
    let argon = Argon::new(config.argon2_permits()).map_err(|e| StartupError::Argon(e.message))?;
    let logins = LoginLimits::new(&config);
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "orchestra".into());
    let replica = format!("{host}:{replica_id}");
    // Replicas share their events through RabbitMQ; standalone has no one to share with.
    let events = if broker.durable() {
        crate::events::Hub::shared(broker.clone())
    } else {
        Arc::new(crate::events::Hub::local())
    };
    // Standalone mode's in-process units count into the orchestra's own /metrics.
    let local_units = config.amqp_uri.is_none().then(UnitMetrics::new);
    let metrics = Arc::new(Metrics::new(local_units));
    let webhooks =
        crate::webhook_client::WebhookClient::new(&config).map_err(StartupError::Webhooks)?;
    Ok(AppState {
        store,
        events,
        webhooks: Arc::new(webhooks),
        outbox: Arc::new(Outbox::new(broker.clone(), metrics.clone())),
        metrics,
        broker,
        thumbnailer: Arc::new(Thumbnailer::new(storage.clone(), config.run.sandbox)),
        storage,
        secrets: Arc::new(secrets),
        config: Arc::new(config),
        verified: Arc::new(VerifiedCache::default()),
        argon: Arc::new(argon),
        logins: Arc::new(logins),
        replica: replica.into(),
        totals: Arc::default(),
    })
}

/// This orchestra's id among the replicas (the holder of its leases, the owner of its
/// scratch files): kept in its data dir. A restart on the same data dir (whose lock keeps it
/// one process) is the same replica, so it takes its leases back at once instead of waiting
/// for them to lapse, and removes what it left in `tmp/` when it died.
fn replica_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("replica_id");
    match std::fs::read_to_string(&path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok(kept.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let fresh = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    std::fs::write(&path, format!("{fresh}\n"))?;
    Ok(fresh)
}

/// Bind `addr`; an error names the variable that set it.
async fn bind(addr: SocketAddr, variable: &'static str) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartupError::Listen(variable, addr, e))
}

/// Uploads need ffprobe; say so at start rather than at the first upload (which answers 503).
async fn warn_without_ffprobe() {
    // The same check `/health` reports.
    if oscied_protocol::probe::tool_version("ffprobe")
        .await
        .is_none()
    {
        tracing::warn!(
            "ffprobe is not on the PATH: uploads will answer 503 until ffmpeg is installed"
        );
    }
}

pub fn app(state: AppState) -> axum::Router {
    let metrics = state.metrics.clone();
    // Router::layer wraps each route, so the matched route is known to the trace layer and
    // the request counter. Outermost last: a client's id is checked, kept or made, copied to
    // the answer, then the request is traced (its span holds the id, so a handler's own log
    // lines name it).
    crate::http::router(state)
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::internal(
                    "the server hit a bug; it has been logged",
                ))
            },
        ))
        // After the panic catcher, so its 500 says nosniff too.
        .layer(axum::middleware::map_response(crate::http::ui::nosniff))
        .layer(axum::middleware::from_fn(crate::http::browser_challenge))
        // Outside the panic catcher: its 500s are counted too.
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::http::metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_body_chunk(())
                .on_eos(())
                // The answer's line says it (with its status); no second line for a 5xx.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower::util::MapRequestLayer::new(drop_odd_request_id))
}

const X_REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; a longer or odd one is replaced by a UUID.
const MAX_REQUEST_ID: usize = 128;

/// A client's `X-Request-Id` is kept when it is 1–128 visible ASCII characters (it is echoed
/// and logged); otherwise it is dropped and one is generated.
fn drop_odd_request_id<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let sane = |value: &axum::http::HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(u8::is_ascii_graphic)
    };
    let headers = request.headers_mut();
    let all_sane = headers.get_all(X_REQUEST_ID).iter().count() == 1
        && headers.get(X_REQUEST_ID).is_some_and(sane);
    if !all_sane {
        headers.remove(X_REQUEST_ID);
    }
    request
}

/// One span per request: method, matched route (none for an unknown one), the path without
/// its query (which may carry secrets) and the request id.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = route.as_deref(),
        path = request.uri().path(),
        request_id = id,
    )
}

/// The request's one line: at info for 4xx and 5xx, at debug otherwise.
fn log_response<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    let status = response.status().as_u16();
    // Milliseconds to a tenth.
    let latency_ms = (latency.as_secs_f64() * 10_000.0).round() / 10.0;
    if status >= 400 {
        tracing::info!(status, latency_ms, "answered");
    } else {
        tracing::debug!(status, latency_ms, "answered");
    }
}

/// A running orchestra: its address and the task serving it.
pub struct Running {
    pub addr: SocketAddr,
    /// Standalone mode: where the in-process publisher serves published medias.
    pub public_url: Option<String>,
    pub state: AppState,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub background: Background,
    /// Ends the server (graceful: open requests finish). See [`Running::shutdown`].
    stop_server: tokio::sync::watch::Sender<bool>,
    /// Held while running: a second orchestra on this data dir refuses to start.
    _data_lock: DataDirLock,
}

impl Running {
    /// Stop as on SIGTERM: the in-process units take no new job, drain for
    /// `OSCIED_DRAIN_SECS` and hand back what still runs (they call this orchestra back, so
    /// it still serves meanwhile); then the background loops and the server stop.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.background.stop_units().await;
        self.background.loops.abort();
        if let Some(webhooks) = &self.background.webhooks {
            webhooks.abort();
        }
        loops::release(&self.state).await;
        self.state.events.close();
        self.stop_server.send_replace(true);
        match (&mut self.server).await {
            Ok(served) => served,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The orchestra's own tasks beside the server: the dispatch loop and reaper, and in
/// standalone mode the in-process units. Dropping it aborts them ([`Running::shutdown`]
/// stops the units cleanly first).
pub struct Background {
    loops: tokio::task::JoinHandle<()>,
    /// Matching this replica's events to the webhooks.
    webhooks: Option<tokio::task::JoinHandle<()>>,
    units: Option<LocalUnits>,
}

/// Standalone mode's in-process units and the switch that stops them.
struct LocalUnits {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Background {
    /// Stop the in-process units (each drains, hands back its running tasks and removes their
    /// files) and wait until they have.
    async fn stop_units(&mut self) {
        if let Some(mut units) = self.units.take() {
            units.stop.send_replace(true);
            if let Err(e) = (&mut units.task).await {
                tracing::error!("the in-process units failed while stopping: {e}");
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.loops.abort();
        if let Some(webhooks) = &self.webhooks {
            webhooks.abort();
        }
        if let Some(units) = &self.units {
            units.task.abort();
        }
    }
}

/// The ids of standalone mode's in-process units. They are the same across restarts, so the
/// tasks they held when the orchestra stopped are taken back at once on the next start, and
/// the in-process publisher keeps serving what it published.
pub const LOCAL_TRANSFORM_UNIT: &str = "standalone-transform";
pub const LOCAL_PUBLISHER_UNIT: &str = "standalone-publisher";

/// Standalone mode: a transform unit and a publisher unit in this process, consuming the
/// in-process queues and calling this orchestra back over HTTP like any unit. Returns the
/// task running them and the publisher's public URL.
async fn start_local_units(
    state: &AppState,
    addr: SocketAddr,
    publisher_listener: TcpListener,
) -> Result<(LocalUnits, String), StartupError> {
    let client =
        oscied_protocol::client::NodeClient::new(&format!("http://{addr}"), &state.secrets.node)
            .map_err(|e| StartupError::Units(e.to_string()))?;
    let config = worker_transform::UnitConfig {
        unit_id: LOCAL_TRANSFORM_UNIT.to_owned(),
        storage_root: state.storage.root().to_path_buf(),
        queues: vec![oscied_protocol::queue::TRANSFORM_QUEUE.to_owned()],
        concurrency: state.config.concurrency,
        heartbeat_secs: 5,
        sandbox: state.config.run.sandbox,
        limits: state.config.run.limits(),
        drain_secs: state.config.drain_secs,
        refused_exit_secs: oscied_protocol::unit::DEFAULT_REFUSED_EXIT_SECS,
    };
    let units_metrics = state.metrics.local_units().unwrap_or_default();
    let transform =
        worker_transform::TransformUnit::new(config, state.broker.clone(), client.clone())
            .with_metrics(units_metrics.clone());
    let mut config = worker_publisher::PublisherConfig::new(
        state.storage.root().to_path_buf(),
        state.config.www_root(),
    );
    config.unit_id = LOCAL_PUBLISHER_UNIT.to_owned();
    config.listen = state.config.publisher_listen;
    config.public_url = state.config.public_url.clone();
    config.serve_limits = state.config.serve_limits();
    config.drain_secs = state.config.drain_secs;
    let publisher = worker_publisher::PublisherUnit::with_listener(
        config,
        state.broker.clone(),
        client,
        publisher_listener,
    )
    .await
    .map_err(|e| StartupError::Units(format!("publisher: {e}")))?
    .with_metrics(units_metrics)
    .with_metrics_token(state.config.metrics_token.clone());
    let public_url = publisher.public_url().to_owned();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the switch is gone with the orchestra: stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let (transform_stop, publisher_stop) = (until_stopped(), until_stopped());
    let task = tokio::spawn(async move {
        // They call this orchestra with its own node secret: a failure is not expected.
        let (transform, publisher) =
            tokio::join!(transform.run(transform_stop), publisher.run(publisher_stop));
        for failure in [transform.err(), publisher.err()].into_iter().flatten() {
            tracing::error!("an in-process unit stopped: {failure}");
        }
    });
    Ok((LocalUnits { task, stop }, public_url))
}

/// Build and start serving in the background (tests embed the orchestra this way).
/// Start-up order: bind the listeners (a busy port fails before anything else), lock the
/// data dir, then [`build`] (which announces a generated root secret).
pub async fn spawn(config: Config) -> Result<Running, StartupError> {
    let listen = config.listen;
    let listener = bind(listen, "OSCIED_LISTEN").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartupError::Listen("OSCIED_LISTEN", listen, e))?;
    let publisher_listener = match config.amqp_uri {
        None => Some(bind(config.publisher_listen, "OSCIED_PUBLISHER_LISTEN").await?),
        Some(_) => None,
    };
    let data_lock = DataDirLock::take(&config.data_dir)?;
    let state = build(config).await?;
    let app = app(state.clone());
    let limits = state.config.serve_limits();
    // Stopped by `Running::shutdown`, after the in-process units that call it back.
    let (stop_server, server_stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(oscied_protocol::http::serve(
        listener,
        app,
        limits,
        async move {
            let mut stopped = server_stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    ));
    let standalone = state.config.amqp_uri.is_none();
    let local_units: &[&str] = if standalone {
        &[LOCAL_TRANSFORM_UNIT, LOCAL_PUBLISHER_UNIT]
    } else {
        &[]
    };
    loops::recover(&state, local_units).await;
    let loops = loops::spawn(state.clone());
    let webhooks = crate::webhooks::spawn(state.clone());
    let (units, public_url) = match publisher_listener {
        Some(publisher_listener) => {
            let (units, url) = start_local_units(&state, addr, publisher_listener).await?;
            (Some(units), Some(url))
        }
        None => (None, None),
    };
    Ok(Running {
        addr,
        public_url,
        state,
        server,
        background: Background {
            loops,
            webhooks,
            units,
        },
        stop_server,
        _data_lock: data_lock,
    })
}

/// Serve until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let running = spawn(config).await?;
    tracing::info!(
        addr = %running.addr,
        store = running.state.store.kind(),
        storage = %running.state.storage.root().display(),
        "orchestra listening on http://{}/api/v1",
        running.addr
    );
    if let Some(url) = &running.public_url {
        tracing::info!("in-process publisher serving published medias at {url}/medias/");
    }
    let mut running = running;
    tokio::select! {
        served = &mut running.server => {
            served??;
            return Ok(());
        }
        () = shutdown_signal() => {}
    }
    tracing::info!(
        drain_secs = running.state.config.drain_secs,
        "orchestra stopping"
    );
    running.shutdown().await?;
    tracing::info!("orchestra stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
