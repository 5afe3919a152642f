//! The OSCIED transform unit (docs/architecture.md §5, §6): it consumes transform jobs from its queues,
//! claims each task over the orchestra's node API, runs ffmpeg (or the copy encoder) under
//! `tmp/<task>/<attempt>/` in the shared storage, reports progress (which is also its lease
//! heartbeat), and completes the task with the probed output.
//! The unit is a [`oscied_protocol::unit::JobHandler`] ([`job`]) run by
//! [`oscied_protocol::unit::run_unit`], which owns what every unit kind shares (the slots,
//! the claim, the lease reporter, the completion retries, the unit heartbeat, the drain);
//! this crate adds the encoders and the task limits.
//!
//! The same code runs as the `worker-transform` binary (cluster mode, RabbitMQ) and inside
//! the orchestra (standalone mode, in-process queues):
//!
//! ```no_run
//! # async fn demo(broker: std::sync::Arc<dyn oscied_protocol::Broker>) {
//! use worker_transform::{TransformUnit, UnitConfig};
//! let client = oscied_protocol::client::NodeClient::new("http://127.0.0.1:5000", "secret").unwrap();
//! let unit = TransformUnit::new(UnitConfig::new("/srv/oscied/storage".into()), broker, client);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let handle = tokio::spawn(unit.run(async { let _ = stopped.await; }));
//! // ... later: take no new job, drain for `drain_secs`, hand back what still runs (its
//! // ffmpeg killed, its work dir removed), return.
//! let _ = stop.send(());
//! let _ = handle.await;
//! # }
//! ```

pub mod config;
pub mod copy;
pub mod ffmpeg;
mod job;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use oscied_protocol::Broker;
use oscied_protocol::client::NodeClient;
use oscied_protocol::sandbox::SandboxMode;
use oscied_protocol::unit::metrics::UnitMetrics;
use oscied_protocol::unit::{UnitError, UnitSpec, run_unit};
use uuid::Uuid;

/// What a transform unit needs besides its broker and node client. Plain data: the binary
/// fills it from flags, the orchestra from its own configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitConfig {
    /// How the unit calls itself on the node API (`PUT /node/units/{unit_id}`).
    pub unit_id: String,
    /// Where this host mounts the shared storage tree.
    pub storage_root: PathBuf,
    /// The queues consumed (`transform` unless named).
    pub queues: Vec<String>,
    /// Jobs run at once (≥ 1); also the broker prefetch.
    pub concurrency: u32,
    /// Seconds between unit heartbeats.
    pub heartbeat_secs: u64,
    /// Whether ffmpeg and ffprobe run in [`oscied_protocol::sandbox`] (`OSCIED_SANDBOX`).
    pub sandbox: SandboxMode,
    /// The task limits (`OSCIED_TASK_MAX_SECS`, `OSCIED_MAX_OUTPUT_BYTES`).
    pub limits: TaskLimits,
    /// `OSCIED_DRAIN_SECS`: on stop, how long running jobs may go on before they are handed
    /// back (0: at once).
    pub drain_secs: u64,
    /// Seconds a refused node secret is retried before `run` fails
    /// (`OSCIED_REFUSED_EXIT_SECS`, see [`oscied_protocol::unit::secret`]).
    pub refused_exit_secs: u64,
}

/// What one task may take, whatever its profile says. Exceeding a limit ends the task
/// FAILURE with a message naming it; the encoder's whole process group is killed and the
/// task dir removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Wall-clock seconds per task; `None`: max(600, 20 × the input's duration). The CPU-time
    /// rlimit of ffmpeg is this × the cores, as a backstop.
    pub max_secs: Option<u64>,
    /// Bytes the task dir may hold (checked every second; each file is also held to it by
    /// RLIMIT_FSIZE).
    pub max_output_bytes: u64,
}

/// `OSCIED_MAX_OUTPUT_BYTES`'s default: 16 GiB, as the upload limit.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 30;

impl Default for TaskLimits {
    fn default() -> TaskLimits {
        TaskLimits {
            max_secs: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl UnitConfig {
    /// The defaults: a fresh UUID v4 id, queue `transform`, concurrency 1, a heartbeat
    /// every 5 seconds, the sandbox on, the default task limits, no drain (running jobs are
    /// handed back at once on stop), 60 s of a refused secret.
    pub fn new(storage_root: PathBuf) -> UnitConfig {
        UnitConfig {
            unit_id: Uuid::new_v4().to_string(),
            storage_root,
            queues: vec![oscied_protocol::queue::TRANSFORM_QUEUE.to_owned()],
            concurrency: 1,
            heartbeat_secs: 5,
            sandbox: SandboxMode::On,
            limits: TaskLimits::default(),
            drain_secs: 0,
            refused_exit_secs: oscied_protocol::unit::DEFAULT_REFUSED_EXIT_SECS,
        }
    }
}

/// A transform unit, ready to run.
pub struct TransformUnit {
    config: UnitConfig,
    broker: Arc<dyn Broker>,
    client: NodeClient,
    metrics: Arc<UnitMetrics>,
}

impl TransformUnit {
    pub fn new(config: UnitConfig, broker: Arc<dyn Broker>, client: NodeClient) -> TransformUnit {
        TransformUnit {
            config,
            broker,
            client,
            metrics: UnitMetrics::new(),
        }
    }

    /// Count into `metrics` (shared with a server, or with the standalone orchestra) rather
    /// than into metrics of its own.
    pub fn with_metrics(mut self, metrics: Arc<UnitMetrics>) -> TransformUnit {
        self.metrics = metrics;
        self
    }

    /// What the unit counts (its `/metrics`).
    pub fn metrics(&self) -> Arc<UnitMetrics> {
        self.metrics.clone()
    }

    /// Consume and run jobs until `shutdown` resolves; then take no new job, let the running
    /// ones finish for up to `drain_secs`, kill the ffmpeg process groups of those still
    /// running, hand their tasks back (the orchestra queues them again at once), remove their
    /// work dirs and return ([`oscied_protocol::unit::run_unit`]). Meant for `tokio::spawn`.
    /// Ends the same way, with an error, when the orchestra refused the node secret for
    /// `refused_exit_secs`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), UnitError> {
        let config = self.config;
        let mut storage_root = config.storage_root;
        // ffmpeg runs in the task dir, not here: every path it gets must be absolute.
        match std::path::absolute(&storage_root) {
            Ok(root) => storage_root = root,
            Err(e) => tracing::warn!(root = %storage_root.display(), "storage root: {e}"),
        }
        let spec = UnitSpec {
            unit_id: config.unit_id,
            queues: config.queues,
            own_queue: None,
            concurrency: config.concurrency,
            heartbeat_secs: config.heartbeat_secs,
            drain_secs: config.drain_secs,
            refused_exit_secs: config.refused_exit_secs,
        };
        let handler = job::Transform {
            storage_root,
            sandbox: config.sandbox,
            limits: config.limits,
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
