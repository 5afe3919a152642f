//! Races through the real HTTP API (issue 12): many requests at once on one task or media,
//! over every orchestra of a store, on a multi-threaded runtime. On SQLite one orchestra
//! takes them all (a second one cannot open its data dir); on NX-27017 two orchestras share
//! the database, the storage root, the node secret and a RabbitMQ vhost (cluster mode, so
//! no in-process unit takes anything), and the racers alternate between them.
//!
//! The test plays the units through the node API, as `tasks.rs` does: its tasks go to a
//! queue no unit consumes (`nobody`), its publications to `elsewhere`. Each race runs
//! [`ROUNDS`] times on a fresh task and checks what a user would see afterwards: statuses,
//! error codes, the output media, the files on disk.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{App, As, clip};
use orchestra::config::Config;
use oscied_e2e::nx::NxServer;
use oscied_e2e::rabbit::Vhost;
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAIL: &str = "eve@example.com";
const SECRET: &str = "eve-secret-123";
const EVE: As = As::User(MAIL, SECRET);
const NODE_SECRET: &str = "node-secret-for-the-races";

/// Requests racing in each round.
const RACERS: usize = 16;
/// Rounds of each race.
const ROUNDS: usize = 10;

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// One standalone orchestra on its SQLite store.
    Sqlite,
    /// Two orchestras in cluster mode on one NX-27017 database.
    Nx,
}

/// The orchestras of one store, a READY input media of Eve's, a profile, and the file a unit
/// "produces" for a completion.
struct Replicas {
    /// Declared first: dropped (stopping the loops) before the servers they use.
    apps: Vec<App>,
    media: String,
    profile: String,
    /// The unit's output, made once and copied into `tmp/<task>/<attempt>/` per completion.
    canned: PathBuf,
    /// The completion's `output` for `canned`: its size and probe.
    output: Value,
    _scratch: tempfile::TempDir,
    _vhost: Option<Vhost>,
    _nx: Option<NxServer>,
}

/// An answer: HTTP status and JSON body.
type Answer = (StatusCode, Value);

impl Replicas {
    async fn start(backend: Backend, tweak: impl Fn(&mut Config)) -> Arc<Replicas> {
        let scratch = tempfile::tempdir().unwrap();
        let (apps, vhost, nx) = match backend {
            Backend::Sqlite => {
                let app = App::start_with(|c| {
                    c.node_secret = Some(NODE_SECRET.into());
                    tweak(c);
                })
                .await;
                (vec![app], None, None)
            }
            Backend::Nx => {
                let nx = NxServer::start();
                let vhost = Vhost::create();
                let storage = scratch.path().join("storage");
                let mut apps = vec![];
                for _ in 0..2 {
                    apps.push(
                        App::start_with(|c| {
                            c.mongodb_uri = Some(nx.uri());
                            c.amqp_uri = Some(vhost.uri());
                            c.node_secret = Some(NODE_SECRET.into());
                            c.storage_root = Some(storage.clone());
                            tweak(c);
                        })
                        .await,
                    );
                }
                (apps, Some(vhost), Some(nx))
            }
        };
        apps[0].user(MAIL, SECRET, false).await;
        let input = clip(scratch.path(), "in.mp4", 2, 320, 240);
        let (status, media) = apps[0].upload(EVE, &input, "in.mp4", "input").await;
        assert_eq!(status, StatusCode::CREATED, "{media}");
        let (_, profiles) = apps[0].get("/transform/profiles?q=force%20720p", EVE).await;
        let canned = clip(scratch.path(), "out.mp4", 2, 1280, 720);
        let probe =
            oscied_protocol::probe::probe(&canned, oscied_protocol::sandbox::SandboxMode::On)
                .await
                .unwrap();
        let output = json!({"size": std::fs::metadata(&canned).unwrap().len(), "probe": probe});
        Arc::new(Replicas {
            apps,
            media: media["id"].as_str().unwrap().to_owned(),
            profile: profiles["items"][0]["id"].as_str().unwrap().to_owned(),
            canned,
            output,
            _scratch: scratch,
            _vhost: vhost,
            _nx: nx,
        })
    }

    /// The orchestra racer `i` talks to: they alternate.
    fn app(&self, i: usize) -> &App {
        &self.apps[i % self.apps.len()]
    }

    /// The storage root, shared by all the orchestras.
    fn storage(&self) -> &Path {
        self.apps[0].storage()
    }

    /// A node call (`node:<secret>`) to orchestra `i`.
    async fn node(&self, i: usize, path: &str, body: Value) -> Answer {
        let app = self.app(i);
        common::read(
            app.client
                .post(format!("{}/node{path}", app.base))
                .basic_auth("node", Some(NODE_SECRET))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A transform task of Eve's on a queue nobody consumes, through orchestra `i`: its id
    /// and its output media's.
    async fn launch(&self, i: usize) -> (String, String) {
        let (status, task) = self
            .app(i)
            .post(
                "/transform/tasks",
                EVE,
                json!({"media_in_id": self.media, "profile_id": self.profile,
                    "filename": "out.mp4", "metadata": {"title": "output"}, "queue": "nobody"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert_eq!(task["status"], "PENDING", "{task}");
        let id = task["id"].as_str().unwrap().to_owned();
        (id, task["media_out_id"].as_str().unwrap().to_owned())
    }

    /// A launched task claimed by `unit` (attempt 1), its output written as the unit would.
    async fn running(&self, i: usize, unit: &str) -> (String, String) {
        let (id, out) = self.launch(i).await;
        let (status, claimed) = self.claim(i + 1, &id, unit).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        self.produce(&id, 1);
        (id, out)
    }

    async fn claim(&self, i: usize, id: &str, unit: &str) -> Answer {
        self.node(
            i,
            &format!("/transform/tasks/{id}/claim"),
            json!({"unit_id": unit, "attempt": 1}),
        )
        .await
    }

    async fn complete(&self, i: usize, id: &str, unit: &str) -> Answer {
        self.node(
            i,
            &format!("/transform/tasks/{id}/complete"),
            json!({"unit_id": unit, "attempt": 1, "status": "SUCCESS", "error": null,
                "output": self.output}),
        )
        .await
    }

    async fn progress(&self, i: usize, id: &str, unit: &str, percent: f64) -> Answer {
        self.node(
            i,
            &format!("/transform/tasks/{id}/progress"),
            json!({"unit_id": unit, "attempt": 1, "progress": {"percent": percent,
                "frame": 1, "fps": 25.0, "speed": 1.0, "out_time": 0.1, "elapsed": 0.1,
                "eta": 1.0}}),
        )
        .await
    }

    /// Write the unit's output of `attempt` into `tmp/<task>/<attempt>/`.
    fn produce(&self, id: &str, attempt: u32) {
        let dir = self.storage().join(format!("tmp/{id}/{attempt}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&self.canned, dir.join("out.mp4")).unwrap();
    }

    /// The task as orchestra `i` shows it to Eve.
    async fn task(&self, i: usize, id: &str) -> Value {
        let (status, task) = self
            .app(i)
            .get(&format!("/transform/tasks/{id}"), EVE)
            .await;
        assert_eq!(status, StatusCode::OK, "{task}");
        task
    }

    /// The task as every orchestra shows it, checked the same on all.
    async fn task_everywhere(&self, id: &str) -> Value {
        let first = self.task(0, id).await;
        for i in 1..self.apps.len() {
            assert_eq!(self.task(i, id).await, first, "orchestra {i} disagrees");
        }
        first
    }

    async fn media_of(&self, i: usize, id: &str) -> Value {
        let (status, media) = self.app(i).get(&format!("/medias/{id}"), EVE).await;
        assert_eq!(status, StatusCode::OK, "{media}");
        media
    }

    /// The task's revision in the store: how many writes landed on it.
    async fn revision(&self, id: &str) -> u64 {
        self.apps[0]
            .running
            .state
            .store
            .get_transform_task(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .revision
    }

    /// The files under `medias/<id>/`, relative to it.
    fn media_files(&self, id: &str) -> Vec<PathBuf> {
        let dir = self.storage().join("medias").join(id);
        let mut files: Vec<PathBuf> = self.apps[0]
            .stored_files()
            .into_iter()
            .filter(|f| f.starts_with(&dir))
            .map(|f| f.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        files.sort();
        files
    }

    /// An output taken in once: READY with the unit's file as its only one, and no tmp left.
    async fn assert_output_ready(&self, id: &str, out: &str, context: &str) {
        for i in 0..self.apps.len() {
            let media = self.media_of(i, out).await;
            assert_eq!(media["status"], "READY", "{context}: {media}");
            assert_eq!(media["probe"]["streams"][0]["height"], 720, "{context}");
            assert!(media["size"].as_u64().unwrap() > 0, "{context}: {media}");
        }
        assert_eq!(
            self.media_files(out),
            vec![PathBuf::from("out.mp4")],
            "{context}: the output's files"
        );
        assert_eq!(
            std::fs::read(self.storage().join(format!("medias/{out}/out.mp4"))).unwrap(),
            std::fs::read(&self.canned).unwrap(),
            "{context}: the unit's file, whole"
        );
        assert!(
            !self.storage().join(format!("tmp/{id}")).exists(),
            "{context}: tmp/<task> removed"
        );
    }

    /// An output discarded: DELETED, no file of it nor of its task left.
    async fn assert_output_deleted(&self, id: &str, out: &str, context: &str) {
        for i in 0..self.apps.len() {
            let media = self.media_of(i, out).await;
            assert_eq!(media["status"], "DELETED", "{context}: {media}");
        }
        assert_eq!(self.media_files(out), Vec::<PathBuf>::new(), "{context}");
        assert!(
            !self.storage().join(format!("medias/{out}")).exists(),
            "{context}: medias/<out> removed"
        );
        assert!(
            !self
                .storage()
                .join(format!("thumbnails/{out}.jpg"))
                .exists(),
            "{context}: no thumbnail"
        );
        assert!(
            !self.storage().join(format!("tmp/{id}")).exists(),
            "{context}: tmp/<task> removed"
        );
    }
}

/// Run `racer(0..n)` at once: each on its own runtime task, all released by one barrier.
/// The answers in racer order.
async fn at_once<T, F, Fut>(n: usize, racer: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let call = racer(i);
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for handle in handles {
        answers.push(handle.await.expect("a racer panicked"));
    }
    answers
}

fn code(answer: &Answer) -> &str {
    answer.1["error"]["code"].as_str().unwrap_or_default()
}

/// 16 units claim one PENDING task at once: one gets attempt 1, the others `stale_attempt`,
/// and the task is STARTED held by the winner on every orchestra.
async fn claims(backend: Backend) {
    let r = Replicas::start(backend, |_| {}).await;
    for round in 0..ROUNDS {
        let (id, _) = r.launch(round).await;
        let answers = at_once(RACERS, |i| {
            let (r, id) = (r.clone(), id.clone());
            async move { r.claim(i, &id, &format!("u{i:02}")).await }
        })
        .await;
        let won: Vec<usize> = (0..RACERS)
            .filter(|&i| answers[i].0 == StatusCode::OK)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: one claim wins: {answers:?}");
        let winner = won[0];
        assert_eq!(answers[winner].1["attempt"], 1, "{:?}", answers[winner]);
        assert_eq!(answers[winner].1["task_id"], id.as_str());
        for (i, answer) in answers.iter().enumerate().filter(|(i, _)| *i != winner) {
            assert_eq!(
                answer.0,
                StatusCode::CONFLICT,
                "round {round} racer {i}: {answer:?}"
            );
            assert_eq!(code(answer), "stale_attempt", "{answer:?}");
        }
        let task = r.task_everywhere(&id).await;
        assert_eq!(task["status"], "STARTED", "{task}");
        assert_eq!(task["unit_id"], format!("u{winner:02}"), "{task}");
        assert_eq!(task["attempt"], 1, "{task}");
    }
}

/// The holder sends its SUCCESS 8 times at once over the orchestras: all answer SUCCESS, one
/// write is accepted, and the output is taken in once.
async fn completions(backend: Backend) {
    let r = Replicas::start(backend, |_| {}).await;
    for round in 0..ROUNDS {
        let (id, out) = r.running(round, "u1").await;
        let before = r.revision(&id).await;
        let answers = at_once(8, |i| {
            let (r, id) = (r.clone(), id.clone());
            async move { r.complete(i, &id, "u1").await }
        })
        .await;
        let context = format!("round {round}: {answers:?}");
        for answer in &answers {
            assert_eq!(answer.0, StatusCode::OK, "{context}");
            assert_eq!(answer.1["status"], "SUCCESS", "{context}");
        }
        let task = r.task_everywhere(&id).await;
        assert_eq!(task["status"], "SUCCESS", "{context}: {task}");
        assert_eq!(task["attempt"], 1, "{task}");
        assert_eq!(task["progress"]["percent"], 100.0, "{task}");
        assert!(task["finished_at"].is_string(), "{task}");
        assert_eq!(
            r.revision(&id).await,
            before + 2,
            "{context}: one completion written (its hold, then its decision), the repeats \
             changed nothing"
        );
        r.assert_output_ready(&id, &out, &context).await;
        // Nothing moves afterwards.
        assert_eq!(r.task_everywhere(&id).await, task);
    }
}

/// What a racer of [`completion_revoke_progress`] sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    Complete,
    Revoke,
    Progress,
}

/// The holder's SUCCESS, its owner's revoke and the holder's progress, all at once: either
/// SUCCESS with the output READY, or REVOKED with it DELETED and no files, and every answer
/// agrees with the end.
async fn completion_revoke_progress(backend: Backend) {
    let r = Replicas::start(backend, |_| {}).await;
    let mut ends = vec![];
    for round in 0..ROUNDS {
        let (id, out) = r.running(round, "u1").await;
        // One completion (its repeats are `completions`'), 8 revokes, 7 progress reports.
        let sent = |i: usize| match i {
            0 => Sent::Complete,
            _ if i % 2 == 1 => Sent::Revoke,
            _ => Sent::Progress,
        };
        // The revokes leave 0 to 675 ms after the others by round: a completion (its hold,
        // its output taken in, its decision) takes tens to hundreds, so the revokes meet it at
        // every step, before it starts to after it ends.
        let revoke_delay = Duration::from_millis(75 * round as u64);
        let answers = at_once(RACERS, |i| {
            let (r, id) = (r.clone(), id.clone());
            let what = sent(i);
            async move {
                match what {
                    Sent::Complete => r.complete(i, &id, "u1").await,
                    Sent::Revoke => {
                        tokio::time::sleep(revoke_delay).await;
                        r.app(i)
                            .delete(&format!("/transform/tasks/{id}"), EVE)
                            .await
                    }
                    Sent::Progress => r.progress(i, &id, "u1", i as f64).await,
                }
            }
        })
        .await;
        let context = format!("round {round}: {answers:?}");
        let task = r.task_everywhere(&id).await;
        let end = task["status"].as_str().unwrap().to_owned();
        for (i, answer) in answers.iter().enumerate() {
            match sent(i) {
                // A completion answers the status it leaves, final either way.
                Sent::Complete => {
                    assert_eq!(answer.0, StatusCode::OK, "{context}");
                    assert_eq!(answer.1["status"], end.as_str(), "{context}");
                }
                // Before: REVOKING (then the end is REVOKED). After: the task has finished.
                Sent::Revoke if answer.0 == StatusCode::ACCEPTED => {
                    assert_eq!(answer.1["status"], "REVOKING", "{context}");
                    assert_eq!(end, "REVOKED", "a revoke was taken: {context}");
                }
                Sent::Revoke => {
                    assert_eq!(answer.0, StatusCode::CONFLICT, "{context}");
                    assert_eq!(code(answer), "illegal_state", "{context}");
                }
                Sent::Progress if answer.0 == StatusCode::OK => {
                    if answer.1["cancel"] == true {
                        assert_eq!(end, "REVOKED", "told to stop: {context}");
                    }
                }
                Sent::Progress => {
                    assert_eq!(answer.0, StatusCode::CONFLICT, "{context}");
                    assert_eq!(code(answer), "stale_attempt", "{context}");
                }
            }
        }
        match end.as_str() {
            "SUCCESS" => {
                assert_eq!(task["progress"]["percent"], 100.0, "{task}");
                r.assert_output_ready(&id, &out, &context).await;
            }
            "REVOKED" => r.assert_output_deleted(&id, &out, &context).await,
            other => panic!("{context}: the task ended {other}: {task}"),
        }
        ends.push(end);
    }
    eprintln!("{backend:?}: completion against revoke and progress ended {ends:?}");
}

/// A claimed task whose unit said nothing for its lease: the unit's late completion and
/// late progress race 14 reaper passes spread over 280 ms and split over the orchestras (as
/// if each ran the loops), and the leader's background reaper. The task ends RETRY attempt
/// 2, the late completion refused and the output still PENDING and empty; or SUCCESS, the reaper having done
/// nothing. Never both, never attempt 3. (One completion: repeats are `completions`.)
async fn lapsed_lease(backend: Backend) {
    let r = Replicas::start(backend, |c| {
        c.task_lease_secs = 2;
        c.task_max_attempts = 3;
    })
    .await;
    let mut ends = vec![];
    for round in 0..ROUNDS {
        let (id, out) = r.running(round, "u1").await;
        wait_lapse(&r, &id, round).await;
        let answers = at_once(RACERS, |i| {
            let (r, id) = (r.clone(), id.clone());
            async move {
                match i {
                    0 => Some(r.complete(i, &id, "u1").await),
                    1 => Some(r.progress(i, &id, "u1", 50.0).await),
                    _ => {
                        reap_pass(&r, i, i - 2).await;
                        None
                    }
                }
            }
        })
        .await;
        let context = format!("round {round}: {answers:?}");
        let task = r.task_everywhere(&id).await;
        let completion = answers[0].as_ref().unwrap();
        match task["status"].as_str().unwrap() {
            "SUCCESS" => {
                assert_eq!(task["attempt"], 1, "the reaper did nothing: {task}");
                assert!(task["error"].is_null(), "{task}");
                assert_eq!(completion.0, StatusCode::OK, "{context}");
                assert_eq!(completion.1["status"], "SUCCESS", "{context}");
                r.assert_output_ready(&id, &out, &context).await;
            }
            "RETRY" => {
                assert_eq!(task["attempt"], 2, "taken back once: {task}");
                assert!(
                    task["unit_id"].is_null() || task["unit_id"] == "u1",
                    "{task}"
                );
                let error = task["error"].as_str().unwrap_or_default();
                assert!(error.contains("u1 went silent on attempt 1"), "{task}");
                assert_eq!(completion.0, StatusCode::CONFLICT, "{context}");
                assert_eq!(code(completion), "stale_attempt", "{context}");
                // Attempt 2 has yet to run: its output is not there, nor a late attempt's.
                for i in 0..r.apps.len() {
                    let media = r.media_of(i, &out).await;
                    assert_eq!(
                        media["status"], "PENDING",
                        "{context}: a retried task's output: {media}"
                    );
                }
                assert_eq!(
                    r.media_files(&out),
                    Vec::<PathBuf>::new(),
                    "{context}: the refused completion's files"
                );
            }
            other => panic!("{context}: the task is {other}: {task}"),
        }
        ends.push(format!(
            "{}/{}",
            task["status"].as_str().unwrap(),
            task["attempt"]
        ));
        // The background reaper comes round again: nothing more happens to it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = r.task_everywhere(&id).await;
        assert_eq!(
            (later["status"].clone(), later["attempt"].clone()),
            (task["status"].clone(), task["attempt"].clone()),
            "{later}"
        );
    }
    eprintln!("{backend:?}: a lapsed lease against its late completion ended {ends:?}");
}

/// Sleep until around the task's lease lapses: from 200 ms before to 200 ms after, by round,
/// so that the late calls meet the reapers at different points.
async fn wait_lapse(r: &Replicas, id: &str, round: usize) {
    let task = r.task(0, id).await;
    let until: chrono::DateTime<chrono::Utc> =
        task["lease_expires_at"].as_str().unwrap().parse().unwrap();
    let offset = chrono::Duration::milliseconds(50 * (round as i64 % 9) - 200);
    let left = (until + offset - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left).await;
}

/// Reaper pass `n` of a race, on orchestra `i`: passes are 20 ms apart, so that one falls in
/// each part of a late completion's work.
async fn reap_pass(r: &Replicas, i: usize, n: usize) {
    tokio::time::sleep(Duration::from_millis(20 * n as u64)).await;
    orchestra::loops::reap(&r.app(i).running.state).await;
}

/// As [`lapsed_lease`], on the last attempt: the reaper's decision is FAILURE, which
/// discards the output before it is written. 15 reaper passes start 1 ms apart just after
/// the lease lapsed; the unit's late report comes a little later, later each round, so that
/// in some round it lands between a reaper's read and its write; the late completion comes
/// last. Either FAILURE because the unit went silent, with the output DELETED and no files,
/// or SUCCESS with it READY (the report came first and renewed the lease); never a running
/// task whose output is gone, which its completion would then end FAILURE "discarded".
async fn lapsed_last_attempt(backend: Backend) {
    // How much later the report comes each round: about a tenth of a reaper's decision.
    let step = match backend {
        Backend::Sqlite => 1,
        Backend::Nx => 4,
    };
    let r = Replicas::start(backend, |c| {
        c.task_lease_secs = 2;
        c.task_max_attempts = 1;
    })
    .await;
    let mut ends = vec![];
    for round in 0..ROUNDS {
        let (id, out) = r.running(round, "u1").await;
        let task = r.task(0, &id).await;
        let until: chrono::DateTime<chrono::Utc> =
            task["lease_expires_at"].as_str().unwrap().parse().unwrap();
        let left = (until + chrono::Duration::milliseconds(20) - chrono::Utc::now()).to_std();
        tokio::time::sleep(left.unwrap_or_default()).await;
        let answers = at_once(RACERS, |i| {
            let (r, id) = (r.clone(), id.clone());
            async move {
                match i {
                    0 => {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        Some(r.complete(i, &id, "u1").await)
                    }
                    1 => {
                        let late = step * (round as u64 + 1);
                        tokio::time::sleep(Duration::from_millis(late)).await;
                        Some(r.progress(i, &id, "u1", 60.0).await)
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(i as u64 - 2)).await;
                        orchestra::loops::reap(&r.app(i).running.state).await;
                        None
                    }
                }
            }
        })
        .await;
        let context = format!("round {round}: {answers:?}");
        let task = r.task_everywhere(&id).await;
        let end = task["status"].as_str().unwrap().to_owned();
        assert_eq!(task["attempt"], 1, "{context}: {task}");
        let completion = answers[0].as_ref().unwrap();
        assert_eq!(completion.0, StatusCode::OK, "{context}");
        assert_eq!(completion.1["status"], end.as_str(), "{context}");
        let report = answers[1].as_ref().unwrap();
        match report.0 {
            StatusCode::OK => assert_eq!(report.1["cancel"], false, "{context}"),
            StatusCode::CONFLICT => assert_eq!(code(report), "stale_attempt", "{context}"),
            other => panic!("{context}: the late report answered {other}"),
        }
        match end.as_str() {
            "SUCCESS" => r.assert_output_ready(&id, &out, &context).await,
            "FAILURE" => {
                let error = task["error"].as_str().unwrap_or_default();
                assert!(error.contains("u1 went silent"), "{context}: {task}");
                r.assert_output_deleted(&id, &out, &context).await;
            }
            other => panic!("{context}: the task is {other}: {task}"),
        }
        ends.push(format!("{end}({})", report.0.as_u16()));
    }
    eprintln!(
        "{backend:?}: a lapsed last attempt against its late report and completion ended {ends:?}"
    );
}

/// 16 publications of one READY media at once over the orchestras: one is created, the
/// others are 409, and one publication holds the media. It is revoked for the next round.
async fn publications(backend: Backend) {
    let r = Replicas::start(backend, |_| {}).await;
    let holding = "PENDING,RETRY,STARTED,PROGRESS,REVOKING,SUCCESS";
    for round in 0..ROUNDS {
        let answers = at_once(RACERS, |i| {
            let r = r.clone();
            async move {
                r.app(i)
                    .post(
                        "/publisher/tasks",
                        EVE,
                        json!({"media_id": r.media, "queue": "elsewhere"}),
                    )
                    .await
            }
        })
        .await;
        let context = format!("round {round}: {answers:?}");
        let created: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.0 == StatusCode::CREATED)
            .collect();
        assert_eq!(created.len(), 1, "{context}");
        let winner = created[0].1["id"].as_str().unwrap().to_owned();
        for answer in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
            assert_eq!(answer.0, StatusCode::CONFLICT, "{context}");
            let message = answer.1["error"]["message"].as_str().unwrap_or_default();
            match code(answer) {
                // Checked after the winner's insert: it names the winner.
                "illegal_state" => assert!(message.contains(&winner), "{context}"),
                // Still waiting for the media's turn after 10 s.
                "conflict" => assert!(message.contains("another request"), "{context}"),
                other => panic!("{context}: code {other}"),
            }
        }
        for i in 0..r.apps.len() {
            let (status, held) = r
                .app(i)
                .get(
                    &format!("/publisher/tasks?media_id={}&status={holding}", r.media),
                    EVE,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{held}");
            assert_eq!(held["total"], 1, "{context}: {held}");
            assert_eq!(held["items"][0]["id"], winner.as_str(), "{held}");
        }
        let (status, revoked) = r
            .app(round)
            .delete(&format!("/publisher/tasks/{winner}"), EVE)
            .await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert_eq!(revoked["status"], "REVOKED", "{revoked}");
    }
    let (_, all) = r
        .app(0)
        .get(&format!("/publisher/tasks?media_id={}", r.media), EVE)
        .await;
    assert_eq!(all["total"], ROUNDS, "one publication per round: {all}");
}

/// 16 metadata patches of one media at once, each adding its own key: all answer 200 and no
/// key is lost.
async fn metadata_patches(backend: Backend) {
    let r = Replicas::start(backend, |_| {}).await;
    let path = format!("/medias/{}", r.media);
    for round in 0..ROUNDS {
        let answers = at_once(RACERS, |i| {
            let (r, path) = (r.clone(), path.clone());
            async move {
                r.app(i)
                    .patch(
                        &path,
                        EVE,
                        json!({"metadata": {format!("r{round}k{i}"): i}}),
                    )
                    .await
            }
        })
        .await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(
                answer.0,
                StatusCode::OK,
                "round {round} racer {i}: {answer:?}"
            );
            assert_eq!(
                answer.1["metadata"][format!("r{round}k{i}")],
                i,
                "{answer:?}"
            );
        }
        for i in 0..r.apps.len() {
            let media = r.media_of(i, &r.media).await;
            let metadata = media["metadata"].as_object().unwrap();
            assert_eq!(metadata["title"], "input");
            for done in 0..=round {
                for k in 0..RACERS {
                    assert_eq!(
                        metadata.get(&format!("r{done}k{k}")),
                        Some(&json!(k)),
                        "round {round}: key r{done}k{k} lost: {media}"
                    );
                }
            }
            assert_eq!(metadata.len(), 1 + (round + 1) * RACERS, "{media}");
        }
    }
}

/// Each race once per store, on a multi-threaded runtime.
/// A completion's hold keeps every reaper off a task whose lease lapsed while it stands, and
/// no longer once it lapsed (the replica completing died mid-way): the next pass takes the
/// attempt back and clears it, and the dead completion's unit is then stale.
async fn held_completion(backend: Backend) {
    use orchestra::models::{Hold, Revised};
    let r = Replicas::start(backend, |c| {
        c.task_lease_secs = 2;
        c.task_max_attempts = 3;
    })
    .await;
    let (id, out) = r.running(0, "u1").await;
    let store = r.apps[0].running.state.store.clone();
    let uuid = id.parse().unwrap();
    // What a completion's first write leaves, by a replica that then died: a hold until 4 s
    // from now, past the lease.
    let until = chrono::Utc::now() + chrono::Duration::seconds(4);
    let mut task = store.get_transform_task(uuid).await.unwrap().unwrap();
    task.set_hold(Some(Hold {
        by: "a-dead-completion".into(),
        until,
    }));
    assert!(store.update_transform_task(&mut task).await.unwrap());
    wait_lapse(&r, &id, 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..4 {
        reap_pass(&r, i, 0).await;
    }
    let held = r.task_everywhere(&id).await;
    assert_eq!(
        (held["status"].as_str(), held["attempt"].as_u64()),
        (Some("STARTED"), Some(1)),
        "held, the lapsed task is left alone: {held}"
    );
    let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    for i in 0..4 {
        reap_pass(&r, i, 0).await;
    }
    let task = r.task_everywhere(&id).await;
    assert_eq!(task["status"], "RETRY", "{task}");
    assert_eq!(task["attempt"], 2, "taken back once: {task}");
    let stored = store.get_transform_task(uuid).await.unwrap().unwrap();
    assert_eq!(stored.hold(), None, "the lapsed hold is cleared");
    let late = r.complete(1, &id, "u1").await;
    assert_eq!(late.0, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(code(&late), "stale_attempt", "{late:?}");
    for i in 0..r.apps.len() {
        let media = r.media_of(i, &out).await;
        assert_eq!(media["status"], "PENDING", "{media}");
    }
}

macro_rules! races {
    ($($race:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $race() {
                    super::$race(super::Backend::Sqlite).await;
                }
            )*
        }

        mod nx27017 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $race() {
                    super::$race(super::Backend::Nx).await;
                }
            )*
        }
    };
}

races!(
    claims,
    completions,
    completion_revoke_progress,
    lapsed_lease,
    lapsed_last_attempt,
    held_completion,
    publications,
    metadata_patches,
);
