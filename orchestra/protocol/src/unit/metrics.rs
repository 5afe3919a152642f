//! A unit's own metrics (docs/architecture.md §18): tasks handled by outcome, ffmpeg
//! processes running, bytes of output written, CPU seconds per task. A unit process serves
//! them at its own `/metrics` ([`routes`]: the publisher on its HTTP server, the transform
//! unit on `OSCIED_METRICS_LISTEN`); the standalone orchestra adds its in-process units' to
//! its own registry ([`UnitMetrics::register`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::metrics::{authorized, encode, exposition, unauthorized};
use crate::node::UnitKind;

/// CPU seconds of one task's ffmpeg: from a fraction of a second to hours.
const CPU_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    kind: &'static str,
    /// `success`, `failure`, `revoked`, `stale`, `handed_back`.
    outcome: &'static str,
}

/// The metrics of one unit process (both units in the standalone orchestra: `kind` tells
/// them apart). Cheap handles: every clone of a metric counts into the same value.
#[derive(Debug)]
pub struct UnitMetrics {
    tasks: Family<TaskLabels, Counter>,
    ffmpeg_processes: Gauge,
    bytes_written: Counter,
    task_cpu_seconds: Histogram,
    registry: Registry,
}

impl Default for UnitMetrics {
    fn default() -> Self {
        let mut metrics = UnitMetrics {
            tasks: Family::default(),
            ffmpeg_processes: Gauge::default(),
            bytes_written: Counter::default(),
            task_cpu_seconds: Histogram::new(CPU_BUCKETS),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }
}

impl UnitMetrics {
    pub fn new() -> Arc<UnitMetrics> {
        Arc::new(UnitMetrics::default())
    }

    /// Add these metrics to `registry` as well (the standalone orchestra's own).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "oscied_unit_tasks",
            "Attempts a unit ended, by unit kind and outcome",
            self.tasks.clone(),
        );
        registry.register(
            "oscied_unit_ffmpeg_processes",
            "ffmpeg processes the unit runs now",
            self.ffmpeg_processes.clone(),
        );
        registry.register(
            "oscied_unit_bytes_written",
            "Bytes of the outputs the unit's encodes wrote (successful attempts)",
            self.bytes_written.clone(),
        );
        registry.register(
            "oscied_unit_task_cpu_seconds",
            "CPU seconds (user + system) of one attempt's ffmpeg",
            self.task_cpu_seconds.clone(),
        );
    }

    /// An attempt ended: `outcome` is one of `success`, `failure`, `revoked`, `stale`,
    /// `handed_back`.
    pub fn task_ended(&self, kind: UnitKind, outcome: &'static str) {
        self.tasks
            .get_or_create(&TaskLabels {
                kind: kind.as_str(),
                outcome,
            })
            .inc();
    }

    /// One ffmpeg process more, until the guard is dropped.
    pub fn ffmpeg_running(&self) -> FfmpegRunning {
        self.ffmpeg_processes.inc();
        FfmpegRunning(self.ffmpeg_processes.clone())
    }

    pub fn bytes_written(&self, bytes: u64) {
        self.bytes_written.inc_by(bytes);
    }

    pub fn task_cpu(&self, seconds: f64) {
        self.task_cpu_seconds.observe(seconds);
    }

    /// The exposition of this unit's metrics alone.
    pub fn encode(&self) -> String {
        encode(&[&self.registry])
    }
}

/// Counts one running ffmpeg while it lives.
#[derive(Debug)]
pub struct FfmpegRunning(Gauge);

impl Drop for FfmpegRunning {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<UnitMetrics>,
    token: Option<Arc<str>>,
}

/// `GET /metrics` of a unit, behind `token` when one is set (`OSCIED_METRICS_TOKEN`).
pub fn routes(metrics: Arc<UnitMetrics>, token: Option<String>) -> Router {
    let scrape = Scrape {
        metrics,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/metrics", get(answer))
        .with_state(scrape)
}

async fn answer(State(scrape): State<Scrape>, headers: HeaderMap) -> Response {
    if !authorized(&headers, scrape.token.as_deref()) {
        return unauthorized();
    }
    exposition(scrape.metrics.encode())
}

/// Serve [`routes`] alone on `listener` until `shutdown` (the transform unit's
/// `OSCIED_METRICS_LISTEN`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<UnitMetrics>,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = routes(metrics, token);
    crate::http::serve(listener, app, crate::http::ServeLimits::default(), shutdown).await
}

/// CPU seconds (user + system, with those of the children it waited for) of the process
/// `pid`, from `/proc/<pid>/stat`: readable while it runs and while it is a zombie, not
/// once it is reaped.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat, clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Fields 14–17 of `/proc/<pid>/stat` (utime, stime, cutime, cstime), after the command name,
/// which is in parentheses and may hold spaces.
fn parse_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 3 (state) is the first after the name: utime is the 12th from there.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks_used: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks_used as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_come_from_the_stat_fields() {
        let stat = "4242 (ff mpeg) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 7 3 20 0 9 0";
        assert_eq!(parse_cpu_seconds(stat, 100.0), Some(3.1));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1", 100.0), None);
        assert!(cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn the_exposition_counts_tasks_and_processes() {
        let metrics = UnitMetrics::new();
        metrics.task_ended(UnitKind::Transform, "success");
        let running = metrics.ffmpeg_running();
        metrics.bytes_written(1234);
        metrics.task_cpu(1.5);
        let text = metrics.encode();
        assert!(
            text.contains("oscied_unit_tasks_total{kind=\"transform\",outcome=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("oscied_unit_ffmpeg_processes 1"), "{text}");
        assert!(
            text.contains("oscied_unit_bytes_written_total 1234"),
            "{text}"
        );
        assert!(
            text.contains("oscied_unit_task_cpu_seconds_count 1"),
            "{text}"
        );
        drop(running);
        assert!(metrics.encode().contains("oscied_unit_ffmpeg_processes 0"));
    }
}
