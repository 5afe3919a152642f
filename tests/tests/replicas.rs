//! Several orchestras on one MongoDB (NX-27017) and one RabbitMQ vhost (issue 12): three
//! replicas, three `worker-transform` units each pointed at a different replica first (the
//! others follow in its `OSCIED_API_URL`, to fail over to), two publishers, and a user whose
//! calls go round-robin over the replicas (a task is created on one, polled on another, its
//! output published on a third). 60 short tasks and a few
//! publications run while one unit is killed (`kill -9`), one replica is killed and
//! restarted on its port, and RabbitMQ is stopped and started once.
//!
//! What the user must see at the end: every task SUCCESS, run by a plausible number of
//! attempts; each with one READY output of the expected height and no other READY media; each
//! completion accepted once across all replicas (their logs say "transform task succeeded"
//! once per task); each publication's URI in its media's `public_uris`, serving the stored
//! bytes; nothing left under `<storage>/tmp`.
//!
//! Alone in its test binary: the broker outage disturbs every test using RabbitMQ on this
//! machine. `OSCIED_E2E_SKIP_BROKER_OUTAGE=1` skips that one step (while developing).
//!
//! The test records every violation it sees and reports them all at the end (with the log
//! lines that show them), so one run tells what the engine gets wrong; only a step that
//! cannot go on (the cluster not starting, a kill that cannot be placed) panics at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Cluster, files_below, pretty, probed_height, same_bytes, str_of};
use oscied_e2e::api::{Api, fetch};
use oscied_e2e::rabbit::Outage;
use serde_json::{Value, json};

const REPLICAS: usize = 3;
const TASKS: usize = 60;
const INPUTS: usize = 6;
/// Each clip is this long; the profile encodes at 1x, so a task runs about that long: long
/// enough to kill its unit or its replica mid-task, short enough for 60 of them.
const CLIP_SECS: u32 = 3;
const OUTPUT_HEIGHT: u64 = 90;
const PROFILE: &str = "-vf realtime,scale=-2:90 -c:v libx264 -preset ultrafast -c:a aac";
/// Short, so the killed unit's tasks come back quickly; longer than the replica's downtime,
/// so the units of the killed replica keep their leases through it.
const LEASE_SECS: &str = "10";
const MAX_ATTEMPTS: u64 = 3;
/// How long the broker stays down, at the least.
const OUTAGE: Duration = Duration::from_secs(4);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// From the last task launched to every task final.
/// (About 40 s when all is well.)
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
const SKIP_OUTAGE: &str = "OSCIED_E2E_SKIP_BROKER_OUTAGE";

/// A task the test launched.
struct Launched {
    id: String,
    input: String,
    /// The replica it was created on.
    replica: usize,
}

/// A publication the test asked for.
struct Published {
    id: String,
    media: String,
}

struct Scenario {
    cluster: Cluster,
    started: Instant,
    inputs: Vec<String>,
    profile: String,
    tasks: Vec<Launched>,
    publications: Vec<Published>,
    /// Tasks that were running on the unit when it was killed.
    orphans: Vec<String>,
    /// When replica 0 was killed: a completion it accepted just then may have gone without
    /// its log line.
    replica_killed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What went wrong, in the order seen.
    findings: Vec<String>,
}

impl Scenario {
    fn api(&self) -> &Api {
        self.cluster.api()
    }

    fn step(&self, what: &str) {
        eprintln!("[{:>6.1} s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn finding(&mut self, what: String) {
        eprintln!("FINDING: {what}");
        self.findings.push(what);
    }

    /// Launch task number `n` on replica `n % REPLICAS`, then read it back from the next
    /// replica: a write on one is seen by the others.
    fn launch(&mut self, n: usize) {
        let replica = n % REPLICAS;
        let input = self.inputs[n % INPUTS].clone();
        let filename = format!("out-{n:02}.mp4");
        let body = json!({
            "media_in_id": input,
            "profile_id": self.profile,
            "filename": filename,
            "metadata": {"title": format!("replicas {n}")},
        });
        let (status, task) = self
            .api()
            .preferring(replica)
            .post("/transform/tasks", &body);
        if status != 201 {
            let what = format!(
                "launching task {n} on replica {replica}: {status} {}",
                pretty(&task)
            );
            return self.finding(what);
        }
        let id = str_of(&task, "id").to_owned();
        let (status, seen) = self
            .api()
            .preferring(replica + 1)
            .get(&format!("/transform/tasks/{id}"));
        if status != 200 || seen["id"] != id.as_str() {
            let what = format!(
                "task {id}, created on replica {replica}, read from the next: {status} {}",
                pretty(&seen)
            );
            self.finding(what);
        }
        self.tasks.push(Launched { id, input, replica });
    }

    fn launch_range(&mut self, range: std::ops::Range<usize>) {
        for n in range {
            self.launch(n);
        }
    }

    /// The user's tasks, all of them (60 fit one page).
    fn all_tasks(&self) -> BTreeMap<String, Value> {
        let (status, page) = self.api().get("/transform/tasks?limit=1000");
        if status != 200 {
            return BTreeMap::new();
        }
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|t| (str_of(t, "id").to_owned(), t.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A running task (STARTED or PROGRESS, under half done) held by `unit`, once there is
    /// one: the moment to kill something under it.
    fn wait_running_on(&self, unit: &str) -> Value {
        let path = format!("/transform/tasks?unit_id={unit}&status=STARTED,PROGRESS&limit=100");
        self.cluster.wait_until(
            &format!("a task running on {unit}, under half done"),
            STEP_TIMEOUT,
            || {
                let (status, page) = self.api().get(&path);
                let early = page["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|t| common::percent(t) < 50.0));
                match early {
                    Some(task) if status == 200 => Ok(task.clone()),
                    _ => Err(format!("({status}) {}", pretty(&page))),
                }
            },
        )
    }

    /// Wait until `more` tasks beyond those SUCCESS now have reached SUCCESS.
    fn wait_more_successes(&self, more: usize, what: &str) {
        let count = |tasks: &BTreeMap<String, Value>| {
            tasks.values().filter(|t| t["status"] == "SUCCESS").count()
        };
        let before = count(&self.all_tasks());
        self.cluster.wait_until(what, STEP_TIMEOUT, || {
            let now = count(&self.all_tasks());
            if now >= before + more {
                Ok(())
            } else {
                Err(format!("{now} SUCCESS, {before} before"))
            }
        });
    }

    /// Publish the outputs of `count` SUCCESS tasks not yet published (waiting for them if
    /// need be); each on another replica than the last.
    fn publish_some(&mut self, count: usize) {
        let published: BTreeSet<String> =
            self.publications.iter().map(|p| p.media.clone()).collect();
        let outputs: Vec<String> = self.cluster.wait_until(
            &format!("{count} SUCCESS outputs to publish"),
            STEP_TIMEOUT,
            || {
                let tasks = self.all_tasks();
                let outputs: Vec<String> = self
                    .tasks
                    .iter()
                    .filter_map(|t| tasks.get(&t.id))
                    .filter(|t| t["status"] == "SUCCESS")
                    .map(|t| str_of(t, "media_out_id").to_owned())
                    .filter(|m| !published.contains(m))
                    .take(count)
                    .collect();
                if outputs.len() == count {
                    Ok(outputs)
                } else {
                    Err(format!("{} of them", outputs.len()))
                }
            },
        );
        for media in outputs {
            let replica = self.publications.len() + 2;
            let (status, task) = self
                .api()
                .preferring(replica)
                .post("/publisher/tasks", &json!({"media_id": media}));
            if status != 201 {
                let what = format!("publishing {media}: {status} {}", pretty(&task));
                self.finding(what);
                continue;
            }
            self.publications.push(Published {
                id: str_of(&task, "id").to_owned(),
                media,
            });
        }
    }

    /// Every replica answers `/health` with `broker` = `want`.
    fn wait_broker(&self, want: &str) {
        self.cluster.wait_until(
            &format!("every replica saying broker {want}"),
            Duration::from_secs(30),
            || {
                let answers: Vec<(u16, Value)> =
                    (0..REPLICAS).map(|n| self.api().on(n).health()).collect();
                if answers.iter().all(|(_, h)| h["broker"] == want) {
                    Ok(())
                } else {
                    Err(format!("{answers:?}"))
                }
            },
        );
    }
}

/// In every replica's log (over all its runs), the lines with `message`: the `task=` of
/// each, counted.
fn logged_tasks(cluster: &Cluster, message: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, orchestra) in cluster.orchestras.iter().enumerate() {
        for line in orchestra.log().lines().filter(|l| l.contains(message)) {
            let task = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("task="))
                .unwrap_or("?")
                .to_owned();
            found
                .entry(task)
                .or_default()
                .push(format!("replica {n}: {line}"));
        }
    }
    found
}

/// The log lines of every replica that mention `id`.
fn lines_about(cluster: &Cluster, id: &str) -> String {
    let mut out = String::new();
    for (n, orchestra) in cluster.orchestras.iter().enumerate() {
        for line in orchestra.log().lines().filter(|l| l.contains(id)) {
            out.push_str(&format!("  replica {n}: {line}\n"));
        }
    }
    let units = cluster.units.iter().map(|u| &**u);
    for unit in units.chain(cluster.publishers.iter().map(|p| &**p)) {
        let log = std::fs::read_to_string(unit.workdir().join("unit.log")).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains(id)) {
            out.push_str(&format!("  {}: {line}\n", unit.id()));
        }
    }
    out
}

#[test]
fn three_replicas_lose_nothing_and_double_nothing_through_kills_and_a_broker_outage() {
    let started = Instant::now();
    let skip_outage = std::env::var_os(SKIP_OUTAGE).is_some_and(|v| v == "1");
    let mut cluster = Cluster::replicas(REPLICAS, 0, &[("OSCIED_TASK_LEASE_SECS", LEASE_SECS)]);
    // Each unit starts on its own replica and fails over to the others, in turn.
    let from = |cluster: &Cluster, n: usize| -> String {
        let urls: Vec<String> = (0..REPLICAS)
            .map(|i| cluster.replica_url((n + i) % REPLICAS))
            .collect();
        urls.join(",")
    };
    for n in 0..REPLICAS {
        let url = from(&cluster, n);
        cluster.add_unit_on(
            &format!("unit-{}", n + 1),
            &url,
            &[("OSCIED_CONCURRENCY", "2")],
        );
    }
    for n in 1..=2 {
        let url = from(&cluster, n);
        cluster.add_publisher_on(&format!("publisher-{n}"), &url, &[]);
    }
    cluster.wait_publisher_consumers();
    let mut scenario = Scenario {
        cluster,
        started,
        inputs: vec![],
        profile: String::new(),
        tasks: vec![],
        publications: vec![],
        orphans: vec![],
        replica_killed_at: None,
        findings: vec![],
    };
    scenario.step("3 replicas, 3 transform units, 2 publishers up");

    // Started together, the replicas seeded the built-in profiles once.
    let (status, profiles) = scenario.api().get("/transform/profiles?limit=1000");
    assert_eq!(status, 200, "{}", pretty(&profiles));
    let mut titles: BTreeMap<String, usize> = BTreeMap::new();
    for profile in profiles["items"].as_array().into_iter().flatten() {
        *titles
            .entry(str_of(profile, "title").to_owned())
            .or_default() += 1;
    }
    let doubled: Vec<_> = titles.iter().filter(|(_, n)| **n > 1).collect();
    if !doubled.is_empty() {
        scenario.finding(format!("profiles seeded more than once: {doubled:?}"));
    }

    // Inputs: half uploaded, half registered from the uploads dir; the calls go round-robin.
    for k in 0..INPUTS {
        let name = format!("in-{k}.mp4");
        let media = if k % 2 == 0 {
            scenario.cluster.upload_clip(&name, CLIP_SECS, 320, 180)
        } else {
            let clip = scenario.cluster.clip(&name, CLIP_SECS, 320, 180);
            scenario.cluster.register_upload(&clip, &name)
        };
        scenario.inputs.push(str_of(&media, "id").to_owned());
    }
    scenario.profile = scenario.cluster.create_profile("Replicas 90p", PROFILE);
    scenario.step("inputs and profile ready");

    // 1. A first wave; then one unit dies mid-task.
    scenario.launch_range(0..24);
    let victim_unit = "unit-3";
    let running = scenario.wait_running_on(victim_unit);
    let index = scenario
        .cluster
        .units
        .iter()
        .position(|u| u.id() == victim_unit)
        .expect("unit-3 is ours");
    scenario.cluster.units[index].kill9();
    scenario.orphans.push(str_of(&running, "id").to_owned());
    scenario.step(&format!(
        "killed {victim_unit} (-9) while it ran {} at {:.0} %",
        str_of(&running, "id"),
        common::percent(&running)
    ));

    // 2. A second wave; then replica 0 dies while its unit (unit-1) runs a task, and comes
    // back on its port once more work has finished without it.
    scenario.launch_range(24..36);
    let held = scenario.wait_running_on("unit-1");
    scenario.cluster.kill_replica(0);
    scenario.replica_killed_at = Some(chrono::Utc::now());
    scenario.step(&format!(
        "killed replica 0 (-9) while unit-1 ran {}",
        str_of(&held, "id")
    ));
    // Created while it is down: the client passes over the dead replica.
    scenario.launch_range(36..42);
    scenario.wait_more_successes(3, "3 more tasks SUCCESS while replica 0 is down");
    scenario.cluster.restart_replica(0);
    scenario.step("replica 0 restarted");
    scenario.publish_some(3);

    // 3. The broker goes away for a while, with tasks running; tasks and publications
    // created meanwhile are stored and dispatched when it is back.
    scenario.wait_running_on("unit-2");
    if skip_outage {
        scenario.step(&format!("broker outage skipped ({SKIP_OUTAGE}=1)"));
        scenario.launch_range(42..48);
        scenario.publish_some(2);
    } else {
        let outage = Outage::begin();
        let down = Instant::now();
        scenario.step("broker stopped");
        scenario.wait_broker("down");
        scenario.launch_range(42..48);
        scenario.publish_some(2);
        // The outage lasts at least OUTAGE: long enough for units and replicas to notice.
        std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
        outage.end();
        scenario.wait_broker("ok");
        scenario.step("broker back");
    }

    // 4. The rest, then everything must finish.
    scenario.launch_range(48..TASKS);
    scenario.step(&format!("{} tasks launched", scenario.tasks.len()));
    let deadline = Instant::now() + FINISH_TIMEOUT;
    let mut last = BTreeMap::new();
    while Instant::now() < deadline {
        let now = scenario.all_tasks();
        // A failed poll (empty) keeps what the last one saw.
        if !now.is_empty() {
            last = now;
        }
        let done = scenario
            .tasks
            .iter()
            .filter(|t| {
                last.get(&t.id)
                    .is_some_and(|t| common::FINAL.contains(&str_of(t, "status")))
            })
            .count();
        if done == scenario.tasks.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    scenario.step("tasks final (or out of time)");
    scenario.publish_some(4);

    // 5. Publications: each SUCCESS, in its media's public_uris, serving the stored bytes.
    let publish_deadline = Instant::now() + PUBLISH_TIMEOUT;
    let mut publications: BTreeMap<String, Value> = BTreeMap::new();
    while Instant::now() < publish_deadline {
        publications.clear();
        for (n, p) in scenario.publications.iter().enumerate() {
            let (_, task) = scenario
                .api()
                .preferring(n)
                .get(&format!("/publisher/tasks/{}", p.id));
            publications.insert(p.id.clone(), task);
        }
        if publications
            .values()
            .all(|t| common::FINAL.contains(&t["status"].as_str().unwrap_or_default()))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    scenario.step("publications final (or out of time)");

    check_tasks(&mut scenario, &last);
    check_publications(&mut scenario, &publications);
    check_tmp(&mut scenario);
    scenario.step("checked");

    eprintln!("{}", log_summary(&scenario.cluster));
    eprintln!("wall time {:?}", started.elapsed());
    if !scenario.findings.is_empty() {
        let kept = keep_logs(&scenario.cluster);
        panic!(
            "{} findings over {} tasks and {} publications (whole logs in {kept}):\n- {}\n\n{}",
            scenario.findings.len(),
            scenario.tasks.len(),
            scenario.publications.len(),
            scenario.findings.join("\n- "),
            scenario.cluster.logs()
        );
    }
}

/// What the replicas' logs say happened, counted per replica: a summary for the test's
/// output (`--nocapture`), whether or not it passes.
fn log_summary(cluster: &Cluster) -> String {
    const EVENTS: &[&str] = &[
        "transform task started",
        "transform task succeeded",
        "transform task failed",
        "lease lost: task re-queued",
        "media published",
        "status=409",
        "status=500",
        "status=503",
        "WARN",
        "ERROR",
    ];
    let mut out = String::from("log events per replica:");
    for event in EVENTS {
        let counts: Vec<usize> = cluster
            .orchestras
            .iter()
            .map(|o| o.log().lines().filter(|l| l.contains(event)).count())
            .collect();
        out.push_str(&format!("\n  {event:<30} {counts:?}"));
    }
    out
}

/// Copy every replica's and unit's whole log to `<target>/tmp/replicas-<random>/`; the
/// directory.
fn keep_logs(cluster: &Cluster) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("replicas-{}", uuid::Uuid::new_v4().simple()));
    if std::fs::create_dir_all(&dir).is_err() {
        return "(nowhere: cannot create a log dir)".to_owned();
    }
    for (n, orchestra) in cluster.orchestras.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("orchestra-{n}.log")), orchestra.log());
    }
    let units = cluster.units.iter().map(|u| &**u);
    for unit in units.chain(cluster.publishers.iter().map(|p| &**p)) {
        let _ = std::fs::copy(
            unit.workdir().join("unit.log"),
            dir.join(format!("{}.log", unit.id())),
        );
    }
    dir.display().to_string()
}

/// Every task SUCCESS once, with plausible attempts, one READY output of the right height
/// and no other READY media of its input.
fn check_tasks(scenario: &mut Scenario, tasks: &BTreeMap<String, Value>) {
    if scenario.tasks.len() != TASKS {
        let what = format!("{} of {TASKS} tasks were accepted", scenario.tasks.len());
        scenario.finding(what);
    }
    let succeeded = logged_tasks(&scenario.cluster, "transform task succeeded");
    let mut findings = vec![];
    for launched in &scenario.tasks {
        let id = &launched.id;
        let Some(task) = tasks.get(id) else {
            findings.push(format!("task {id} is missing from the list"));
            continue;
        };
        let cluster = &scenario.cluster;
        let status = str_of(task, "status");
        if status != "SUCCESS" {
            findings.push(format!(
                "task {id} (created on replica {}) ended {status}:\n{}\n{}",
                launched.replica,
                pretty(task),
                lines_about(cluster, id)
            ));
            continue;
        }
        let attempt = task["attempt"].as_u64().unwrap_or(0);
        let handed_back = task["handed_back"].as_u64().unwrap_or(u64::MAX);
        if !(1..=MAX_ATTEMPTS).contains(&attempt) || handed_back != 0 {
            findings.push(format!(
                "task {id}: attempt {attempt}, handed back {handed_back}:\n{}",
                lines_about(cluster, id)
            ));
        }
        if scenario.orphans.contains(id) && (attempt < 2 || task["unit_id"] == "unit-3") {
            findings.push(format!(
                "task {id} ran on the killed unit-3, yet ended attempt {attempt} on {}:\n{}",
                task["unit_id"],
                lines_about(cluster, id)
            ));
        }
        if !task["error"].is_null() || common::percent(task) != 100.0 {
            findings.push(format!("task {id} SUCCESS with {}", pretty(task)));
        }
        match succeeded.get(id).map(Vec::len) {
            Some(1) => {}
            None if finished_near(task, scenario.replica_killed_at) => eprintln!(
                "task {id} finished as replica 0 was killed: its completion went unlogged"
            ),
            n => findings.push(format!(
                "task {id}: completion accepted {} times:\n{}",
                n.unwrap_or(0),
                lines_about(cluster, id)
            )),
        }
        let out_id = str_of(task, "media_out_id");
        let (status, out) = scenario.api().get(&format!("/medias/{out_id}"));
        if status != 200 || out["status"] != "READY" || out["parent_id"] != launched.input.as_str()
        {
            findings.push(format!("task {id}: output ({status}) {}", pretty(&out)));
            continue;
        }
        let stored = cluster.stored_file(&out);
        if !stored.is_file() {
            findings.push(format!("task {id}: no {}", stored.display()));
            continue;
        }
        let height = probed_height(&stored);
        if height != OUTPUT_HEIGHT {
            findings.push(format!("task {id}: output {height} lines high"));
        }
    }
    // A completion accepted for a task the test did not launch would be a stray.
    let ours: BTreeSet<&String> = scenario.tasks.iter().map(|t| &t.id).collect();
    for (id, lines) in &succeeded {
        if !ours.contains(id) {
            findings.push(format!("a completion of a task not ours: {lines:?}"));
        }
    }
    // Exactly one READY output per task, and no other READY media made from the inputs.
    for input in &scenario.inputs {
        let expected = scenario.tasks.iter().filter(|t| &t.input == input).count() as u64;
        let (status, page) = scenario.api().get(&format!(
            "/medias?parent_id={input}&status=READY&limit=1000"
        ));
        if status != 200 || page["total"] != expected {
            findings.push(format!(
                "input {input}: {} READY outputs for {expected} tasks ({status})",
                page["total"]
            ));
        }
    }
    let (_, page) = scenario.api().get("/medias?status=READY&limit=1000");
    let expected = (INPUTS + scenario.tasks.len()) as u64;
    if page["total"] != expected {
        findings.push(format!(
            "{} READY medias, {expected} expected (inputs and one output per task)",
            page["total"]
        ));
    }
    for what in findings {
        scenario.finding(what);
    }
}

/// Did `task` finish within a second or two of `instant` (a replica's kill)?
fn finished_near(task: &Value, instant: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    let finished = task["finished_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match (finished, instant) {
        (Some(finished), Some(instant)) => {
            let gap = finished.signed_duration_since(instant).num_milliseconds();
            (-2000..=1000).contains(&gap)
        }
        _ => false,
    }
}

/// Each publication SUCCESS once, its URI in the media's `public_uris` and serving the
/// stored bytes.
fn check_publications(scenario: &mut Scenario, publications: &BTreeMap<String, Value>) {
    let published = logged_tasks(&scenario.cluster, "media published");
    let mut findings = vec![];
    for (n, p) in scenario.publications.iter().enumerate() {
        let cluster = &scenario.cluster;
        let task = &publications[&p.id];
        if task["status"] != "SUCCESS" {
            findings.push(format!(
                "publication {} ended {}:\n{}\n{}",
                p.id,
                task["status"],
                pretty(task),
                lines_about(cluster, &p.id)
            ));
            continue;
        }
        let attempt = task["attempt"].as_u64().unwrap_or(0);
        if !(1..=MAX_ATTEMPTS).contains(&attempt) {
            findings.push(format!("publication {}: attempt {attempt}", p.id));
        }
        match published.get(&p.id).map(Vec::len) {
            Some(1) => {}
            count => findings.push(format!(
                "publication {}: completion accepted {} times:\n{}",
                p.id,
                count.unwrap_or(0),
                lines_about(cluster, &p.id)
            )),
        }
        let (_, media) = scenario
            .api()
            .preferring(n + 1)
            .get(&format!("/medias/{}", p.media));
        let uri = task["publish_uri"].as_str().unwrap_or_default();
        let holder = cluster
            .publishers
            .iter()
            .find(|u| task["unit_id"] == u.id());
        let expected = holder.map(|u| {
            format!(
                "{}/medias/{}/{}",
                u.public_url(),
                p.media,
                media["filename"].as_str().unwrap_or_default()
            )
        });
        if expected.as_deref() != Some(uri) {
            findings.push(format!(
                "publication {}: publish_uri {uri:?}, expected {expected:?}",
                p.id
            ));
        }
        let want = json!({ p.id.clone(): uri });
        if media["public_uris"] != want {
            findings.push(format!(
                "media {}: public_uris {}, expected {want}",
                p.media, media["public_uris"]
            ));
        }
        let got = fetch(uri, &[]);
        let stored = cluster.stored_file(&media);
        if got.status != 200 || !same_bytes(got.body_path(), &stored) {
            findings.push(format!(
                "{uri} does not serve the bytes of {}: {}",
                stored.display(),
                got.describe()
            ));
        }
    }
    for what in findings {
        scenario.finding(what);
    }
}

/// Nothing left in `<storage>/tmp` (given a few seconds for the last clean-ups).
fn check_tmp(scenario: &mut Scenario) {
    let tmp = scenario.cluster.storage().join("tmp");
    let start = Instant::now();
    let mut left = files_below(&tmp);
    while !left.is_empty() && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        left = files_below(&tmp);
    }
    if !left.is_empty() {
        let shown: Vec<_> = left.iter().take(40).collect();
        scenario.finding(format!("{} entries left under tmp/: {shown:?}", left.len()));
    }
}
