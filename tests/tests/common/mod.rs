//! A test cluster for the end-to-end tests: NX-27017 + a RabbitMQ vhost + one or several
//! `orchestra` replicas + N `worker-transform` units sharing one storage tree (or a standalone
//! orchestra with its in-process unit), a user, and the calls a user makes, through the one
//! API client of the harness ([`Api`], curl), spread over the replicas.
//!
//! Every wait polls every 150 ms and, when it gives up, panics with what it last saw and the
//! tails of the orchestra's and the units' logs.

#![allow(dead_code)] // each test binary uses its own part of the fixture

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oscied_e2e::api::{Api, CALL_MAX_SECS, TRANSFER_MAX_SECS};
use oscied_e2e::nx::NxServer;
use oscied_e2e::orchestra::Orchestra;
use oscied_e2e::rabbit::Vhost;
use oscied_e2e::units::{PublisherUnit, TransformUnit};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ROOT_SECRET: &str = "e2e-root-secret";
pub const NODE_SECRET: &str = "e2e-node-secret";
const USER_MAIL: &str = "grace@example.com";
const USER_SECRET: &str = "compiler-pioneer";
const POLL: Duration = Duration::from_millis(150);

/// A profile that runs at 1x real time (the `realtime` filter paces it) at little CPU cost:
/// a 20 s clip takes about 20 s.
pub const REALTIME_ENCODER: &str =
    "-vf realtime,scale=-2:240 -c:v libx264 -preset ultrafast -c:a aac";

/// Statuses a task never leaves.
pub const FINAL: &[&str] = &["SUCCESS", "FAILURE", "REVOKED"];

pub struct Cluster {
    // Field order is drop order: units and orchestras stop before their servers go.
    pub publishers: Vec<PublisherUnit>,
    pub units: Vec<TransformUnit>,
    /// The replicas; one but for [`Cluster::replicas`].
    pub orchestras: Vec<Orchestra>,
    pub vhost: Option<Vhost>,
    pub nx: Option<NxServer>,
    storage: TempDir,
    clips: TempDir,
    /// The user's calls, round-robin over the replicas.
    api: Api,
    /// root's calls, likewise.
    root: Api,
}

impl Cluster {
    /// NX-27017, a fresh vhost, the orchestra (with `env` on top of the cluster variables)
    /// and `units` transform units `unit-1`, `unit-2`... (concurrency 1, heartbeat 1 s).
    pub fn start(units: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::replicas(1, units, env)
    }

    /// [`Cluster::start`] with `replicas` orchestras in cluster mode on the one NX-27017
    /// database and vhost: the same root and node secrets and storage root, each its own
    /// working dir (so its own data dir) and port, all started at once. Unit `unit-<n>` is
    /// pointed at replica `(n - 1) % replicas`; the user's calls go round-robin to all.
    pub fn replicas(replicas: usize, units: usize, env: &[(&str, &str)]) -> Cluster {
        assert!(replicas >= 1, "a cluster has an orchestra");
        let nx = NxServer::start();
        let vhost = Vhost::create();
        let storage = tempfile::Builder::new()
            .prefix("oscied-storage-")
            .tempdir()
            .expect("temp dir");
        let mongo = nx.uri();
        let amqp = vhost.uri();
        let root = storage.path().to_str().expect("utf-8 temp path").to_owned();
        let mut vars: Vec<(&str, &str)> = vec![
            ("OSCIED_MONGODB_URI", &mongo),
            ("OSCIED_AMQP_URI", &amqp),
            ("OSCIED_STORAGE_ROOT", &root),
            ("OSCIED_ROOT_SECRET", ROOT_SECRET),
            ("OSCIED_NODE_SECRET", NODE_SECRET),
        ];
        vars.extend_from_slice(env);
        // Spawned together, as a deployment starts them; then each must become healthy.
        let mut orchestras: Vec<Orchestra> =
            (0..replicas).map(|_| Orchestra::spawn(&vars)).collect();
        for orchestra in &mut orchestras {
            orchestra.wait_healthy();
        }
        let mut cluster = Cluster::around(orchestras, Some(vhost), Some(nx), storage);
        for n in 1..=units {
            let url = cluster.replica_url((n - 1) % replicas);
            cluster.add_unit_on(&format!("unit-{n}"), &url, &[]);
        }
        cluster.create_user();
        cluster
    }

    /// The orchestra alone, standalone: embedded SQLite, in-process queues and unit.
    pub fn standalone() -> Cluster {
        Cluster::standalone_with(&[])
    }

    /// [`Cluster::standalone`] with `env` on top of its variables.
    pub fn standalone_with(env: &[(&str, &str)]) -> Cluster {
        let storage = tempfile::Builder::new()
            .prefix("oscied-storage-")
            .tempdir()
            .expect("temp dir");
        let root = storage.path().to_str().expect("utf-8 temp path").to_owned();
        let mut vars: Vec<(&str, &str)> = vec![
            ("OSCIED_STORAGE_ROOT", &root),
            ("OSCIED_ROOT_SECRET", ROOT_SECRET),
        ];
        vars.extend_from_slice(env);
        let orchestra = Orchestra::start(&vars);
        let cluster = Cluster::around(vec![orchestra], None, None, storage);
        cluster.create_user();
        cluster
    }

    fn around(
        orchestras: Vec<Orchestra>,
        vhost: Option<Vhost>,
        nx: Option<NxServer>,
        storage: TempDir,
    ) -> Cluster {
        let anonymous = Api::over(orchestras.iter().map(Orchestra::api).collect());
        Cluster {
            publishers: vec![],
            units: vec![],
            api: anonymous.as_user(USER_MAIL, USER_SECRET),
            root: anonymous.as_user("root", ROOT_SECRET),
            orchestras,
            vhost,
            nx,
            storage,
            clips: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The first (or only) orchestra.
    pub fn orchestra(&self) -> &Orchestra {
        &self.orchestras[0]
    }

    pub fn orchestra_mut(&mut self) -> &mut Orchestra {
        &mut self.orchestras[0]
    }

    /// `http://127.0.0.1:<port>` of replica `index`: a unit's `OSCIED_API_URL`.
    pub fn replica_url(&self, index: usize) -> String {
        self.orchestras[index].url()
    }

    /// Every replica's URL, comma-separated: the `OSCIED_API_URL` of a unit that fails over.
    pub fn replica_urls(&self) -> String {
        let urls: Vec<String> = self.orchestras.iter().map(Orchestra::url).collect();
        urls.join(",")
    }

    /// The user's client: calls spread round-robin over the replicas.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// A second user (Eve, `eve-secret-1`), and its client.
    pub fn other_user(&self, mail: &str) -> Api {
        let (status, user) = self.root_api().post(
            "/users",
            &json!({"first_name": "Eve", "last_name": "Other", "mail": mail, "secret": "eve-secret-1"}),
        );
        assert_eq!(status, 201, "{user}");
        self.api().as_user(mail, "eve-secret-1")
    }

    /// root's client, likewise.
    pub fn root_api(&self) -> &Api {
        &self.root
    }

    /// `kill -9` replica `index`; [`Cluster::restart_replica`] brings it back on its port.
    pub fn kill_replica(&mut self, index: usize) {
        self.orchestras[index].kill9();
    }

    /// Start replica `index` again (killing it first if it runs) on the same port, data
    /// dir and variables; returns once it is healthy.
    pub fn restart_replica(&mut self, index: usize) {
        self.orchestras[index].start_again();
    }

    /// Start one more transform unit on this cluster.
    pub fn add_unit(&mut self, id: &str) {
        self.add_unit_with(id, &[]);
    }

    /// Start one more transform unit on this cluster, with `extra` variables on top.
    /// A variable of `extra` given twice wins over the default (the last value of a name is
    /// the one a process gets), e.g. a wrong `OSCIED_NODE_SECRET`.
    pub fn add_unit_with(&mut self, id: &str, extra: &[(&str, &str)]) {
        let url = self.replica_url(0);
        self.add_unit_on(id, &url, extra);
    }

    /// [`Cluster::add_unit_with`] with `api_url` as its `OSCIED_API_URL`: one replica's URL,
    /// or several separated by commas ([`Cluster::replica_urls`]).
    pub fn add_unit_on(&mut self, id: &str, api_url: &str, extra: &[(&str, &str)]) {
        let vars = self.node_vars_on(api_url);
        let env = unit_env(
            &vars,
            &[
                ("OSCIED_QUEUES", "transform"),
                ("OSCIED_CONCURRENCY", "1"),
                ("OSCIED_HEARTBEAT_SECS", "1"),
            ],
            extra,
        );
        let unit = TransformUnit::start(id, &env);
        self.units.push(unit);
    }

    /// The shared storage root.
    pub fn storage(&self) -> &Path {
        self.storage.path()
    }

    /// `<storage>/medias/<id>/`
    pub fn media_dir(&self, id: &str) -> PathBuf {
        self.storage().join("medias").join(id)
    }

    /// The orchestras' and every unit's log tails.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (n, orchestra) in self.orchestras.iter().enumerate() {
            let name = match self.orchestras.len() {
                1 => "orchestra".to_owned(),
                _ => format!("orchestra {n} (port {})", orchestra.port()),
            };
            out.push_str(&format!(
                "===== {name} log (tail) =====\n{}\n",
                orchestra.log_tail()
            ));
        }
        for unit in &self.units {
            out.push_str(&format!(
                "===== unit {} log (tail) =====\n{}\n",
                unit.id(),
                unit.log_tail()
            ));
        }
        for unit in &self.publishers {
            out.push_str(&format!(
                "===== publisher {} log (tail) =====\n{}\n",
                unit.id(),
                unit.log_tail()
            ));
        }
        out
    }

    fn create_user(&self) {
        let (status, user) = self.root.post(
            "/users",
            &json!({
                "first_name": "Grace",
                "last_name": "Hopper",
                "mail": USER_MAIL,
                "secret": USER_SECRET,
            }),
        );
        assert_eq!(status, 201, "create the user: {user}\n{}", self.logs());
    }

    /// A call as the user: the HTTP status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.api.call(method, path, body)
    }

    /// A GET as the user that must answer 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None);
        assert_eq!(
            status,
            200,
            "GET {path} (0 = no answer within {CALL_MAX_SECS} s): {body}\n{}",
            self.logs()
        );
        body
    }

    /// Make a clip (H.264/AAC, lavfi) and upload it; the READY media.
    pub fn upload_clip(&self, name: &str, seconds: u32, width: u32, height: u32) -> Value {
        let path = self.clip(name, seconds, width, height);
        let (status, media) = self.api.upload(&path, &[("title", name)]);
        assert_eq!(status, 201, "upload {name}: {media}\n{}", self.logs());
        assert_eq!(media["status"], "READY", "{media}");
        media
    }

    /// The local clip file uploaded as `name` (made on first use).
    pub fn clip(&self, name: &str, seconds: u32, width: u32, height: u32) -> PathBuf {
        let path = self.clips.path().join(name);
        if path.is_file() {
            return path;
        }
        oscied_e2e::media::clip(self.clips.path(), name, seconds, width, height)
    }

    /// The id of the profile titled exactly `title`.
    pub fn profile_id(&self, title: &str) -> String {
        let page = self.get(&format!(
            "/transform/profiles?q={}",
            title.replace(' ', "%20").replace('/', "%2F")
        ));
        let items = page["items"].as_array().expect("items");
        let found = items
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no profile titled {title:?}: {page}"));
        found["id"].as_str().expect("id").to_owned()
    }

    /// Create an ffmpeg profile; its id.
    pub fn create_profile(&self, title: &str, encoder_string: &str) -> String {
        let (status, profile) = self.call(
            "POST",
            "/transform/profiles",
            Some(&json!({
                "title": title,
                "description": "made by an end-to-end test",
                "encoder_name": "ffmpeg",
                "encoder_string": encoder_string,
            })),
        );
        assert_eq!(
            status,
            201,
            "create profile {title}: {profile}\n{}",
            self.logs()
        );
        profile["id"].as_str().expect("id").to_owned()
    }

    /// The realtime (1x) profile, created on first use.
    pub fn realtime_profile(&self) -> String {
        let title = "Realtime 240p";
        let page = self.get("/transform/profiles?q=Realtime");
        let found = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|p| p["title"] == title))
            .and_then(|p| p["id"].as_str());
        match found {
            Some(id) => id.to_owned(),
            None => self.create_profile(title, REALTIME_ENCODER),
        }
    }

    /// POST /transform/tasks with `extra` fields merged in; the status and the answer.
    pub fn try_launch(
        &self,
        media_in: &str,
        profile: &str,
        filename: &str,
        extra: Value,
    ) -> (u16, Value) {
        let mut body = json!({
            "media_in_id": media_in,
            "profile_id": profile,
            "filename": filename,
            "metadata": {"title": format!("{filename} from {media_in}")},
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.call("POST", "/transform/tasks", Some(&body))
    }

    /// Launch a task that must be accepted (201); the task.
    pub fn launch(&self, media_in: &str, profile: &str, filename: &str) -> Value {
        let (status, task) = self.try_launch(media_in, profile, filename, json!({}));
        assert_eq!(status, 201, "launch {filename}: {task}\n{}", self.logs());
        assert_eq!(task["media_in_id"], media_in, "{task}");
        task
    }

    pub fn task(&self, id: &str) -> Value {
        self.get(&format!("/transform/tasks/{id}"))
    }

    pub fn media(&self, id: &str) -> Value {
        self.get(&format!("/medias/{id}"))
    }

    /// `GET /medias?parent_id=<input>&status=READY` → total.
    pub fn ready_children(&self, media_in: &str) -> u64 {
        let page = self.get(&format!("/medias?parent_id={media_in}&status=READY"));
        page["total"].as_u64().expect("total")
    }

    /// Poll the task until `done` holds; panics on timeout, or as soon as the task is final
    /// without `done` holding, with the task and the logs.
    pub fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, task) = self.call("GET", &format!("/transform/tasks/{id}"), None);
            if status == 200 {
                if done(&task) {
                    return task;
                }
                let state = task["status"].as_str().unwrap_or_default();
                if FINAL.contains(&state) {
                    panic!(
                        "task {id} ended {state} after {:?} while waiting for {what}:\n{}\n{}",
                        start.elapsed(),
                        pretty(&task),
                        self.logs()
                    );
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "task {id}: no {what} within {timeout:?}; last answer ({status}):\n{}\n{}",
                    pretty(&task),
                    self.logs()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait until the task has `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(id, status, timeout, |t| t["status"] == status)
    }

    /// Poll `probe` until it gives a value; panics on timeout with `what`, the last thing it
    /// saw (through `last`) and the logs.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            let last = match probe() {
                Ok(value) => return value,
                Err(last) => last,
            };
            if start.elapsed() > timeout {
                panic!(
                    "no {what} within {timeout:?}; last seen:\n{last}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Download `/medias/{id}/download` into a file of the clips dir; its path.
    pub fn download(&self, id: &str, name: &str) -> PathBuf {
        let path = self.clips.path().join(name);
        let reply = self.api.download(&format!("/medias/{id}/download"), &path);
        assert!(
            reply.exit == 0,
            "download media {id} failed: curl exit {}, status {}\n{}",
            reply.exit,
            reply.status,
            self.logs()
        );
        path
    }
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The first video stream of a media's probe.
pub fn video_stream(media: &Value) -> &Value {
    media["probe"]["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .unwrap_or_else(|| panic!("no video stream in the probe: {}", pretty(media)))
}

/// Our own ffprobe of a file: its JSON (`format` and `streams`).
pub fn ffprobe(path: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// The height of the first video stream ffprobe finds in `path`.
pub fn probed_height(path: &Path) -> u64 {
    let probe = ffprobe(path);
    probe["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .and_then(|s| s["height"].as_u64())
        .unwrap_or_else(|| panic!("no video height in {}: {probe}", path.display()))
}

/// Command lines of running ffmpeg processes that mention `needle` (from /proc/*/cmdline).
pub fn ffmpeg_processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ffmpeg = args
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "ffmpeg"));
        if is_ffmpeg && args.iter().any(|a| a.contains(needle)) {
            found.push(format!(
                "pid {}: {}",
                name.to_string_lossy(),
                args.join(" ")
            ));
        }
    }
    found
}

/// `t["progress"]["percent"]` or 0.
pub fn percent(task: &Value) -> f64 {
    task["progress"]["percent"].as_f64().unwrap_or(0.0)
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {}", pretty(value)))
}

/// Publishing: `worker-publisher` units and the `/publisher` API.
impl Cluster {
    /// [`Cluster::start`], plus `publishers` publisher units `publisher-1`, `publisher-2`...
    /// (each with its own port and www root), then waits until the broker sees every one of
    /// them consuming the `publisher` queue.
    pub fn with_publishers(units: usize, publishers: usize, env: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::start(units, env);
        for n in 1..=publishers {
            cluster.add_publisher(&format!("publisher-{n}"), &[]);
        }
        cluster.wait_publisher_consumers();
        cluster
    }

    /// What every unit of this cluster is given: the (first) orchestra's URL, the node
    /// secret, the shared storage root and the vhost's AMQP URI.
    pub fn node_vars(&self) -> Vec<(&'static str, String)> {
        self.node_vars_on(&self.replica_url(0))
    }

    /// [`Cluster::node_vars`] with `api_url` as `OSCIED_API_URL` (one URL, or a list).
    pub fn node_vars_on(&self, api_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OSCIED_API_URL", api_url.to_owned()),
            ("OSCIED_NODE_SECRET", NODE_SECRET.to_owned()),
            ("OSCIED_STORAGE_ROOT", self.storage().display().to_string()),
            (
                "OSCIED_AMQP_URI",
                self.vhost.as_ref().expect("a cluster").uri(),
            ),
        ]
    }

    /// Start one more publisher unit on this cluster (queue `publisher`, heartbeat 1 s), with
    /// `extra` variables on top (`OSCIED_WWW_ROOT`, say); it is listening when this returns.
    pub fn add_publisher(&mut self, id: &str, extra: &[(&str, &str)]) {
        let url = self.replica_url(0);
        self.add_publisher_on(id, &url, extra);
    }

    /// [`Cluster::add_publisher`] with `api_url` as its `OSCIED_API_URL` (one URL, or a list).
    pub fn add_publisher_on(&mut self, id: &str, api_url: &str, extra: &[(&str, &str)]) {
        let vars = self.node_vars_on(api_url);
        let env = unit_env(&vars, PUBLISHER_DEFAULTS, extra);
        self.publishers.push(PublisherUnit::start(id, &env));
    }

    /// [`Cluster::add_publisher`] without `OSCIED_UNIT_ID`: the unit keeps its id in its
    /// state dir (`<www root>/.oscied`); returns that id.
    pub fn add_anonymous_publisher(&mut self, extra: &[(&str, &str)]) -> String {
        let vars = self.node_vars();
        let env = unit_env(&vars, PUBLISHER_DEFAULTS, extra);
        let unit = PublisherUnit::start_anonymous(&env);
        let id = unit.id().to_owned();
        self.publishers.push(unit);
        id
    }

    /// A call as root: the HTTP status and the JSON body.
    pub fn call_as_root(&self, method: &str, path: &str) -> (u16, Value) {
        self.root.call(method, path, None)
    }

    /// The publisher unit called `id`.
    pub fn publisher(&self, id: &str) -> &PublisherUnit {
        self.publishers
            .iter()
            .find(|u| u.id() == id)
            .unwrap_or_else(|| panic!("publisher {id:?} is not one of ours\n{}", self.logs()))
    }

    /// Consumers the broker counts on `queue` of this cluster's vhost; 0 while the broker
    /// cannot say (another test on this machine may have it stopped for a while).
    pub fn broker_consumers(&self, queue: &str) -> u64 {
        let vhost = self.vhost.as_ref().expect("a cluster").name().to_owned();
        let listing = oscied_e2e::rabbit::try_rabbitmqctl(&[
            "list_queues",
            "-q",
            "-p",
            &vhost,
            "name",
            "consumers",
        ]);
        listing
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Wait until every live publisher unit is online for the orchestra and consuming the
    /// `publisher` queue for the broker, so the next jobs may go to any of them.
    pub fn wait_publisher_consumers(&mut self) {
        let live: Vec<String> = self
            .publishers
            .iter_mut()
            .filter_map(|u| (!u.exited()).then(|| u.id().to_owned()))
            .collect();
        self.wait_until(
            &format!("publishers {live:?} consuming"),
            Duration::from_secs(60),
            || {
                let queues = self.get("/publisher/queues");
                let online: Vec<&str> = queues["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|q| q["name"] == "publisher"))
                    .and_then(|q| q["units"].as_array())
                    .map(|units| units.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !live.iter().all(|id| online.contains(&id.as_str())) {
                    return Err(pretty(&queues));
                }
                let consumers = self.broker_consumers("publisher");
                if consumers < live.len() as u64 {
                    return Err(format!(
                        "the broker counts {consumers} consumers of `publisher`; orchestra: {}",
                        pretty(&queues)
                    ));
                }
                Ok(())
            },
        );
    }

    /// POST /publisher/tasks with `extra` fields merged in; the status and the answer.
    pub fn try_publish(&self, media_id: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({ "media_id": media_id });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.call("POST", "/publisher/tasks", Some(&body))
    }

    /// Publish a media, which must be accepted (201); the task.
    pub fn publish(&self, media_id: &str) -> Value {
        let (status, task) = self.try_publish(media_id, json!({}));
        assert_eq!(
            status,
            201,
            "publish {media_id}: {}\n{}",
            pretty(&task),
            self.logs()
        );
        assert_eq!(task["media_id"], media_id, "{}", pretty(&task));
        task
    }

    pub fn publication(&self, id: &str) -> Value {
        self.get(&format!("/publisher/tasks/{id}"))
    }

    /// DELETE /publisher/tasks/{id}: the status and the answer.
    pub fn unpublish(&self, id: &str) -> (u16, Value) {
        self.call("DELETE", &format!("/publisher/tasks/{id}"), None)
    }

    /// Poll the publisher task until `done` holds; panics on timeout, or as soon as the task
    /// is final without `done` holding, with the task and the logs.
    pub fn wait_publication_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let path = format!("/publisher/tasks/{id}");
        self.wait_until(&format!("publisher task {id}: {what}"), timeout, || {
            let (status, task) = self.call("GET", &path, None);
            if status == 200 {
                if done(&task) {
                    return Ok(task);
                }
                let state = task["status"].as_str().unwrap_or_default();
                if FINAL.contains(&state) {
                    panic!(
                        "publisher task {id} ended {state} while waiting for {what}:\n{}\n{}",
                        pretty(&task),
                        self.logs()
                    );
                }
            }
            Err(format!("({status}) {}", pretty(&task)))
        })
    }

    /// Wait until the publisher task has `status`.
    pub fn wait_publication(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_publication_for(id, status, timeout, |t| t["status"] == status)
    }

    /// The file of a media under the shared storage root (`<storage>/<media.uri>`).
    pub fn stored_file(&self, media: &Value) -> PathBuf {
        self.storage().join(str_of(media, "uri"))
    }

    /// Put `source` under `<storage>/uploads/<name>` and register it (`POST /medias` JSON);
    /// the READY media.
    pub fn register_upload(&self, source: &Path, name: &str) -> Value {
        let uploads = self.storage().join("uploads");
        std::fs::create_dir_all(&uploads).expect("uploads dir");
        std::fs::copy(source, uploads.join(name))
            .unwrap_or_else(|e| panic!("copy {} into uploads: {e}", source.display()));
        let (status, media) = self.api.max_secs(TRANSFER_MAX_SECS).post(
            "/medias",
            &json!({"uri": format!("uploads/{name}"), "metadata": {"title": name}}),
        );
        assert_eq!(status, 201, "register {name}: {media}\n{}", self.logs());
        assert_eq!(media["status"], "READY", "{media}");
        media
    }

    /// A scratch dir of this test (removed with the cluster).
    pub fn scratch(&self) -> &Path {
        self.clips.path()
    }
}

/// Do two files hold the same bytes? Compared in 1 MiB chunks (big medias).
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let open =
        |p: &Path| std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (mut fa, mut fb) = (open(a), open(b));
    if fa.metadata().map(|m| m.len()).ok() != fb.metadata().map(|m| m.len()).ok() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).expect("read");
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The files (relative paths, sorted) below `dir`; empty when it does not exist.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(current) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.push(format!("{}/", path.strip_prefix(dir).unwrap().display()));
                dirs.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// What the cluster's publishers get besides [`Cluster::node_vars`].
const PUBLISHER_DEFAULTS: &[(&str, &str)] = &[
    ("OSCIED_QUEUES", "publisher"),
    ("OSCIED_HEARTBEAT_SECS", "1"),
];

/// A unit's environment: the cluster's `vars`, then a kind's `defaults`, then `extra`; a
/// later value of a name wins, as it does for the process.
fn unit_env<'a>(
    vars: &'a [(&'static str, String)],
    defaults: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(defaults);
    env.extend_from_slice(extra);
    env
}
