//! `GET /metrics` end to end, with the real binaries: two orchestra replicas on NX-27017 and a
//! RabbitMQ vhost with a `worker-transform` unit serving its own `/metrics`, and a standalone
//! orchestra. Every exposition is read with the official client's OpenMetrics parser
//! (`oscied_e2e::prometheus`), and its counters must move as a transform task runs to SUCCESS.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, str_of};
use oscied_e2e::api::Reply;
use oscied_e2e::prometheus::{Sample, parse, value};

const TOKEN: &str = "e2e-metrics-token";
const ENCODE_TIMEOUT: Duration = Duration::from_secs(240);
/// A small, quick ffmpeg encode.
const QUICK_ENCODER: &str = "-vf scale=-2:120 -c:v libx264 -preset ultrafast -c:a aac";

/// `GET <base>/metrics`, with the bearer token when given.
fn scrape(base: &str, token: Option<&str>) -> Reply {
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-m", "20"];
    if let Some(header) = &header {
        args.extend(["-H", header.as_str()]);
    }
    oscied_e2e::api::run(&format!("{base}/metrics"), &args)
}

/// A 200 exposition, parsed: every line is a HELP, a TYPE or a sample, and `# EOF` ends it.
fn metrics(base: &str, token: Option<&str>) -> Vec<Sample> {
    let reply = scrape(base, token);
    let text = reply.text();
    assert_eq!(reply.status, 200, "GET {base}/metrics: {text}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.header("content-type")
    );
    parse(&text)
}

fn or_zero(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or(0.0)
}

/// Scrape until `ok` holds (the counters of a task's end move right after its write).
fn wait_metrics(base: &str, token: Option<&str>, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let start = Instant::now();
    loop {
        let samples = metrics(base, token);
        if ok(&samples) {
            return samples;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "metrics of {base} never got there:\n{}",
            scrape(base, token).text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const SUCCESS: [(&str, &str); 3] = [
    ("kind", "transform"),
    ("queue", "transform"),
    ("status", "SUCCESS"),
];

#[test]
fn replicas_and_a_unit_expose_metrics_that_move_as_a_task_runs() {
    let mut cluster = Cluster::replicas(2, 0, &[("OSCIED_METRICS_TOKEN", TOKEN)]);
    let unit_metrics = format!("127.0.0.1:{}", oscied_e2e::free_port());
    let url = cluster.replica_url(0);
    cluster.add_unit_on(
        "unit-1",
        &url,
        &[
            ("OSCIED_METRICS_LISTEN", &unit_metrics),
            ("OSCIED_METRICS_TOKEN", TOKEN),
        ],
    );
    let replicas: Vec<String> = (0..2).map(|i| cluster.replica_url(i)).collect();

    // The token is enforced: none or a wrong one is a 401 in the API's error shape.
    for token in [None, Some("wrong")] {
        let refused = scrape(&replicas[0], token);
        assert_eq!(refused.status, 401, "{}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "unauthorized");
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer")),
            "{:?}",
            refused.headers
        );
    }
    let before: Vec<f64> = replicas
        .iter()
        .map(|r| {
            or_zero(
                &metrics(r, Some(TOKEN)),
                "oscied_tasks_finished_total",
                &SUCCESS,
            )
        })
        .collect();

    let input = cluster.upload_clip("input.mp4", 2, 320, 180);
    let profile = cluster.create_profile("Quick 120p", QUICK_ENCODER);
    let task = cluster.launch(str_of(&input, "id"), &profile, "out.mp4");
    let task_id = str_of(&task, "id");
    cluster.wait_status(task_id, "SUCCESS", ENCODE_TIMEOUT);
    // A path with an id the router does not know: one `unmatched` series, the id nowhere.
    let stray = uuid::Uuid::new_v4().to_string();
    let (status, _) = cluster.call("GET", &format!("/nothing/{stray}"), None);
    assert_eq!(status, 404);

    // The replica that wrote the SUCCESS counted it: across the replicas, one more.
    let finished = |all: &[Vec<Sample>]| -> f64 {
        all.iter()
            .map(|s| or_zero(s, "oscied_tasks_finished_total", &SUCCESS))
            .sum()
    };
    let start = Instant::now();
    let after = loop {
        let all: Vec<Vec<Sample>> = replicas.iter().map(|r| metrics(r, Some(TOKEN))).collect();
        if finished(&all) > before.iter().sum::<f64>()
            && all.iter().any(|s| {
                or_zero(s, "oscied_transform_encode_speed_count", &[]) > 0.0
                    && or_zero(
                        s,
                        "oscied_task_duration_seconds_count",
                        &[("kind", "transform"), ("status", "SUCCESS")],
                    ) > 0.0
            })
        {
            break all;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the task's end was not counted:\n{}\n{}",
            scrape(&replicas[0], Some(TOKEN)).text(),
            scrape(&replicas[1], Some(TOKEN)).text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let requests = |route: &str, method: &str, status: &str| -> f64 {
        after
            .iter()
            .map(|s| {
                or_zero(
                    s,
                    "oscied_http_requests_total",
                    &[("route", route), ("method", method), ("status", status)],
                )
            })
            .sum()
    };
    assert!(requests("/api/v1/transform/tasks", "POST", "201") >= 1.0);
    assert!(requests("/api/v1/transform/tasks/{id}", "GET", "200") >= 1.0);
    assert!(requests("/api/v1/medias", "POST", "201") >= 1.0);
    assert!(requests("unmatched", "GET", "404") >= 1.0);
    for samples in &after {
        // Route labels are templates (or `unmatched`), never a raw path.
        for s in samples {
            let route = s.labels.get("route").map_or("", String::as_str);
            assert!(
                !route.contains(task_id) && !route.contains(&stray),
                "a raw path as a label: {s:?}"
            );
        }
        assert_eq!(value(samples, "oscied_store_up", &[]), Some(1.0));
        assert!(value(samples, "oscied_broker_reconnects_total", &[]).is_some());
        assert!(
            or_zero(
                samples,
                "oscied_http_request_duration_seconds_count",
                &[("route", "/metrics"), ("method", "GET")]
            ) >= 1.0
        );
    }

    // The store's gauges are the same on every replica (read again after at most 2 s): one
    // transform unit online, holding nothing now, nothing waiting in the default queue.
    for replica in &replicas {
        wait_metrics(replica, Some(TOKEN), |s| {
            value(s, "oscied_units_online", &[("kind", "transform")]) == Some(1.0)
                && value(
                    s,
                    "oscied_unit_running_tasks",
                    &[("kind", "transform"), ("unit", "unit-1")],
                ) == Some(0.0)
                && or_zero(
                    s,
                    "oscied_queue_depth",
                    &[("kind", "transform"), ("queue", "transform")],
                ) == 0.0
        });
    }

    // The unit's own /metrics: behind the same token, one success, bytes and CPU counted.
    let unit_base = format!("http://{unit_metrics}");
    assert_eq!(scrape(&unit_base, None).status, 401);
    let unit = wait_metrics(&unit_base, Some(TOKEN), |s| {
        or_zero(
            s,
            "oscied_unit_tasks_total",
            &[("kind", "transform"), ("outcome", "success")],
        ) >= 1.0
    });
    assert!(or_zero(&unit, "oscied_unit_bytes_written_total", &[]) > 0.0);
    assert!(or_zero(&unit, "oscied_unit_task_cpu_seconds_count", &[]) >= 1.0);
    assert!(or_zero(&unit, "oscied_unit_task_cpu_seconds_sum", &[]) > 0.0);
    assert_eq!(value(&unit, "oscied_unit_ffmpeg_processes", &[]), Some(0.0));
}

#[test]
fn standalone_metrics_include_the_in_process_units() {
    let publisher = format!("127.0.0.1:{}", oscied_e2e::free_port());
    let cluster = Cluster::standalone_with(&[("OSCIED_PUBLISHER_LISTEN", &publisher)]);
    let base = cluster.orchestra().url();
    // No OSCIED_METRICS_TOKEN: open.
    let before = metrics(&base, None);
    assert_eq!(
        or_zero(&before, "oscied_tasks_finished_total", &SUCCESS),
        0.0
    );
    assert_eq!(
        value(&before, "oscied_units_online", &[("kind", "transform")]),
        Some(1.0),
        "the in-process transform unit"
    );

    let input = cluster.upload_clip("input.mp4", 2, 320, 180);
    let profile = cluster.create_profile("Quick 120p", QUICK_ENCODER);
    let task = cluster.launch(str_of(&input, "id"), &profile, "out.mp4");
    cluster.wait_status(str_of(&task, "id"), "SUCCESS", ENCODE_TIMEOUT);

    let after = wait_metrics(&base, None, |s| {
        or_zero(s, "oscied_tasks_finished_total", &SUCCESS) >= 1.0
            && or_zero(
                s,
                "oscied_unit_tasks_total",
                &[("kind", "transform"), ("outcome", "success")],
            ) >= 1.0
    });
    assert!(or_zero(&after, "oscied_unit_bytes_written_total", &[]) > 0.0);
    assert!(or_zero(&after, "oscied_unit_task_cpu_seconds_count", &[]) >= 1.0);
    assert_eq!(
        value(&after, "oscied_units_online", &[("kind", "publisher")]),
        Some(1.0),
        "the in-process publisher"
    );
    // The in-process publisher serves its /metrics too: the in-process units' (shared).
    let served = metrics(&format!("http://{publisher}"), None);
    assert!(
        or_zero(
            &served,
            "oscied_unit_tasks_total",
            &[("kind", "transform"), ("outcome", "success")],
        ) >= 1.0
    );
    // In-process queues: no reconnect ever.
    assert_eq!(
        value(&after, "oscied_broker_reconnects_total", &[]),
        Some(0.0)
    );
}
