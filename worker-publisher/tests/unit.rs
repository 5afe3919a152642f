//! The whole publisher unit (slots, claim, lease reports, URL check, completion, heartbeat,
//! its HTTP server) against a fake node API, the in-process broker and real files. The real
//! orchestra's end-to-end tests live in `tests/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use oscied_protocol::broker::{Broker, MemoryBroker};
use oscied_protocol::client::NodeClient;
use oscied_protocol::node::{CompleteRequest, UnitKind};
use oscied_protocol::queue::unit_queue;
use oscied_protocol::unit::testing::{Call, Fake, FakeNode};
use oscied_protocol::{PublishAction, PublishJob, TaskStatus};
use tokio::sync::oneshot;
use uuid::Uuid;
use worker_publisher::publish::STAGING_DIR;
use worker_publisher::{PublisherConfig, PublisherUnit};

const UNIT_ID: &str = "pub-1";

/// A server that answers nothing for 30 s: a public URL whose check is still running when
/// the test acts.
async fn slow_server() -> String {
    let app = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        StatusCode::OK
    });
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

struct Harness {
    /// The fake orchestra (it answers 404 to anything but the node API).
    node: FakeNode,
    broker: Arc<MemoryBroker>,
    dir: tempfile::TempDir,
    public_url: String,
    stop: Option<oneshot::Sender<()>>,
    unit: tokio::task::JoinHandle<Result<(), oscied_protocol::unit::UnitError>>,
}

impl Harness {
    async fn start(fake: Fake) -> Harness {
        Harness::start_with(fake, |_| None).await
    }

    /// `public_url` picks the unit's public URL from the fake orchestra's base URL.
    async fn start_with(fake: Fake, public_url: impl FnOnce(&str) -> Option<String>) -> Harness {
        Harness::start_full(fake, public_url, |_| {}).await
    }

    /// `prepare` sees the www root before the unit starts.
    async fn start_full(
        fake: Fake,
        public_url: impl FnOnce(&str) -> Option<String>,
        prepare: impl FnOnce(&Path),
    ) -> Harness {
        let node = FakeNode::start(fake).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("storage")).unwrap();
        prepare(&dir.path().join("www"));
        let broker = Arc::new(MemoryBroker::new());
        let client = node.client();
        let mut config = PublisherConfig::new(dir.path().join("storage"), dir.path().join("www"));
        config.unit_id = UNIT_ID.into();
        config.heartbeat_secs = 1;
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.public_url = public_url(node.url());
        let unit = PublisherUnit::bind(config, broker.clone(), client)
            .await
            .unwrap();
        let public_url = unit.public_url().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let unit = tokio::spawn(unit.run(async {
            let _ = stopped.await;
        }));
        Harness {
            node,
            broker,
            dir,
            public_url,
            stop: Some(stop),
            unit,
        }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// A media dir with its main file (`size` pseudo-random bytes) and a second file, and a
    /// publish job for it.
    fn media(&self, filename: &str, size: usize) -> (PublishJob, Vec<u8>) {
        let media_id = Uuid::new_v4();
        let dir = self.storage().join(format!("medias/{media_id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        std::fs::write(dir.join(filename), &bytes).unwrap();
        std::fs::write(dir.join("segment-1.ts"), b"segment").unwrap();
        let job = PublishJob {
            task_id: Uuid::new_v4(),
            attempt: 1,
            action: PublishAction::Publish,
            media_id,
            media_uri: format!("medias/{media_id}/{filename}"),
        };
        (job, bytes)
    }

    async fn send(&self, queue: &str, job: &PublishJob) {
        let payload = serde_json::to_vec(job).unwrap();
        self.broker.publish(queue, &payload, 0).await.unwrap();
    }

    fn published_dir(&self, job: &PublishJob) -> PathBuf {
        self.www().join(format!("medias/{}", job.media_id))
    }

    /// Wait (at most `secs`) until the fake saw what `done` looks for.
    async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&Fake) -> bool) {
        self.node.wait_for(secs, what, done).await;
    }

    fn completes(&self) -> Vec<Call<CompleteRequest>> {
        self.node.completes()
    }

    /// The `n`th completion: its task and what was asked.
    fn completion(&self, n: usize) -> (Uuid, CompleteRequest) {
        let call = self.completes()[n].clone();
        (call.task, call.body)
    }

    async fn queued(&self, queue: &str) -> u64 {
        self.broker.queue_stats(queue).await.unwrap().messages
    }

    async fn stop(mut self) -> Self {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.unit)
            .await
            .expect("the unit stops")
            .unwrap()
            .expect("the unit ends without failure");
        self
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test]
async fn publishes_and_serves_the_exact_bytes() {
    let h = Harness::start(Fake::default()).await;
    let (job, bytes) = h.media("my clip.mp4", 300_000);
    h.send("publisher", &job).await;
    h.wait_for(15, "the completion", |f| !f.completes.is_empty())
        .await;
    let (task, done) = h.completion(0);
    assert_eq!(task, job.task_id);
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.error);
    assert_eq!(done.unit_id, UNIT_ID);
    assert_eq!(done.attempt, 1);
    let uri = done.publish_uri.expect("a publish_uri");
    assert_eq!(
        uri,
        format!("{}/medias/{}/my%20clip.mp4", h.public_url, job.media_id)
    );
    let response = reqwest::get(&uri).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // The package's other files went along.
    assert!(h.published_dir(&job).join("segment-1.ts").is_file());
    assert!(is_empty_dir(&h.www().join(STAGING_DIR)));
    {
        let f = h.node.lock();
        assert_eq!(f.claims.len(), 1);
        assert_eq!(f.claims[0].task, job.task_id);
        assert_eq!(f.claims[0].unit_id, UNIT_ID);
        let beat = f.heartbeats.first().expect("a heartbeat");
        assert_eq!(beat.kind, UnitKind::Publisher);
        assert_eq!(beat.queues, vec!["publisher"]);
        assert_eq!(beat.ffmpeg_version, None);
    }
    assert_eq!(h.queued("publisher").await, 0, "acked");
    h.stop().await;
}

#[tokio::test]
async fn unpublishes_on_its_own_queue() {
    let h = Harness::start(Fake::default()).await;
    let (job, _) = h.media("clip.mp4", 10_000);
    // A publish job on the own queue is still a publish.
    h.send(&unit_queue(UNIT_ID), &job).await;
    h.wait_for(15, "the publication", |f| !f.completes.is_empty())
        .await;
    let uri = h.completes()[0].publish_uri.clone().expect("published");
    assert_eq!(
        reqwest::get(&uri).await.unwrap().status(),
        reqwest::StatusCode::OK
    );
    let unpublish = PublishJob {
        action: PublishAction::Unpublish,
        ..job.clone()
    };
    h.send(&unit_queue(UNIT_ID), &unpublish).await;
    h.wait_for(10, "the unpublication", |f| f.completes.len() == 2)
        .await;
    let (task, done) = h.completion(1);
    assert_eq!(task, job.task_id);
    assert_eq!(done.status, TaskStatus::Revoked);
    assert_eq!(done.attempt, job.attempt);
    assert_eq!(done.publish_uri, None);
    assert_eq!(
        reqwest::get(&uri).await.unwrap().status(),
        reqwest::StatusCode::NOT_FOUND
    );
    assert!(!h.published_dir(&job).exists());
    // Unpublishing what the unit does not have is done at once (idempotent), also when
    // the message came on a kind queue.
    let absent = PublishJob {
        task_id: Uuid::new_v4(),
        attempt: 2,
        action: PublishAction::Unpublish,
        media_id: Uuid::new_v4(),
        media_uri: "medias/x/y.mp4".into(),
    };
    h.send("publisher", &absent).await;
    h.wait_for(10, "the second unpublication", |f| f.completes.len() == 3)
        .await;
    let (task, done) = h.completion(2);
    assert_eq!(
        (task, done.status, done.attempt),
        (absent.task_id, TaskStatus::Revoked, 2)
    );
    // Unpublish jobs are not claimed.
    assert_eq!(h.node.lock().claims.len(), 1);
    assert_eq!(h.queued(&unit_queue(UNIT_ID)).await, 0, "acked");
    assert_eq!(h.queued("publisher").await, 0, "acked");
    h.stop().await;
}

#[tokio::test]
async fn stale_claims_are_dropped_without_publishing() {
    let h = Harness::start(Fake {
        claim_stale: true,
        ..Fake::default()
    })
    .await;
    let (job, _) = h.media("clip.mp4", 1000);
    h.send("publisher", &job).await;
    h.wait_for(10, "the claim", |f| !f.claims.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.queued("publisher").await, 0, "acked");
    assert!(h.completes().is_empty());
    assert!(!h.published_dir(&job).exists());
    // Undecodable messages are dropped too.
    h.broker.publish("publisher", b"not json", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.queued("publisher").await, 0);
    h.stop().await;
}

#[tokio::test]
async fn cancel_revokes_and_leaves_nothing_published() {
    // The check of the public URL hangs, so the publication is still running when the first
    // lease report (about a second after the claim) answers `cancel`.
    let slow = slow_server().await;
    let h = Harness::start_with(
        Fake {
            cancel_on_progress: true,
            ..Fake::default()
        },
        |_| Some(slow),
    )
    .await;
    let (job, _) = h.media("clip.mp4", 10_000);
    h.send("publisher", &job).await;
    h.wait_for(10, "the completion", |f| !f.completes.is_empty())
        .await;
    let (task, done) = h.completion(0);
    assert_eq!(task, job.task_id);
    assert_eq!(done.status, TaskStatus::Revoked);
    assert_eq!(done.publish_uri, None);
    assert!(!h.node.lock().progress.is_empty());
    assert!(!h.published_dir(&job).exists());
    assert!(is_empty_dir(&h.www().join(STAGING_DIR)));
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_public_url_fails_and_unpublishes() {
    // The fake orchestra answers 404 to /medias/...
    let h = Harness::start_with(Fake::default(), |api| Some(format!("{api}/"))).await;
    let (job, _) = h.media("clip.mp4", 10_000);
    h.send("publisher", &job).await;
    h.wait_for(20, "the completion", |f| !f.completes.is_empty())
        .await;
    let (_, done) = h.completion(0);
    assert_eq!(done.status, TaskStatus::Failure);
    assert_eq!(done.publish_uri, None);
    let error = done.error.unwrap_or_default();
    let url = format!("{}/medias/{}/clip.mp4", h.node.url(), job.media_id);
    assert!(error.contains(&url), "{error}");
    assert!(error.contains("404"), "{error}");
    assert!(error.contains("OSCIED_PUBLIC_URL"), "{error}");
    assert!(!h.published_dir(&job).exists());
    h.stop().await;
}

#[tokio::test]
async fn shutdown_stops_a_publication_without_completing() {
    let slow = slow_server().await;
    let h = Harness::start_with(Fake::default(), |_| Some(slow)).await;
    let (job, _) = h.media("clip.mp4", 10_000);
    h.send("publisher", &job).await;
    h.wait_for(10, "the claim", |f| !f.claims.is_empty()).await;
    // Published and being checked.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.published_dir(&job).exists() {
        assert!(Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h.node
            .lock()
            .heartbeats
            .iter()
            .all(|b| b.kind == UnitKind::Publisher)
    );
    let started = Instant::now();
    let dir = h.published_dir(&job);
    let h = h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(h.completes().is_empty());
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_taken_port_fails_at_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PublisherConfig::new(dir.path().to_path_buf(), dir.path().join("www"));
    config.listen = taken.local_addr().unwrap();
    let client = NodeClient::new("http://127.0.0.1:1", "s").unwrap();
    let Err(e) = PublisherUnit::bind(config, Arc::new(MemoryBroker::new()), client).await else {
        panic!("bound a taken port");
    };
    assert!(e.to_string().contains("cannot listen on"), "{e}");
}

#[tokio::test]
async fn a_starting_unit_removes_publications_it_does_not_hold() {
    let (kept, orphan) = (Uuid::new_v4(), Uuid::new_v4());
    let fake = Fake {
        held_medias: vec![kept],
        ..Fake::default()
    };
    let h = Harness::start_full(
        fake,
        |_| None,
        |www| {
            for media in [kept, orphan] {
                let dir = www.join(format!("medias/{media}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("a.mp4"), "movie").unwrap();
            }
        },
    )
    .await;
    let client = reqwest::Client::new();
    let url = |media: Uuid| format!("{}/medias/{media}/a.mp4", h.public_url);
    // The server starts once the web root is reconciled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(url(kept)).send().await.is_err() {
        assert!(Instant::now() < deadline, "the unit never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(client.get(url(kept)).send().await.unwrap()),
        StatusCode::OK
    );
    assert_eq!(
        status(client.get(url(orphan)).send().await.unwrap()),
        StatusCode::NOT_FOUND
    );
    assert!(!h.www().join(format!("medias/{orphan}")).exists());
}
