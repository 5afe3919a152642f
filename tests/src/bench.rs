//! What the benchmarks (`src/bin/bench_*.rs`, BENCHMARKS.md) share: a cluster of real
//! release binaries (NX-27017 or SQLite, a RabbitMQ vhost, one or several orchestra replicas,
//! `worker-transform` units logging JSON), the calls a user makes, the times the units log,
//! and the processes' CPU and memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::api::Api;
use crate::nx::NxServer;
use crate::orchestra::Orchestra;
use crate::rabbit::Vhost;
use crate::units::TransformUnit;

const USER_MAIL: &str = "bench@example.com";
const USER_SECRET: &str = "bench-secret";
const ROOT_SECRET: &str = "bench-root";
const NODE_SECRET: &str = "bench-node-secret";

/// The store the orchestras run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The MongoDB protocol, on NX-27017 (a Python server on the same cores).
    Nx,
    /// The embedded SQLite store: one data dir, so one replica.
    Sqlite,
}

impl Store {
    /// `BENCH_STORES`-style names (`nx,sqlite`) → the stores, in that order.
    pub fn parse_list(names: &str) -> Vec<Store> {
        [Store::Nx, Store::Sqlite]
            .into_iter()
            .filter(|s| names.contains(s.key()))
            .collect()
    }

    pub fn key(self) -> &'static str {
        match self {
            Store::Nx => "nx",
            Store::Sqlite => "sqlite",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Store::Nx => "MongoDB protocol on NX-27017",
            Store::Sqlite => "embedded SQLite",
        }
    }
}

/// A running benchmark cluster; everything stops on drop (units first).
pub struct BenchCluster {
    // Field order is drop order.
    units: Vec<TransformUnit>,
    orchestras: Vec<Orchestra>,
    vhost: Vhost,
    nx: Option<NxServer>,
    user: Api,
    root: Api,
    storage: PathBuf,
    work: PathBuf,
    _work_dir: TempDir,
}

impl BenchCluster {
    /// `replicas` orchestras in cluster mode (RabbitMQ) on `store`, sharing the secrets and
    /// the storage root, each with its own port and data dir, and `units` transform units
    /// (concurrency 1, the default `transform` queue) named `bench-unit-1`...; unit n lists
    /// every replica, replica (n - 1) first, so node calls are spread too. The user's calls
    /// go round-robin over the replicas. Returns once the units are online and the user
    /// exists.
    pub fn start(store: Store, replicas: usize, units: usize) -> BenchCluster {
        BenchCluster::start_with(store, replicas, units, &[])
    }

    /// [`BenchCluster::start`] with `extra` variables on top of the orchestras'.
    pub fn start_with(
        store: Store,
        replicas: usize,
        units: usize,
        extra: &[(&str, &str)],
    ) -> BenchCluster {
        assert!(
            replicas == 1 || store == Store::Nx,
            "SQLite has one data dir: one replica"
        );
        let work_dir = tempfile::tempdir().expect("temp dir");
        let work = work_dir.path().to_path_buf();
        let storage = work.join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let nx = (store == Store::Nx).then(NxServer::start);
        let vhost = Vhost::create();
        let amqp = vhost.uri();
        let storage_var = storage.to_str().expect("utf-8 path").to_owned();
        let common = [
            ("OSCIED_NODE_SECRET", NODE_SECRET),
            ("OSCIED_STORAGE_ROOT", storage_var.as_str()),
            ("OSCIED_AMQP_URI", amqp.as_str()),
        ];
        let mongo = nx.as_ref().map(NxServer::uri);
        let mut env: Vec<(&str, &str)> = common.to_vec();
        env.push(("OSCIED_ROOT_SECRET", ROOT_SECRET));
        if let Some(uri) = &mongo {
            env.push(("OSCIED_MONGODB_URI", uri));
        }
        env.extend_from_slice(extra);
        // Spawned together, as a deployment starts them; then each must become healthy.
        let mut orchestras: Vec<Orchestra> =
            (0..replicas).map(|_| Orchestra::spawn(&env)).collect();
        for orchestra in &mut orchestras {
            orchestra.wait_healthy();
        }
        let urls: Vec<String> = orchestras.iter().map(Orchestra::url).collect();
        let mut started = vec![];
        for n in 0..units {
            // Its own replica first, then the others: units fail over in list order.
            let list: Vec<&str> = (0..replicas)
                .map(|i| urls[(n + i) % replicas].as_str())
                .collect();
            let list = list.join(",");
            let mut env: Vec<(&str, &str)> = common.to_vec();
            env.extend([
                ("OSCIED_API_URL", list.as_str()),
                ("OSCIED_LOG_FORMAT", "json"),
                ("RUST_LOG", "info,worker_transform=debug"),
            ]);
            started.push(TransformUnit::start(&format!("bench-unit-{}", n + 1), &env));
        }
        let anonymous = Api::over(orchestras.iter().map(Orchestra::api).collect());
        let cluster = BenchCluster {
            units: started,
            orchestras,
            vhost,
            nx,
            user: anonymous.as_user(USER_MAIL, USER_SECRET),
            root: anonymous.as_user("root", ROOT_SECRET),
            storage,
            work,
            _work_dir: work_dir,
        };
        cluster.wait_units(units);
        cluster.create_user();
        cluster
    }

    /// The user's calls, round-robin over the replicas.
    pub fn user(&self) -> &Api {
        &self.user
    }

    pub fn root(&self) -> &Api {
        &self.root
    }

    pub fn orchestras(&self) -> &[Orchestra] {
        &self.orchestras
    }

    /// The RabbitMQ vhost every process of the cluster uses.
    pub fn vhost_name(&self) -> &str {
        self.vhost.name()
    }

    pub fn nx(&self) -> Option<&NxServer> {
        self.nx.as_ref()
    }

    /// The shared storage root.
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// A scratch dir for clips and raw outputs.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The processes whose CPU is reported: name, pid (orchestras, NX-27017, units).
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut processes: Vec<(String, u32)> = self
            .orchestras
            .iter()
            .enumerate()
            .map(|(n, o)| match self.orchestras.len() {
                1 => ("orchestra".to_owned(), o.pid()),
                _ => (format!("orchestra-{}", n + 1), o.pid()),
            })
            .collect();
        if let Some(nx) = &self.nx {
            processes.push(("NX-27017".to_owned(), nx.pid()));
        }
        processes.extend(self.units.iter().map(|u| (u.id().to_owned(), u.pid())));
        processes
    }

    fn wait_units(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, page) = self.root.get("/units");
            let online = page["items"]
                .as_array()
                .map(|units| units.iter().filter(|u| u["online"] == true).count())
                .unwrap_or(0);
            if status == 200 && online >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "units did not come online: {page}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn create_user(&self) {
        let body = json!({"first_name": "Bench", "last_name": "Mark", "mail": USER_MAIL, "secret": USER_SECRET});
        let (status, answer) = self.root.post("/users", &body);
        assert_eq!(status, 201, "{answer}");
    }

    /// Upload a file as the user; the media.
    pub fn upload(&self, path: &Path) -> Value {
        let (status, media) = self.user.upload(path, &[("title", "bench")]);
        assert_eq!(status, 201, "{media}");
        media
    }

    /// An ffmpeg profile; its id.
    pub fn profile(&self, title: &str, encoder_string: &str) -> String {
        let body =
            json!({"title": title, "encoder_name": "ffmpeg", "encoder_string": encoder_string});
        let (status, profile) = self.user.post("/transform/profiles", &body);
        assert_eq!(status, 201, "{profile}");
        profile["id"].as_str().expect("profile id").to_owned()
    }

    /// The body of a POST /transform/tasks (on the default queue unless `queue`).
    pub fn task_body(media: &str, profile: &str, filename: &str, queue: Option<&str>) -> Value {
        let mut body = json!({"media_in_id": media, "profile_id": profile, "filename": filename, "metadata": {"title": filename}});
        if let Some(queue) = queue {
            body["queue"] = json!(queue);
        }
        body
    }

    /// POST a task; when the request began (curl's connect, not its start-up) and the task.
    pub fn launch(&self, media: &str, profile: &str, filename: &str) -> (SystemTime, Value) {
        let body = Self::task_body(media, profile, filename, None).to_string();
        let args = ["-H", "Content-Type: application/json", "-d", body.as_str()];
        let before = SystemTime::now();
        let reply = self.user.send("/transform/tasks", &args);
        let task = reply.json();
        assert_eq!(reply.status, 201, "{task}");
        (before + reply.connect, task)
    }

    /// Poll (every 250 ms: the times come from the task and the logs, polling gently keeps
    /// the CPU for ffmpeg) until the task succeeded; the task.
    pub fn wait_done(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (_, task) = self.user.get(&format!("/transform/tasks/{id}"));
            match task["status"].as_str() {
                Some("SUCCESS") => return task,
                Some("FAILURE" | "REVOKED") => panic!("task ended {task}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "task {id} did not end: {task}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `n` tasks of `profile` on `media` run one after another: each one's seconds from the
    /// POST to ffmpeg spawned on a unit (from the unit's JSON log), sorted.
    pub fn dispatch_latencies(
        &self,
        media: &str,
        profile: &str,
        n: usize,
        prefix: &str,
    ) -> Vec<f64> {
        let mut posts = vec![];
        for i in 0..n {
            let (posted, task) = self.launch(media, profile, &format!("{prefix}{i}.mp4"));
            let id = task["id"].as_str().expect("id").to_owned();
            self.wait_done(&id);
            posts.push((id, posted));
        }
        let spawns = self.log_times("ffmpeg started");
        let mut latencies: Vec<f64> = posts
            .iter()
            .map(|(id, posted)| {
                let spawned = spawns
                    .iter()
                    .find(|(task, _)| task == id)
                    .unwrap_or_else(|| panic!("no ffmpeg spawn logged for task {id}"))
                    .1;
                spawned
                    .duration_since(*posted)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        latencies
    }

    /// `(task id, when)` of each unit log line with this message.
    pub fn log_times(&self, message: &str) -> Vec<(String, SystemTime)> {
        let mut found = vec![];
        for unit in &self.units {
            let text = std::fs::read_to_string(unit.workdir().join("unit.log")).unwrap_or_default();
            for line in text.lines() {
                let Ok(entry) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if entry["fields"]["message"] != message {
                    continue;
                }
                let (Some(task), Some(at)) = (
                    entry["fields"]["task"].as_str(),
                    entry["timestamp"].as_str(),
                ) else {
                    continue;
                };
                if let Ok(at) = DateTime::parse_from_rfc3339(at) {
                    found.push((task.to_owned(), SystemTime::from(at.with_timezone(&Utc))));
                }
            }
        }
        found
    }
}

/// User + system CPU seconds a process has used so far (0 when it is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name; USER_HZ is 100.
    (ticks(11) + ticks(12)) / 100.0
}

/// A process's resident memory in MB, now (`VmRSS`) and at its peak (`VmHWM`).
pub fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// `/proc/loadavg`'s three averages, as `uptime` shows them.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let averages: Vec<&str> = text.split_whitespace().take(3).collect();
    averages.join(" ")
}

/// The value below which a share `p` (0 to 1) of the sorted `values` lie (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)]
}

/// The median (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Seconds from `start` to an RFC 3339 time of the API (`finished_at`).
pub fn seconds_until(start: SystemTime, end: &Value) -> f64 {
    let end = end.as_str().expect("an RFC 3339 time");
    let end = SystemTime::from(
        DateTime::parse_from_rfc3339(end)
            .expect("RFC 3339")
            .with_timezone(&Utc),
    );
    end.duration_since(start)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How many cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `ffmpeg -version`'s first line.
pub fn ffmpeg_version() -> String {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
