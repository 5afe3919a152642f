//! What `GET /metrics` shows (docs/architecture.md §18), as a `prometheus-client` registry.
//!
//! Two sorts of metrics. Counters and histograms of what this process did (tasks it saw end,
//! requests it answered, publications that failed, webhooks it delivered, store errors) are
//! updated where it happens and are per replica: Prometheus labels each scrape with its
//! `instance`, so nothing here names the replica. Gauges that describe the store (tasks not
//! over by kind, queue and status; queue depth and the oldest waiting task; units online;
//! tasks each unit runs) are read from the store at scrape time, at most once per
//! [`STORE_TTL`]: every replica reports the same store-wide values, which is right, and a
//! scrape storm costs the store one grouped query per kind every two seconds.
//!
//! Labels only take values from bounded sets: route templates, never raw paths; failure
//! reasons classified into a few names ([`failure_reason`]), never the error text.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use oscied_protocol::TaskStatus;
use oscied_protocol::unit::metrics::UnitMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StoreError;

/// How long the store-derived gauges of one scrape serve the next ones.
pub const STORE_TTL: Duration = Duration::from_secs(2);

/// Seconds a task ran, from its claim to its end: a copy takes a second, an encode hours.
const DURATION_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0,
];
/// Output seconds per wall second of a successful transform: 0.1x (a slow encode) to 100x
/// (a copy).
const SPEED_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// Seconds to answer a request: most in milliseconds, uploads in minutes.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// The route label of a request that matched no route (its path is the client's).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    kind: &'static str,
    queue: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStatus {
    kind: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    kind: &'static str,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    kind: &'static str,
    unit: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A `StoreError` becomes an `ApiError` in one place (`crate::error`), where no state is at
/// hand: the one counter of this process that lives outside [`Metrics`] (every `Metrics`
/// of the process registers it).
static STORE_ERRORS: LazyLock<Family<ErrorLabels, Counter>> = LazyLock::new(Family::default);

/// A store call failed (counted in `oscied_store_errors_total`); a taken unique field is the
/// client's doing and not counted.
pub fn store_error(error: &StoreError) {
    let error = match error {
        StoreError::Conflict(_) => return,
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
    };
    STORE_ERRORS.get_or_create(&ErrorLabels { error }).inc();
}

/// What the store says at one scrape, gathered by the caller (`crate::overview::metrics`).
#[derive(Debug, Default)]
pub struct StoreView {
    /// Tasks not over, by kind, queue and status.
    pub tasks: Vec<TaskCount>,
    /// Every registered unit: kind, id, online.
    pub units: Vec<(&'static str, String, bool)>,
    /// Running tasks by holder: the task kind, the unit, how many.
    pub running: Vec<(&'static str, String, u64)>,
}

#[derive(Debug)]
pub struct TaskCount {
    pub kind: &'static str,
    pub queue: String,
    pub status: TaskStatus,
    pub count: u64,
    /// The oldest one's age in seconds.
    pub oldest_age_secs: Option<f64>,
}

pub struct Metrics {
    registry: Registry,
    tasks_finished: Family<TaskLabels, Counter>,
    task_duration: HistogramFamily<KindStatus>,
    encode_speed: Histogram,
    failures: Family<FailureLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    publish_failures: Counter,
    broker_reconnects: Counter,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    tasks: Family<TaskLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    oldest_waiting: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    units_online: Family<KindLabels, Gauge>,
    unit_running: Family<UnitLabels, Gauge>,
    store_up: Gauge,
    /// Standalone mode's in-process units count into these (shown here too).
    local_units: Option<Arc<UnitMetrics>>,
    /// When the store gauges were last read; held while they are read, so that scrapes at
    /// once wait for one reading rather than each making theirs.
    read_at: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// The registry, with the metrics of standalone mode's in-process units when given.
    pub fn new(local_units: Option<Arc<UnitMetrics>>) -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            tasks_finished: Family::default(),
            task_duration: Family::new_with_constructor(duration_histogram),
            encode_speed: Histogram::new(SPEED_BUCKETS),
            failures: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            publish_failures: Counter::default(),
            broker_reconnects: Counter::default(),
            webhook_deliveries: Family::default(),
            tasks: Family::default(),
            queue_depth: Family::default(),
            oldest_waiting: Family::default(),
            units_online: Family::default(),
            unit_running: Family::default(),
            store_up: Gauge::default(),
            local_units,
            read_at: tokio::sync::Mutex::new(None),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        if let Some(units) = &metrics.local_units {
            units.register(&mut registry);
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "oscied_tasks_finished",
            "Tasks this replica saw end (it wrote their final status), by kind, queue and status",
            self.tasks_finished.clone(),
        );
        r.register(
            "oscied_task_duration_seconds",
            "Seconds from a task's start (its last claim) to its end, by kind and final status",
            self.task_duration.clone(),
        );
        r.register(
            "oscied_transform_encode_speed",
            "Output media seconds per wall second of a successful transform task",
            self.encode_speed.clone(),
        );
        r.register(
            "oscied_task_failures",
            "Tasks ended in FAILURE, by kind and reason (lease_lost, limit, input_gone, output, \
             encoder, other)",
            self.failures.clone(),
        );
        r.register(
            "oscied_http_requests",
            "Requests answered, by method, route template and status",
            self.requests.clone(),
        );
        r.register(
            "oscied_http_request_duration_seconds",
            "Seconds to answer a request (to its headers), by method and route template",
            self.latency.clone(),
        );
        r.register(
            "oscied_broker_publish_failures",
            "Task messages the broker did not take (the dispatch loop sends them again)",
            self.publish_failures.clone(),
        );
        r.register(
            "oscied_broker_reconnects",
            "Connections to the broker made again after a loss",
            self.broker_reconnects.clone(),
        );
        r.register(
            "oscied_webhook_deliveries",
            "Webhook deliveries, by outcome (delivered, retried, failed, refused)",
            self.webhook_deliveries.clone(),
        );
        r.register(
            "oscied_store_errors",
            "Store calls that failed (unavailable, corrupt)",
            STORE_ERRORS.clone(),
        );
        r.register(
            "oscied_tasks",
            "Tasks not over, by kind, queue and status (the store's, same on every replica)",
            self.tasks.clone(),
        );
        r.register(
            "oscied_queue_depth",
            "Tasks waiting for a unit (PENDING or RETRY), by kind and queue",
            self.queue_depth.clone(),
        );
        r.register(
            "oscied_queue_oldest_waiting_seconds",
            "Age of the oldest task waiting for a unit (since its creation), by kind and queue",
            self.oldest_waiting.clone(),
        );
        r.register(
            "oscied_units_online",
            "Units with a heartbeat within three of their intervals, by kind",
            self.units_online.clone(),
        );
        r.register(
            "oscied_unit_running_tasks",
            "Tasks each registered unit holds (STARTED, PROGRESS, REVOKING)",
            self.unit_running.clone(),
        );
        r.register(
            "oscied_store_up",
            "1 when the last reading of the store gauges succeeded, else 0",
            self.store_up.clone(),
        );
    }

    /// What standalone mode's in-process units count into; None in cluster mode.
    pub fn local_units(&self) -> Option<Arc<UnitMetrics>> {
        self.local_units.clone()
    }

    /// A task of `kind` has just ended (counted once, by the writer that ended it).
    pub fn task_finished(
        &self,
        kind: &'static str,
        queue: &str,
        status: TaskStatus,
        ran_secs: Option<f64>,
        error: Option<&str>,
    ) {
        let status_label = status.as_str();
        self.tasks_finished
            .get_or_create(&TaskLabels {
                kind,
                queue: queue.to_owned(),
                status: status_label,
            })
            .inc();
        if let Some(secs) = ran_secs {
            self.task_duration
                .get_or_create(&KindStatus {
                    kind,
                    status: status_label,
                })
                .observe(secs.max(0.0));
        }
        if status == TaskStatus::Failure {
            let reason = failure_reason(error.unwrap_or_default());
            self.failures
                .get_or_create(&FailureLabels { kind, reason })
                .inc();
        }
    }

    /// A transform made `output_secs` of media in `wall_secs`.
    pub fn encode_speed(&self, output_secs: f64, wall_secs: f64) {
        if output_secs > 0.0 && wall_secs > 0.0 {
            self.encode_speed.observe(output_secs / wall_secs);
        }
    }

    /// One answered request; `route` is its template (or [`UNMATCHED_ROUTE`]).
    pub fn request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.latency
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(latency.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// A task message the broker did not take.
    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }

    /// A webhook delivery attempt's outcome: `delivered`, `retried` (failed, to be sent
    /// again), `failed` (not again) or `cancelled` (its webhook was disabled).
    pub(crate) fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The exposition. The store gauges are read with `read` unless they were read less than
    /// [`STORE_TTL`] ago; `reconnects` is the broker's count so far.
    pub async fn encode<F, Fut, E>(&self, reconnects: u64, read: F) -> String
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<StoreView, E>>,
        E: std::fmt::Display,
    {
        // The broker counts its reconnects itself: the counter follows it.
        self.broker_reconnects
            .inc_by(reconnects.saturating_sub(self.broker_reconnects.get()));
        let mut read_at = self.read_at.lock().await;
        if read_at.is_none_or(|at| at.elapsed() >= STORE_TTL) {
            match read().await {
                Ok(view) => {
                    self.show(&view);
                    self.store_up.set(1);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: the store gauges could not be read");
                    self.store_up.set(0);
                }
            }
            *read_at = Some(Instant::now());
        }
        // Under the lock too: no scrape sees the gauges half replaced by another's reading.
        oscied_protocol::http::metrics::encode(&[&self.registry])
    }

    /// Replace the store gauges with `view` (a series whose tasks are gone disappears).
    fn show(&self, view: &StoreView) {
        self.tasks.clear();
        self.queue_depth.clear();
        self.oldest_waiting.clear();
        self.units_online.clear();
        self.unit_running.clear();
        for kind in ["transform", "publisher"] {
            self.units_online.get_or_create(&KindLabels { kind }).set(0);
        }
        for (kind, unit, online) in &view.units {
            let labels = UnitLabels {
                kind,
                unit: unit.clone(),
            };
            self.unit_running.get_or_create(&labels).set(0);
            if *online {
                self.units_online.get_or_create(&KindLabels { kind }).inc();
            }
        }
        for t in &view.tasks {
            let count = i64::try_from(t.count).unwrap_or(i64::MAX);
            self.tasks
                .get_or_create(&TaskLabels {
                    kind: t.kind,
                    queue: t.queue.clone(),
                    status: t.status.as_str(),
                })
                .inc_by(count);
            let queue = QueueLabels {
                kind: t.kind,
                queue: t.queue.clone(),
            };
            // Every queue with a task in it shows a depth, 0 when nothing waits.
            let depth = self.queue_depth.get_or_create(&queue);
            if t.status.is_queued() {
                depth.inc_by(count);
                let oldest = self.oldest_waiting.get_or_create(&queue);
                if let Some(age) = t.oldest_age_secs
                    && age > oldest.get()
                {
                    oldest.set(age);
                }
            }
        }
        for (kind, unit, n) in &view.running {
            self.unit_running
                .get_or_create(&UnitLabels {
                    kind,
                    unit: unit.clone(),
                })
                .inc_by(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }
}

/// The reason label of a FAILURE: a few fixed names, from the error the task ended with (the
/// orchestra's own wording, or the unit's).
pub fn failure_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| e.contains(n));
    if has(&["went silent", "was forgotten"]) {
        "lease_lost"
    } else if has(&[
        "exceeded its",
        "limit of",
        "max_output_bytes",
        "task_max_secs",
    ]) {
        "limit"
    } else if has(&["is gone", "was deleted", "does not exist"]) {
        "input_gone"
    } else if has(&["the output", "public url", "not reachable"]) {
        "output"
    } else if has(&["ffmpeg", "encoder", "copy failed", "invalid", "unknown"]) {
        "encoder"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_a_few_names() {
        let cases = [
            (
                "unit unit-1 went silent (no report for 30 s) on attempt 3 of 3: giving up",
                "lease_lost",
            ),
            (
                "unit u was forgotten by an admin; the publication went with it",
                "lease_lost",
            ),
            (
                "the task exceeded its wall-clock limit of 600 s (20 × 30 s) and was stopped",
                "limit",
            ),
            (
                "ffmpeg exceeded its CPU-time limit of 60 s (30 × 2 cores; x)",
                "limit",
            ),
            ("the input media 1234 is gone", "input_gone"),
            ("the profile 1234 was deleted", "input_gone"),
            ("the input uploads/x.mp4 does not exist", "input_gone"),
            ("the output is unreadable: moov atom not found", "output"),
            (
                "the published media is not reachable at its public URL: GET x 404",
                "output",
            ),
            (
                "ffmpeg exited with status 1: Unknown encoder 'x'",
                "encoder",
            ),
            ("copy failed: permission denied", "encoder"),
            ("", "other"),
            ("something else entirely", "other"),
        ];
        for (error, reason) in cases {
            assert_eq!(failure_reason(error), reason, "{error}");
        }
    }

    #[tokio::test]
    async fn the_store_gauges_are_read_once_per_ttl() {
        let metrics = Metrics::new(None);
        let reads = std::sync::atomic::AtomicU32::new(0);
        let view = || async {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, String>(StoreView {
                tasks: vec![
                    TaskCount {
                        kind: "transform",
                        queue: "transform".into(),
                        status: TaskStatus::Pending,
                        count: 2,
                        oldest_age_secs: Some(12.5),
                    },
                    TaskCount {
                        kind: "transform",
                        queue: "transform".into(),
                        status: TaskStatus::Progress,
                        count: 1,
                        oldest_age_secs: Some(40.0),
                    },
                ],
                units: vec![("transform", "unit-1".into(), true)],
                running: vec![("transform", "unit-1".into(), 1)],
            })
        };
        let text = metrics.encode(0, view).await;
        for line in [
            "oscied_tasks{kind=\"transform\",queue=\"transform\",status=\"PENDING\"} 2",
            "oscied_queue_depth{kind=\"transform\",queue=\"transform\"} 2",
            "oscied_queue_oldest_waiting_seconds{kind=\"transform\",queue=\"transform\"} 12.5",
            "oscied_units_online{kind=\"transform\"} 1",
            "oscied_units_online{kind=\"publisher\"} 0",
            "oscied_unit_running_tasks{kind=\"transform\",unit=\"unit-1\"} 1",
            "oscied_store_up 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        metrics.encode(0, view).await;
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// Every metric the sample dashboard charts is one this code defines.
    #[tokio::test]
    async fn the_dashboard_charts_defined_metrics() {
        let units = UnitMetrics::new();
        let metrics = Metrics::new(Some(units.clone()));
        // A family shows once it has a series: give each one.
        units.task_ended(oscied_protocol::node::UnitKind::Transform, "success");
        units.bytes_written(1);
        units.task_cpu(1.0);
        let error = Some("went silent");
        metrics.task_finished("transform", "q", TaskStatus::Failure, Some(1.0), error);
        metrics.request("GET", "/metrics", 200, Duration::from_millis(1));
        metrics.webhook_delivery("delivered");
        metrics.publish_failed();
        metrics.encode_speed(1.0, 1.0);
        store_error(&StoreError::Unavailable("down".into()));
        let view = StoreView {
            tasks: vec![TaskCount {
                kind: "transform",
                queue: "q".into(),
                status: TaskStatus::Pending,
                count: 1,
                oldest_age_secs: Some(1.0),
            }],
            units: vec![("transform", "u".into(), true)],
            running: vec![],
        };
        let text = metrics.encode(0, || async { Ok::<_, String>(view) }).await;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/grafana-dashboard.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut charted = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    let Some(name) = word.strip_prefix("oscied_") else {
                        continue;
                    };
                    let base = ["_total", "_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .unwrap_or(name);
                    assert!(
                        text.contains(&format!("# TYPE oscied_{base} ")),
                        "the dashboard charts oscied_{name}, which is not defined"
                    );
                    charted += 1;
                }
            }
        }
        assert!(charted > 20, "{charted}");
    }

    #[tokio::test]
    async fn counters_move() {
        let metrics = Metrics::new(None);
        metrics.task_finished(
            "transform",
            "transform",
            TaskStatus::Failure,
            Some(3.0),
            Some("the profile x was deleted"),
        );
        metrics.request("GET", "/api/v1/medias/{id}", 200, Duration::from_millis(3));
        metrics.request("GET", UNMATCHED_ROUTE, 404, Duration::from_millis(1));
        metrics.webhook_delivery("delivered");
        metrics.publish_failed();
        metrics.encode_speed(4.0, 2.0);
        let text = metrics
            .encode(2, || async { Err::<StoreView, _>("down") })
            .await;
        for line in [
            "oscied_tasks_finished_total{kind=\"transform\",queue=\"transform\",status=\"FAILURE\"} 1",
            "oscied_task_duration_seconds_count{kind=\"transform\",status=\"FAILURE\"} 1",
            "oscied_task_failures_total{kind=\"transform\",reason=\"input_gone\"} 1",
            "oscied_http_requests_total{method=\"GET\",route=\"/api/v1/medias/{id}\",status=\"200\"} 1",
            "oscied_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "oscied_webhook_deliveries_total{outcome=\"delivered\"} 1",
            "oscied_broker_publish_failures_total 1",
            "oscied_broker_reconnects_total 2",
            "oscied_transform_encode_speed_count 1",
            "oscied_store_up 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
