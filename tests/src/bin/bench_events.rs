//! Live events (issue 15, BENCHMARKS.md): how soon an event reaches a stream, and what open
//! streams cost the orchestra.
//!
//! ```sh
//! cargo run --release -p oscied-e2e --bin bench-events
//! ```
//!
//! Two orchestra replicas in cluster mode on NX-27017 and RabbitMQ, no unit. `BENCH_EVENTS`
//! (default 300) tasks are made on a queue no unit consumes and then revoked one after
//! another on replica 0; each revocation is one fenced write and one `task.finished` event.
//!
//! (i)  latency, from the event's `at` (stamped just after the winning write) to the line
//!      read by a `curl -N` client: on replica 0 (the writer's own) and on replica 1 (through
//!      the RabbitMQ fanout), p50/p90/p99;
//! (ii) the cost of `BENCH_CLIENTS` (default 100) idle streams on replica 0: its CPU while
//!      idle for 10 s and while the revocations run, and its memory, with and without them;
//! (iii) latency to a webhook receiver (a subscription to `task.finished` made on replica 0,
//!      a local HTTP server answering 204), from the event's `at` to the request's arrival.

use std::time::{Duration, Instant, SystemTime};

use oscied_e2e::bench::{
    BenchCluster, Store, cores, cpu_seconds, load_average, percentile, rss_mb,
};
use oscied_e2e::media::clip;
use oscied_e2e::receiver::Receiver;
use oscied_e2e::sse::EventStream;
use serde_json::Value;

const COLD: &str = "cold";
const IDLE: Duration = Duration::from_secs(10);

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    println!(
        "# bench-events ({})",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "machine: {} cores, load average {}",
        cores(),
        load_average()
    );
    let events = number("BENCH_EVENTS", 300);
    let clients = number("BENCH_CLIENTS", 100);
    let max = (clients + 10).to_string();
    let cluster = BenchCluster::start_with(
        Store::Nx,
        2,
        0,
        &[
            ("OSCIED_EVENTS_MAX_STREAMS", max.as_str()),
            ("OSCIED_WEBHOOK_ALLOWED_NETS", "127.0.0.1/32"),
        ],
    );
    let input = clip(cluster.work(), "tiny.mp4", 1, 160, 90);
    let media = cluster.upload(&input);
    let media = media["id"].as_str().expect("id").to_owned();
    let profile = cluster.profile("bench copy", "-c copy");
    let user = cluster.user();
    let pid = cluster.orchestras()[0].pid();

    println!("\n## (i) latency: status change in the store → SSE client, {events} events");
    let mut local = open(&user.on(0));
    let mut remote = open(&user.on(1));
    let (local_ms, remote_ms) =
        revocations(&cluster, &media, &profile, events, &mut local, &mut remote);
    table(&[
        ("same replica", &local_ms),
        ("other replica (RabbitMQ)", &remote_ms),
    ]);
    drop((local, remote));

    println!("\n## (ii) {clients} idle streams on replica 0");
    let (rss_before, _) = rss_mb(pid);
    let idle_without = cpu_over(pid, IDLE);
    let work_without = {
        let started = cpu_seconds(pid);
        let mut a = open(&user.on(0));
        let mut b = open(&user.on(1));
        revocations(&cluster, &media, &profile, events, &mut a, &mut b);
        cpu_seconds(pid) - started
    };
    let opened = Instant::now();
    let streams: Vec<EventStream> = (0..clients).map(|_| open(&user.on(0))).collect();
    let open_secs = opened.elapsed().as_secs_f64();
    let (rss_with, _) = rss_mb(pid);
    let idle_with = cpu_over(pid, IDLE);
    let (work_with, with_ms) = {
        let started = cpu_seconds(pid);
        let mut a = open(&user.on(0));
        let mut b = open(&user.on(1));
        let (ms, _) = revocations(&cluster, &media, &profile, events, &mut a, &mut b);
        (cpu_seconds(pid) - started, ms)
    };
    println!("opening {clients} streams took {open_secs:.2} s");
    println!("| | without | with {clients} streams |");
    println!("|---|---|---|");
    println!("| orchestra RSS (MB) | {rss_before:.1} | {rss_with:.1} |");
    println!(
        "| CPU idle, % of a core over {} s | {:.2} | {:.2} |",
        IDLE.as_secs(),
        idle_without * 100.0 / IDLE.as_secs_f64(),
        idle_with * 100.0 / IDLE.as_secs_f64()
    );
    println!("| CPU for {events} creates + revocations (s) | {work_without:.2} | {work_with:.2} |");
    table(&[("same replica, with the streams open", &with_ms)]);
    drop(streams);

    println!("\n## (iii) latency: status change in the store → webhook receiver, {events} events");
    let receiver = Receiver::scripted(Box::new(|_, _| (204, vec![])));
    let (status, hook) = user.on(0).post(
        "/webhooks",
        &serde_json::json!({"url": receiver.url("/bench"), "events": ["task.finished"]}),
    );
    assert_eq!(status, 201, "{hook}");
    let ids = make_and_revoke(&cluster, &media, &profile, events);
    let got = receiver.wait_until(Duration::from_secs(120), |got| got.len() >= ids.len());
    let mut ms: Vec<f64> = got
        .iter()
        .filter(|r| ids.iter().any(|id| r.json()["task_id"] == id.as_str()))
        .map(|r| {
            let at: SystemTime =
                chrono::DateTime::parse_from_rfc3339(r.json()["at"].as_str().unwrap_or_default())
                    .expect("an RFC 3339 `at`")
                    .into();
            r.at.duration_since(at).unwrap_or_default().as_secs_f64() * 1000.0
        })
        .collect();
    assert_eq!(ms.len(), events, "every event was delivered");
    ms.sort_by(f64::total_cmp);
    table(&[("webhook receiver (same machine)", &ms)]);
}

fn open(api: &oscied_e2e::api::Api) -> EventStream {
    api.events("?types=task.finished", None)
        .unwrap_or_else(|(status, body)| panic!("GET /events: {status} {body}"))
}

fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    cpu_seconds(pid) - before
}

/// Make `n` tasks on the cold queue, then revoke each on replica 0: the latencies (ms) of
/// their `task.finished` events on both streams, sorted.
fn revocations(
    cluster: &BenchCluster,
    media: &str,
    profile: &str,
    n: usize,
    local: &mut EventStream,
    remote: &mut EventStream,
) -> (Vec<f64>, Vec<f64>) {
    let ids = make_and_revoke(cluster, media, profile, n);
    let collect = |stream: &mut EventStream| -> Vec<f64> {
        let mut ms: Vec<f64> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ms.len() < n && Instant::now() < deadline {
            let Some(event) = stream.next(Duration::from_secs(10)) else {
                break;
            };
            let json: Value = event.json();
            if !ids.iter().any(|id| json["task_id"] == id.as_str()) {
                continue;
            }
            let at = json["at"].as_str().unwrap_or_default();
            let at: SystemTime = chrono::DateTime::parse_from_rfc3339(at)
                .expect("an RFC 3339 `at`")
                .into();
            let latency = event.received.duration_since(at).unwrap_or_default();
            ms.push(latency.as_secs_f64() * 1000.0);
        }
        assert_eq!(ms.len(), n, "every event arrived");
        ms.sort_by(f64::total_cmp);
        ms
    };
    (collect(local), collect(remote))
}

/// Make `n` tasks on the cold queue, then revoke each on replica 0; their ids.
fn make_and_revoke(cluster: &BenchCluster, media: &str, profile: &str, n: usize) -> Vec<String> {
    let api = cluster.user().on(0);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let name = format!("e{}.mp4", uuid::Uuid::new_v4().simple());
        let body = BenchCluster::task_body(media, profile, &name, Some(COLD));
        let (status, task) = api.post("/transform/tasks", &body);
        assert_eq!(status, 201, "{task}");
        ids.push(task["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let (status, task) = api.call("DELETE", &format!("/transform/tasks/{id}"), None);
        assert_eq!(status, 200, "{task}");
    }
    ids
}

fn table(rows: &[(&str, &Vec<f64>)]) {
    println!("| stream | events | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (label, ms) in rows {
        println!(
            "| {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms.len(),
            percentile(ms, 0.50),
            percentile(ms, 0.90),
            percentile(ms, 0.99),
            ms.last().copied().unwrap_or_default()
        );
    }
}
