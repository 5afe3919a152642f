//! Queue scale (issue 12, BENCHMARKS.md): does a backlog nobody consumes slow the rest down?
//!
//! ```sh
//! cargo run --release -p oscied-e2e --bin bench-queue
//! ```
//!
//! On a real cluster (one orchestra in cluster mode with RabbitMQ, one idle `worker-transform`
//! unit consuming the default `transform` queue), first with an empty store, then with
//! 10,000 tasks queued on `cold`, a queue no unit consumes:
//!
//! (i)  dispatch latency of a new task on `transform`: POST → ffmpeg spawned on the unit
//!      (from its JSON log), 50 `-c copy` remuxes one after another, p50/p90/p99;
//! (ii) `GET /transform/tasks?status=PENDING&limit=50`, 50 calls, p50/p99 of curl's
//!      `time_total` (the request, not curl's start-up).
//!
//! The target: each within 2x of the empty store's. Between the two, the orchestra sits idle
//! with the backlog for `BENCH_IDLE_SECS` (default 75: two dispatch sweeps, many reaper
//! passes) and its CPU and memory are read from /proc.
//!
//! `BENCH_STORES` (`nx`, `sqlite` or both, the default), `BENCH_QUEUED` (default 10000) and
//! `BENCH_SAMPLES` (default 50) narrow a run.

use std::time::{Duration, Instant};

use oscied_e2e::bench::{
    BenchCluster, Store, cores, cpu_seconds, load_average, percentile, rss_mb,
};
use oscied_e2e::media::clip;
use oscied_e2e::rabbit::rabbitmqctl;

const REMUX: &str = "-c copy";
/// The queue of the backlog: no unit consumes it.
const COLD: &str = "cold";
const LIST: &str = "/transform/tasks?status=PENDING&limit=50";
/// The list's page size.
const PAGE: usize = 50;

/// What one phase measured, in seconds, sorted.
/// A table row: its label, which samples, which quantile.
type Row = (&'static str, fn(&Phase) -> &[f64], f64);

struct Phase {
    dispatch: Vec<f64>,
    list: Vec<f64>,
}

fn main() {
    println!(
        "# bench-queue ({})",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!("machine: {} cores", cores());
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "nx,sqlite".into());
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let queued = number("BENCH_QUEUED", 10_000);
    let samples = number("BENCH_SAMPLES", 50);
    let idle = Duration::from_secs(number("BENCH_IDLE_SECS", 75) as u64);
    for store in Store::parse_list(&stores) {
        run(store, queued, samples, idle);
    }
}

fn run(store: Store, queued: usize, samples: usize, idle: Duration) {
    println!(
        "\n# cluster: 1 orchestra on {}, RabbitMQ, one idle worker-transform unit (load average {})",
        store.describe(),
        load_average()
    );
    let cluster = BenchCluster::start(store, 1, 1);
    let input = clip(cluster.work(), "tiny.mp4", 1, 320, 180);
    let media = cluster.upload(&input);
    let media = media["id"].as_str().expect("id").to_owned();
    let profile = cluster.profile("bench remux", REMUX);

    println!("\n## empty store");
    let empty = phase(&cluster, &media, &profile, samples, "e", 0);
    // One page of PENDING tasks: the list answers as many items as with the backlog, so
    // what the backlog itself costs shows apart from what serializing 50 tasks costs.
    let page = PAGE.min(queued);
    fill(&cluster, &media, &profile, 0..page);
    println!("\n## {page} queued on {COLD:?} (one page)");
    let one_page = phase(&cluster, &media, &profile, samples, "p", page);
    fill(&cluster, &media, &profile, page..queued);

    println!("\n## idle {} s with the backlog", idle.as_secs());
    let watched: Vec<(String, u32)> = cluster
        .processes()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("bench-unit"))
        .collect();
    let before: Vec<f64> = watched.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let start = Instant::now();
    let mut peak_rss = vec![0.0f64; watched.len()];
    while start.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(1));
        for (peak, (_, pid)) in peak_rss.iter_mut().zip(&watched) {
            *peak = peak.max(rss_mb(*pid).0);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for (((name, pid), before), peak) in watched.iter().zip(&before).zip(&peak_rss) {
        let used = cpu_seconds(*pid) - before;
        let (rss, hwm) = rss_mb(*pid);
        println!(
            "{name}: CPU {used:.2} s in {secs:.0} s ({:.2} % of a core), RSS {rss:.1} MB now, \
             {peak:.1} MB max while idle, {hwm:.1} MB peak since start",
            used / secs * 100.0
        );
    }

    println!("\n## {queued} queued on {COLD:?}");
    let loaded = phase(&cluster, &media, &profile, samples, "l", queued);

    println!(
        "\n## summary ({}; load average now {})",
        store.describe(),
        load_average()
    );
    println!(
        "| | empty store | {page} queued | {queued} queued | {queued} / empty (target <= 2) | {queued} / {page} |"
    );
    println!("|---|---|---|---|---|---|");
    let rows: [Row; 5] = [
        ("(i) dispatch p50", |p| &p.dispatch, 0.5),
        ("(i) dispatch p90", |p| &p.dispatch, 0.9),
        ("(i) dispatch p99", |p| &p.dispatch, 0.99),
        ("(ii) list p50", |p| &p.list, 0.5),
        ("(ii) list p99", |p| &p.list, 0.99),
    ];
    for (name, of, p) in rows {
        let [a, b, c] = [&empty, &one_page, &loaded].map(|phase| percentile(of(phase), p) * 1000.0);
        println!(
            "| {name} | {a:.1} ms | {b:.1} ms | {c:.1} ms | {:.2} ({}) | {:.2} |",
            c / a,
            if c <= 2.0 * a { "met" } else { "NOT met" },
            c / b
        );
    }
}

/// Queue tasks `range` on the cold queue, 8 POSTs at a time; checks each answered 201, that
/// the list counts them PENDING, and prints what the broker holds.
fn fill(cluster: &BenchCluster, media: &str, profile: &str, range: std::ops::Range<usize>) {
    let count = range.len();
    let until = range.end;
    println!("\n## queueing {count} tasks on {COLD:?} ({until} in all)");
    let bodies: Vec<_> = range
        .map(|i| BenchCluster::task_body(media, profile, &format!("c{i}.mp4"), Some(COLD)))
        .collect();
    let orchestra = cluster.orchestras()[0].pid();
    let cpu_before = cpu_seconds(orchestra);
    let start = Instant::now();
    let statuses = cluster
        .user()
        .max_secs(60)
        .post_many("/transform/tasks", &bodies, 8);
    let took = start.elapsed().as_secs_f64();
    let created = statuses.iter().filter(|s| **s == 201).count();
    println!(
        "{created} of {count} created (201) in {took:.1} s ({:.0}/s), orchestra CPU {:.1} s",
        created as f64 / took,
        cpu_seconds(orchestra) - cpu_before
    );
    let others: Vec<&u16> = statuses.iter().filter(|s| **s != 201).take(10).collect();
    assert_eq!(
        created, count,
        "every POST must answer 201; others: {others:?}"
    );
    let (_, page) = cluster.user().get(LIST);
    println!(
        "GET {LIST}: total {}; broker: {}",
        page["total"],
        broker_depth(cluster, COLD)
    );
    assert_eq!(
        page["total"], until,
        "the backlog is PENDING: {}",
        page["total"]
    );
}

/// (ii) then (i), `samples` of each; `pending` is how many PENDING tasks the list must count.
fn phase(
    cluster: &BenchCluster,
    media: &str,
    profile: &str,
    samples: usize,
    prefix: &str,
    pending: usize,
) -> Phase {
    let mut list = vec![];
    for _ in 0..samples {
        let reply = cluster.user().send(LIST, &[]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page = reply.json();
        assert_eq!(page["total"], pending, "PENDING tasks: {}", page["total"]);
        list.push(reply.total.as_secs_f64());
    }
    list.sort_by(f64::total_cmp);
    let dispatch = cluster.dispatch_latencies(media, profile, samples, prefix);
    let ms = |v: &[f64], p: f64| percentile(v, p) * 1000.0;
    println!(
        "(i) dispatch, {} tasks: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        dispatch.len(),
        dispatch[0] * 1000.0,
        ms(&dispatch, 0.5),
        ms(&dispatch, 0.9),
        ms(&dispatch, 0.99),
        ms(&dispatch, 1.0),
    );
    println!(
        "(ii) GET {LIST}, {} calls: min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        list.len(),
        list[0] * 1000.0,
        ms(&list, 0.5),
        ms(&list, 0.99),
        ms(&list, 1.0),
    );
    Phase { dispatch, list }
}

/// `messages ready/unacknowledged` of `queue` in the cluster's vhost, as RabbitMQ counts them.
fn broker_depth(cluster: &BenchCluster, queue: &str) -> String {
    let listed = rabbitmqctl(&[
        "list_queues",
        "-q",
        "-p",
        cluster.vhost_name(),
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]);
    listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(queue))
        .map(|l| format!("queue {l} (name, ready, unacked)"))
        .unwrap_or_else(|| format!("no queue {queue:?} in the vhost:\n{listed}"))
}
