//! The store contract (docs/architecture.md §2): one suite, written once over `&dyn Store`, run against
//! the embedded SQLite store and against the MongoDB store on a real NX-27017 (§9).
//!
//! Every test gets fresh data: a new SQLite file, or a new NX-27017 server (with a fresh
//! database). Sort keys are distinct within a test, so orders are exact.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use orchestra::models::{
    ActiveTasks, Counted, Delivery, DeliveryAttempt, DeliveryFilter, DeliveryStatus, Hold,
    Idempotency, ListOptions, Media, MediaFilter, MediaStatus, Page, ProfileFilter, Progress,
    PublisherTask, Revised, TaskFilter, TaskGroup, TaskHeader, Token, TransformProfile,
    TransformTask, Unit, User, UserFilter, UserRecord, Webhook, WebhookFilter, WebhookRecord,
};
use orchestra::store::{Store, StoreError};
use oscied_protocol::node::UnitKind;
use oscied_protocol::probe::{Probe, ProbeFormat, ProbeStream};
use oscied_protocol::{EncoderName, ProgressReport, TaskStatus};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Generates, for each contract function, one test per store; for each race (a function of
/// store handles), two per store on a multi-threaded runtime: the racers on one handle, and
/// split over two handles opened on the same data (two replicas; two SQLite connections to
/// one file).
macro_rules! contract {
    (
        plain: [$($name:ident),* $(,)?],
        races: [$($race:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            use std::path::Path;
            use std::sync::Arc;

            use orchestra::store::{SqliteStore, Store};

            fn open(path: &Path) -> SqliteStore {
                SqliteStore::open(path).expect("open the SQLite store")
            }

            fn handles(path: &Path, n: usize) -> Vec<Arc<dyn Store>> {
                (0..n).map(|_| Arc::new(open(path)) as Arc<dyn Store>).collect()
            }

            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    super::$name(&open(&dir.path().join("oscied.db"))).await;
                }
            )*

            $(
                mod $race {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn one_handle() {
                        let dir = tempfile::tempdir().expect("temp dir");
                        super::super::$race(super::handles(&dir.path().join("oscied.db"), 1))
                            .await;
                    }

                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn two_handles() {
                        let dir = tempfile::tempdir().expect("temp dir");
                        super::super::$race(super::handles(&dir.path().join("oscied.db"), 2))
                            .await;
                    }
                }
            )*
        }

        mod mongo {
            use std::sync::Arc;

            use orchestra::store::{MongoStore, Store};
            use oscied_e2e::nx::NxServer;

            async fn connect(server: &NxServer) -> MongoStore {
                MongoStore::connect(&server.uri())
                    .await
                    .unwrap_or_else(|e| panic!("connect to NX-27017: {e}\n{}", server.log_tail()))
            }

            async fn handles(server: &NxServer, n: usize) -> Vec<Arc<dyn Store>> {
                let mut handles: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..n {
                    handles.push(Arc::new(connect(server).await));
                }
                handles
            }

            $(
                #[tokio::test]
                async fn $name() {
                    let server = NxServer::start();
                    super::$name(&connect(&server).await).await;
                }
            )*

            $(
                mod $race {
                    use oscied_e2e::nx::NxServer;

                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn one_handle() {
                        let server = NxServer::start();
                        super::super::$race(super::handles(&server, 1).await).await;
                    }

                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn two_handles() {
                        let server = NxServer::start();
                        super::super::$race(super::handles(&server, 2).await).await;
                    }
                }
            )*
        }
    };
}

contract!(
    plain: [
        ping_and_kind,
        user_crud,
        user_mail_is_unique_case_insensitively,
        user_list_q_paging_total,
        media_crud_with_probe,
        media_metadata_round_trips_exactly,
        media_list_filters,
        media_list_q_is_literal_and_case_insensitive,
        media_list_sort_and_paging,
        profile_crud_and_unique_title,
        profile_list_filters,
        token_create_get,
        token_revocation,
        task_crud_round_trips_every_field,
        task_update_missing_is_false,
        task_list_filters,
        task_list_dispatch_and_lease_filters,
        task_list_sort_and_paging,
        task_list_finished_after,
        publisher_task_crud_round_trips_every_field,
        publisher_task_update_missing_is_false,
        publisher_task_list_filters,
        publisher_task_list_dispatch_and_lease_filters,
        publisher_task_list_sort_and_paging,
        publisher_task_list_finished_after,
        counts_by_status,
        active_tasks_by_queue_status_and_unit,
        unit_put_get_list,
        root_secret_hash_is_kept_once,
        media_stale_copy_is_refused,
        task_stale_copy_is_refused,
        publisher_task_stale_copy_is_refused,
        task_hold_rides_with_the_revision,
        publisher_task_hold_rides_with_the_revision,
        task_totals_follow_every_change,
        publisher_task_totals_follow_every_change,
        task_scans_are_uncounted,
        task_list_totals_of_short_and_full_pages,
        leases_are_apart,
        idempotency_records_are_kept_and_changed_by_their_holder,
        webhooks_round_trip_and_filter,
        deliveries_round_trip_filter_and_expire,
    ],
    races: [
        media_races,
        task_races,
        publisher_task_races,
        lease_races,
        idempotency_races,
        delivery_claim_races,
    ],
);

// ---------------------------------------------------------------------------------------------
// Builders.

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("a valid date")
        + Duration::minutes(minutes)
        + Duration::microseconds(123_456)
}

fn opts(sort: &'static str, descending: bool, skip: u64, limit: u64) -> ListOptions {
    ListOptions {
        limit,
        skip,
        sort,
        descending,
        uncounted: false,
    }
}

fn user(first: &str, last: &str, mail: &str, minute: i64) -> UserRecord {
    let mut user = User {
        id: Uuid::new_v4(),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        mail: mail.to_owned(),
        admin_platform: false,
        name: String::new(),
        created_at: at(minute),
    };
    user.compute_name();
    UserRecord {
        user,
        secret_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt-{first}$hash-{last}"),
    }
}

fn media(user_id: Uuid, title: &str, status: MediaStatus, minute: i64) -> Media {
    let id = Uuid::new_v4();
    let mut metadata = Map::new();
    metadata.insert("title".to_owned(), json!(title));
    Media {
        id,
        user_id,
        parent_id: None,
        filename: "clip.mp4".to_owned(),
        uri: format!("medias/{id}/clip.mp4"),
        public_uris: Default::default(),
        metadata,
        status,
        size: 0,
        duration: None,
        probe: None,
        created_at: at(minute),
        updated_at: at(minute),
        revision: 0,
    }
}

fn profile(
    title: &str,
    encoder_name: EncoderName,
    user_id: Option<Uuid>,
    minute: i64,
) -> TransformProfile {
    TransformProfile {
        id: Uuid::new_v4(),
        user_id,
        builtin: user_id.is_none(),
        title: title.to_owned(),
        description: format!("{title} profile"),
        encoder_name,
        encoder_string: match encoder_name {
            EncoderName::Copy => String::new(),
            EncoderName::Ffmpeg => "-c:v libx264 -crf 23 -c:a aac -b:a 128k".to_owned(),
        },
        created_at: at(minute),
    }
}

/// The header of a fresh PENDING task of `user_id`, as the API creates it.
fn header(user_id: Uuid, queue: &str, minute: i64) -> TaskHeader {
    TaskHeader {
        id: Uuid::new_v4(),
        user_id,
        queue: queue.to_owned(),
        status: TaskStatus::Pending,
        attempt: 1,
        handed_back: 0,
        error: None,
        unit_id: None,
        created_at: at(minute),
        started_at: None,
        finished_at: None,
        dispatched_at: None,
        lease_expires_at: None,
        callback_url: None,
        callback_secret: None,
        revision: 0,
        hold: None,
    }
}

/// A fresh PENDING task of `user_id` on `media_in_id`, as the API creates it.
fn task(user_id: Uuid, media_in_id: Uuid, queue: &str, minute: i64) -> TransformTask {
    TransformTask {
        header: header(user_id, queue, minute),
        media_in_id,
        media_out_id: Uuid::new_v4(),
        profile_id: Uuid::new_v4(),
        priority: 0,
        progress: None,
    }
}

/// A fresh PENDING publication of `media_id` by `user_id`, as the API creates it.
fn publication(user_id: Uuid, media_id: Uuid, queue: &str, minute: i64) -> PublisherTask {
    PublisherTask {
        header: header(user_id, queue, minute),
        media_id,
        publish_uri: None,
    }
}

/// Where `unit_id` serves `media_id`'s file once published.
fn public_uri(unit_id: &str, media_id: Uuid) -> String {
    let host = unit_id.split('.').next().unwrap_or(unit_id);
    format!("http://{host}.example.org:5080/medias/{media_id}/clip%20final.mp4")
}

/// `task`, taken by `unit_id`: dispatched, started and leased.
fn running<T: StoredTask>(mut task: T, unit_id: &str, status: TaskStatus, lease: i64) -> T {
    let state = task.state();
    let minute = (state.created_at - at(0)).num_minutes();
    *state.status = status;
    *state.unit_id = Some(unit_id.to_owned());
    *state.dispatched_at = Some(at(minute) + Duration::milliseconds(40));
    *state.started_at = Some(at(minute + 1));
    *state.lease_expires_at = Some(at(lease));
    task
}

/// A fenced record (a media or a task of either kind) with its store calls: the fence's
/// contract is written once over it. Its futures are `Send`, so racers can be spawned.
trait Fenced: Revised + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    fn id(&self) -> Uuid;
    fn get(
        store: &dyn Store,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send;
    /// The fenced update: bumps this copy's revision when it wins.
    fn update(
        &mut self,
        store: &dyn Store,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every record of the kind, oldest first, with the total.
    fn list_all(store: &dyn Store) -> impl Future<Output = (u64, Vec<Self>)> + Send;
}

impl Fenced for Media {
    fn id(&self) -> Uuid {
        self.id
    }

    async fn get(store: &dyn Store, id: Uuid) -> Result<Option<Self>, StoreError> {
        store.get_media(id).await
    }

    async fn update(&mut self, store: &dyn Store) -> Result<bool, StoreError> {
        store.update_media(self).await
    }

    async fn list_all(store: &dyn Store) -> (u64, Vec<Self>) {
        let all = MediaFilter {
            statuses: all_statuses(),
            ..MediaFilter::default()
        };
        let page = store
            .list_medias(&all, &opts("created_at", false, 0, 100))
            .await
            .expect("list");
        (page.total, page.items)
    }
}

/// A task of either kind with its store calls: the contract parts transform and publisher
/// tasks share are written once over it.
trait StoredTask: Fenced + std::ops::DerefMut<Target = TaskHeader> {
    /// The kind's default queue and another, named one.
    const QUEUE: &'static str;
    const OTHER_QUEUE: &'static str;
    /// The host part of the kind's unit ids ([`unit_id`]).
    const HOST: &'static str;
    /// What `count_by_status` calls this kind.
    const COUNTED: Counted;
    /// A fresh PENDING task of `user_id` on `media_id`, as the API creates it.
    fn fresh(user_id: Uuid, media_id: Uuid, queue: &str, minute: i64) -> Self;
    fn state(&mut self) -> TaskState<'_>;
    async fn create(&self, store: &dyn Store) -> Result<(), StoreError>;
    fn list(
        store: &dyn Store,
        filter: &TaskFilter,
        opts: &ListOptions,
    ) -> impl Future<Output = Result<Page<Self>, StoreError>> + Send;
}

/// The lifecycle fields both kinds have, borrowed to change them.
struct TaskState<'a> {
    created_at: DateTime<Utc>,
    status: &'a mut TaskStatus,
    attempt: &'a mut u32,
    error: &'a mut Option<String>,
    unit_id: &'a mut Option<String>,
    started_at: &'a mut Option<DateTime<Utc>>,
    finished_at: &'a mut Option<DateTime<Utc>>,
    dispatched_at: &'a mut Option<DateTime<Utc>>,
    lease_expires_at: &'a mut Option<DateTime<Utc>>,
}

macro_rules! stored_task {
    (
        $ty:ty, $queues:expr, $host:literal, $counted:expr, $fresh:ident,
        $create:ident, $get:ident, $list:ident, $update:ident
    ) => {
        impl Fenced for $ty {
            fn id(&self) -> Uuid {
                self.id
            }

            async fn get(store: &dyn Store, id: Uuid) -> Result<Option<Self>, StoreError> {
                store.$get(id).await
            }

            async fn update(&mut self, store: &dyn Store) -> Result<bool, StoreError> {
                store.$update(self).await
            }

            async fn list_all(store: &dyn Store) -> (u64, Vec<Self>) {
                let all = opts("created_at", false, 0, 100);
                let page = store
                    .$list(&TaskFilter::default(), &all)
                    .await
                    .expect("list");
                (page.total, page.items)
            }
        }

        impl StoredTask for $ty {
            const QUEUE: &'static str = $queues.0;
            const OTHER_QUEUE: &'static str = $queues.1;
            const HOST: &'static str = $host;
            const COUNTED: Counted = $counted;

            fn fresh(user_id: Uuid, media_id: Uuid, queue: &str, minute: i64) -> Self {
                $fresh(user_id, media_id, queue, minute)
            }

            fn state(&mut self) -> TaskState<'_> {
                let h = &mut self.header;
                TaskState {
                    created_at: h.created_at,
                    status: &mut h.status,
                    attempt: &mut h.attempt,
                    error: &mut h.error,
                    unit_id: &mut h.unit_id,
                    started_at: &mut h.started_at,
                    finished_at: &mut h.finished_at,
                    dispatched_at: &mut h.dispatched_at,
                    lease_expires_at: &mut h.lease_expires_at,
                }
            }

            async fn create(&self, store: &dyn Store) -> Result<(), StoreError> {
                store.$create(self).await
            }

            async fn list(
                store: &dyn Store,
                filter: &TaskFilter,
                opts: &ListOptions,
            ) -> Result<Page<Self>, StoreError> {
                store.$list(filter, opts).await
            }
        }
    };
}

stored_task!(
    TransformTask,
    ("transform", "gpu"),
    "encoder",
    Counted::TransformTasks,
    task,
    create_transform_task,
    get_transform_task,
    list_transform_tasks,
    update_transform_task
);
stored_task!(
    PublisherTask,
    ("publisher", "cdn"),
    "publisher",
    Counted::PublisherTasks,
    publication,
    create_publisher_task,
    get_publisher_task,
    list_publisher_tasks,
    update_publisher_task
);

/// Unit `n` of the kind: `encoder-01.transform`, `publisher-01.publisher`.
fn unit_id<T: StoredTask>(n: u8) -> String {
    format!("{}-{n:02}.{}", T::HOST, T::QUEUE)
}

fn progress(percent: f64, minute: i64) -> Progress {
    Progress {
        report: ProgressReport {
            percent,
            frame: Some(1062),
            fps: Some(48.25),
            speed: Some(1.93),
            out_time: Some(42.48),
            elapsed: 22.0,
            eta: Some(29.5),
        },
        updated_at: at(minute),
    }
}

fn unit(id: &str, kind: UnitKind, minute: i64) -> Unit {
    Unit {
        id: id.to_owned(),
        kind,
        queues: match kind {
            UnitKind::Transform => vec!["transform".to_owned(), "gpu".to_owned()],
            UnitKind::Publisher => vec!["publisher".to_owned()],
        },
        hostname: id.split('.').next().unwrap_or(id).to_owned(),
        version: "4.0.0".to_owned(),
        ffmpeg_version: match kind {
            UnitKind::Transform => Some(
                "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers"
                    .to_owned(),
            ),
            UnitKind::Publisher => None,
        },
        concurrency: 2,
        running_tasks: vec![],
        heartbeat_secs: 10,
        last_heartbeat: at(minute),
        online: true,
        registered_at: at(minute),
    }
}

fn probe() -> Probe {
    Probe {
        format: ProbeFormat {
            name: "mov,mp4,m4a,3gp,3g2,mj2".to_owned(),
            long_name: Some("QuickTime / MOV".to_owned()),
            duration: Some(10.04),
            bit_rate: Some(1_234_567),
            size: Some(1_549_393),
        },
        streams: vec![
            ProbeStream {
                index: 0,
                codec_type: "video".to_owned(),
                codec_name: Some("h264".to_owned()),
                width: Some(1280),
                height: Some(720),
                frame_rate: Some(25.0),
                bit_rate: Some(1_100_000),
                channels: None,
                sample_rate: None,
                duration: Some(10.0),
            },
            ProbeStream {
                index: 1,
                codec_type: "audio".to_owned(),
                codec_name: Some("aac".to_owned()),
                width: None,
                height: None,
                frame_rate: None,
                bit_rate: Some(128_000),
                channels: Some(2),
                sample_rate: Some(48_000),
                duration: Some(10.026667),
            },
        ],
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    items.iter().map(id).collect()
}

fn media_ids(items: &[Media]) -> Vec<Uuid> {
    ids(items, |m| m.id)
}

fn task_ids<T: StoredTask>(page: &Page<T>) -> Vec<Uuid> {
    ids(&page.items, T::id)
}

/// The total and the ids of one page of tasks.
async fn task_page<T: StoredTask>(
    store: &dyn Store,
    filter: TaskFilter,
    o: ListOptions,
) -> (u64, Vec<Uuid>) {
    let page = T::list(store, &filter, &o).await.expect("list");
    (page.total, task_ids(&page))
}

/// The ids of all tasks matching `filter`, oldest first; the total must count them.
async fn listed<T: StoredTask>(store: &dyn Store, filter: TaskFilter) -> Vec<Uuid> {
    let (total, ids) =
        task_page::<T>(store, filter.clone(), opts("created_at", false, 0, 100)).await;
    assert_eq!(total, ids.len() as u64, "total of {filter:?}");
    ids
}

fn of_user(user_id: Uuid) -> TaskFilter {
    TaskFilter {
        user_id: Some(user_id),
        ..TaskFilter::default()
    }
}

fn on_media(media_id: Uuid) -> TaskFilter {
    TaskFilter {
        media_id: Some(media_id),
        ..TaskFilter::default()
    }
}

fn with(statuses: &[TaskStatus]) -> TaskFilter {
    TaskFilter {
        statuses: statuses.to_vec(),
        ..TaskFilter::default()
    }
}

fn in_queue(queue: &str) -> TaskFilter {
    TaskFilter {
        queue: Some(queue.to_owned()),
        ..TaskFilter::default()
    }
}

fn on_unit(unit_id: &str) -> TaskFilter {
    TaskFilter {
        unit_id: Some(unit_id.to_owned()),
        ..TaskFilter::default()
    }
}

fn expired_before(t: DateTime<Utc>) -> TaskFilter {
    TaskFilter {
        lease_expired_before: Some(t),
        ..TaskFilter::default()
    }
}

fn finished_after(t: DateTime<Utc>) -> TaskFilter {
    TaskFilter {
        finished_after: Some(t),
        ..TaskFilter::default()
    }
}

fn all_statuses() -> Vec<MediaStatus> {
    vec![
        MediaStatus::Pending,
        MediaStatus::Ready,
        MediaStatus::Deleted,
    ]
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Conflict(f)) => assert_eq!(f, field, "conflict on the wrong field"),
        other => panic!("expected Conflict({field:?}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The contract.

async fn ping_and_kind(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert!(
        matches!(store.kind(), "sqlite" | "mongodb"),
        "kind {}",
        store.kind()
    );
}

async fn user_crud(store: &dyn Store) {
    let mut alice = user("Alice", "Liddell", "Alice.Liddell@Example.org", 0);
    store.create_user(&alice).await.expect("create");

    assert_eq!(
        store.get_user(alice.user.id).await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_mail("alice.liddell@example.org")
            .await
            .expect("by mail"),
        Some(alice.clone()),
        "mail lookup ignores case"
    );
    assert_eq!(
        store
            .user_by_mail("ALICE.LIDDELL@EXAMPLE.ORG")
            .await
            .expect("by mail"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_mail("nobody@example.org")
            .await
            .expect("by mail"),
        None
    );
    assert_eq!(
        store.get_user(Uuid::new_v4()).await.expect("get missing"),
        None
    );

    // Whole-record update, mail included.
    alice.user.first_name = "Alicia".to_owned();
    alice.user.mail = "alicia@example.net".to_owned();
    alice.user.admin_platform = true;
    alice.user.compute_name();
    alice.secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$other$hash".to_owned();
    assert!(store.update_user(&alice).await.expect("update"));
    assert_eq!(
        store.get_user(alice.user.id).await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_mail("Alice.Liddell@Example.org")
            .await
            .expect("old mail"),
        None
    );
    assert_eq!(
        store
            .user_by_mail("ALICIA@example.net")
            .await
            .expect("new mail"),
        Some(alice.clone())
    );

    let ghost = user("Ghost", "User", "ghost@example.org", 1);
    assert!(!store.update_user(&ghost).await.expect("update missing"));
    assert_eq!(store.get_user(ghost.user.id).await.expect("get"), None);

    assert!(store.delete_user(alice.user.id).await.expect("delete"));
    assert_eq!(
        store.get_user(alice.user.id).await.expect("get deleted"),
        None
    );
    assert_eq!(
        store
            .user_by_mail("alicia@example.net")
            .await
            .expect("by mail"),
        None
    );
    assert!(
        !store
            .delete_user(alice.user.id)
            .await
            .expect("delete again")
    );
    assert!(
        !store
            .delete_user(Uuid::new_v4())
            .await
            .expect("delete missing")
    );

    // The mail is free again.
    let again = user("Alicia", "Again", "Alicia@example.net", 2);
    store
        .create_user(&again)
        .await
        .expect("reuse a deleted user's mail");
}

async fn user_mail_is_unique_case_insensitively(store: &dyn Store) {
    let bob = user("Bob", "Morane", "bob@example.org", 0);
    store.create_user(&bob).await.expect("create");
    for mail in ["bob@example.org", "BOB@example.org", "Bob@Example.Org"] {
        let twin = user("Twin", "Bob", mail, 1);
        assert_conflict(store.create_user(&twin).await, "mail");
        assert_eq!(store.get_user(twin.user.id).await.expect("get"), None);
    }

    // An update onto a taken mail is refused too, and changes nothing.
    let mut carol = user("Carol", "Danvers", "carol@example.org", 2);
    store.create_user(&carol).await.expect("create");
    let before = carol.clone();
    carol.user.mail = "BOB@EXAMPLE.ORG".to_owned();
    assert_conflict(store.update_user(&carol).await, "mail");
    assert_eq!(
        store.get_user(carol.user.id).await.expect("get"),
        Some(before)
    );

    // Changing only the case of one's own mail is no conflict.
    carol.user.mail = "Carol@Example.org".to_owned();
    assert!(
        store
            .update_user(&carol)
            .await
            .expect("update own mail case")
    );
    assert_eq!(
        store.get_user(carol.user.id).await.expect("get"),
        Some(carol)
    );
}

async fn user_list_q_paging_total(store: &dyn Store) {
    let users = [
        user("Ada", "Lovelace", "ada@analytical.org", 0),
        user("Grace", "Hopper", "grace@navy.mil", 1),
        user("Alan", "Turing", "alan@bletchley.uk", 2),
        user("Edsger", "Dijkstra", "ewd@tue.nl", 3),
        user("Barbara", "Liskov", "liskov@mit.edu", 4),
    ];
    for u in &users {
        store.create_user(u).await.expect("create");
    }
    let user_ids = |page: &[User]| ids(page, |u| u.id);
    let id = |i: usize| users[i].user.id;
    let all = UserFilter::default();

    let page = store
        .list_users(&all, &opts("created_at", false, 0, 100))
        .await
        .expect("list");
    assert_eq!(page.total, 5);
    assert_eq!(
        user_ids(&page.items),
        vec![id(0), id(1), id(2), id(3), id(4)]
    );
    assert_eq!(
        page.items[1], users[1].user,
        "listed users are the API view"
    );

    let page = store
        .list_users(&all, &opts("created_at", true, 1, 2))
        .await
        .expect("list");
    assert_eq!(page.total, 5, "the total ignores paging");
    assert_eq!(user_ids(&page.items), vec![id(3), id(2)]);

    let page = store
        .list_users(&all, &opts("mail", false, 0, 3))
        .await
        .expect("list");
    assert_eq!(page.total, 5);
    assert_eq!(user_ids(&page.items), vec![id(0), id(2), id(3)]);

    let page = store
        .list_users(&all, &opts("created_at", false, 10, 3))
        .await
        .expect("list");
    assert_eq!(page.total, 5);
    assert!(
        page.items.is_empty(),
        "skipping past the end gives an empty page"
    );

    // q: a case-insensitive substring of the mail or of the name.
    let q = |q: &str| UserFilter {
        q: Some(q.to_owned()),
        id: None,
    };
    let page = store
        .list_users(&q("NAVY"), &opts("created_at", false, 0, 100))
        .await
        .expect("q");
    assert_eq!((page.total, user_ids(&page.items)), (1, vec![id(1)]));
    let page = store
        .list_users(&q("ace HOP"), &opts("created_at", false, 0, 100))
        .await
        .expect("q");
    assert_eq!(
        (page.total, user_ids(&page.items)),
        (1, vec![id(1)]),
        "q matches the name"
    );
    let page = store
        .list_users(&q("a"), &opts("created_at", false, 0, 2))
        .await
        .expect("q");
    // "a" is in every name.
    assert_eq!(page.total, 5);
    assert_eq!(user_ids(&page.items), vec![id(0), id(1)]);
    let page = store
        .list_users(&q("."), &opts("created_at", false, 0, 100))
        .await
        .expect("q");
    assert_eq!(page.total, 5, "every mail has a literal dot");
    let page = store
        .list_users(&q("l.v"), &opts("created_at", false, 0, 100))
        .await
        .expect("q");
    assert_eq!(page.total, 0, "q is literal, not a pattern (Lovelace)");
    let page = store
        .list_users(&q("zzz"), &opts("created_at", false, 0, 100))
        .await
        .expect("q");
    assert_eq!((page.total, page.items.len()), (0, 0));

    // id: one user only.
    let only = UserFilter {
        q: None,
        id: Some(id(3)),
    };
    let page = store
        .list_users(&only, &opts("created_at", false, 0, 100))
        .await
        .expect("id");
    assert_eq!((page.total, user_ids(&page.items)), (1, vec![id(3)]));
}

async fn media_crud_with_probe(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let mut m = media(owner, "Big Buck Bunny", MediaStatus::Pending, 0);
    m.parent_id = Some(Uuid::new_v4());
    store.create_media(&m).await.expect("create");
    assert_eq!(store.get_media(m.id).await.expect("get"), Some(m.clone()));
    assert_eq!(
        store.get_media(Uuid::new_v4()).await.expect("get missing"),
        None
    );

    m.status = MediaStatus::Ready;
    m.size = 5_000_000_000;
    m.duration = Some(10.04);
    m.probe = Some(probe());
    m.public_uris.insert(
        Uuid::new_v4().to_string(),
        "http://127.0.0.1:5080/medias/x/clip.mp4".to_owned(),
    );
    m.metadata
        .insert("description".to_owned(), json!("A rabbit"));
    m.updated_at = at(5);
    assert!(store.update_media(&mut m).await.expect("update"));
    let back = store.get_media(m.id).await.expect("get").expect("present");
    assert_eq!(back, m);
    assert_eq!(back.probe, Some(probe()), "the probe round-trips");

    let mut ghost = media(owner, "Ghost", MediaStatus::Ready, 1);
    assert!(
        !store
            .update_media(&mut ghost)
            .await
            .expect("update missing")
    );
    assert_eq!(store.get_media(ghost.id).await.expect("get"), None);
}

async fn media_metadata_round_trips_exactly(store: &dyn Store) {
    let metadata = json!({
        "title": "Métadonnées « exactes » 🎬",
        "empty_string": "",
        "int": 42,
        "negative": -7,
        "big": 9_007_199_254_740_993i64,
        "float": 2.5,
        "whole_float": 1.0,
        "tiny": 1.5e-9,
        "yes": true,
        "no": false,
        "nothing": null,
        "list": [1, "two", 3.25, null, [], {}, {"deep": [true]}],
        "empty_object": {},
        "nested": {"a": {"b": {"c": {"d": "deep", "n": [0, -1]}}}},
        "with.dot": "kept",
        "quotes": "it's \"quoted\" \\ backslash\nnewline\ttab",
    });
    let Value::Object(metadata) = metadata else {
        unreachable!()
    };
    let mut m = media(Uuid::new_v4(), "", MediaStatus::Ready, 0);
    m.metadata = metadata.clone();
    store.create_media(&m).await.expect("create");
    let back = store.get_media(m.id).await.expect("get").expect("present");
    assert_eq!(
        Value::Object(back.metadata.clone()),
        Value::Object(metadata)
    );
    assert_eq!(
        serde_json::to_string(&back.metadata).expect("json"),
        serde_json::to_string(&m.metadata).expect("json"),
        "numbers keep their JSON types (1.0 stays a float)"
    );
    assert_eq!(back, m);
}

async fn media_list_filters(store: &dyn Store) {
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let a = media(u1, "Alpha", MediaStatus::Ready, 0);
    let b = media(u1, "Bravo", MediaStatus::Pending, 1);
    let mut c = media(u1, "Charlie", MediaStatus::Deleted, 2);
    c.parent_id = Some(a.id);
    let mut d = media(u2, "Delta", MediaStatus::Ready, 3);
    d.parent_id = Some(a.id);
    let mut e = media(u2, "Echo", MediaStatus::Pending, 4);
    e.parent_id = Some(b.id);
    for m in [&a, &b, &c, &d, &e] {
        store.create_media(m).await.expect("create");
    }
    let list = |filter: MediaFilter| async move {
        let page = store
            .list_medias(&filter, &opts("created_at", false, 0, 100))
            .await
            .expect("list");
        assert_eq!(page.total, page.items.len() as u64);
        media_ids(&page.items)
    };

    assert_eq!(
        list(MediaFilter::default()).await,
        vec![a.id, b.id, d.id, e.id],
        "deleted medias are hidden by default"
    );
    let with = |statuses: Vec<MediaStatus>| MediaFilter {
        statuses,
        ..MediaFilter::default()
    };
    assert_eq!(
        list(with(all_statuses())).await,
        vec![a.id, b.id, c.id, d.id, e.id]
    );
    assert_eq!(list(with(vec![MediaStatus::Ready])).await, vec![a.id, d.id]);
    assert_eq!(list(with(vec![MediaStatus::Deleted])).await, vec![c.id]);
    assert_eq!(
        list(with(vec![])).await,
        Vec::<Uuid>::new(),
        "no statuses: nothing matches"
    );
    assert_eq!(
        list(with(vec![MediaStatus::Deleted, MediaStatus::Pending])).await,
        vec![b.id, c.id, e.id]
    );

    let of_user = |user_id: Uuid| MediaFilter {
        user_id: Some(user_id),
        statuses: all_statuses(),
        ..MediaFilter::default()
    };
    assert_eq!(list(of_user(u1)).await, vec![a.id, b.id, c.id]);
    assert_eq!(list(of_user(u2)).await, vec![d.id, e.id]);
    assert_eq!(list(of_user(Uuid::new_v4())).await, Vec::<Uuid>::new());

    let children_of = |parent: Uuid| MediaFilter {
        parent_id: Some(parent),
        statuses: all_statuses(),
        ..MediaFilter::default()
    };
    assert_eq!(list(children_of(a.id)).await, vec![c.id, d.id]);
    assert_eq!(list(children_of(b.id)).await, vec![e.id]);
    assert_eq!(list(children_of(e.id)).await, Vec::<Uuid>::new());

    // All filters at once.
    let all = MediaFilter {
        user_id: Some(u2),
        parent_id: Some(a.id),
        statuses: vec![MediaStatus::Ready],
        q: Some("ELT".to_owned()),
    };
    assert_eq!(list(all.clone()).await, vec![d.id]);
    assert_eq!(
        list(MediaFilter {
            statuses: vec![MediaStatus::Pending],
            ..all
        })
        .await,
        Vec::<Uuid>::new()
    );
}

async fn media_list_q_is_literal_and_case_insensitive(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let titles = [
        "Big Buck Bunny",
        "big buck bunny (1080p)",
        "Sintel [trailer]",
        "a.b",
        "axb",
        "Cost: $5 ^_^ *star* +plus+ {x} | pipe \\ back? yes",
        "Ünïcödé 日本語",
    ];
    let medias: Vec<Media> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| media(owner, title, MediaStatus::Ready, i as i64))
        .collect();
    for m in &medias {
        store.create_media(m).await.expect("create");
    }
    let id = |i: usize| medias[i].id;
    let search = |q: &str| {
        let filter = MediaFilter {
            q: Some(q.to_owned()),
            ..MediaFilter::default()
        };
        async move {
            let page = store
                .list_medias(&filter, &opts("created_at", false, 0, 100))
                .await
                .expect("list");
            assert_eq!(page.total, page.items.len() as u64);
            media_ids(&page.items)
        }
    };

    assert_eq!(search("BUNNY").await, vec![id(0), id(1)]);
    assert_eq!(search("buck b").await, vec![id(0), id(1)]);
    assert_eq!(search("(1080P)").await, vec![id(1)]);
    assert_eq!(search("[TRAILER]").await, vec![id(2)]);
    assert_eq!(search("a.b").await, vec![id(3)], "a dot is a dot");
    assert_eq!(search(".").await, vec![id(3)]);
    assert_eq!(search(".*").await, Vec::<Uuid>::new());
    assert_eq!(search("^big").await, Vec::<Uuid>::new());
    assert_eq!(search("bunny$").await, Vec::<Uuid>::new());
    assert_eq!(search("$5 ^_^").await, vec![id(5)]);
    assert_eq!(search("*STAR*").await, vec![id(5)]);
    assert_eq!(search("+plus+ {x} | pipe").await, vec![id(5)]);
    assert_eq!(search("\\ back?").await, vec![id(5)]);
    assert_eq!(search("日本").await, vec![id(6)]);
    assert_eq!(search("cödé").await, vec![id(6)]);
    assert_eq!(
        search("ÜNÏCÖDÉ").await,
        vec![id(6)],
        "case folds beyond ASCII"
    );
    assert_eq!(search("nothing like it").await, Vec::<Uuid>::new());
    assert_eq!(
        search("").await.len(),
        titles.len(),
        "an empty q filters nothing"
    );
}

async fn media_list_sort_and_paging(store: &dyn Store) {
    let owner = Uuid::new_v4();
    // created_at order: 0..4; title order: Apple(3), Banana(1), Cherry(4), Date(0), Elder(2).
    let titles = ["Date", "Banana", "Elder", "Apple", "Cherry"];
    let medias: Vec<Media> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| media(owner, title, MediaStatus::Ready, i as i64 * 90))
        .collect();
    for m in &medias {
        store.create_media(m).await.expect("create");
    }
    let id = |i: usize| medias[i].id;
    let all = MediaFilter::default();
    let list = |o: ListOptions| {
        let all = all.clone();
        async move {
            let page = store.list_medias(&all, &o).await.expect("list");
            (page.total, media_ids(&page.items))
        }
    };

    assert_eq!(
        list(opts("created_at", false, 0, 10)).await,
        (5, vec![id(0), id(1), id(2), id(3), id(4)])
    );
    assert_eq!(
        list(opts("created_at", true, 0, 10)).await,
        (5, vec![id(4), id(3), id(2), id(1), id(0)])
    );
    assert_eq!(
        list(opts("metadata.title", false, 0, 10)).await,
        (5, vec![id(3), id(1), id(4), id(0), id(2)])
    );
    assert_eq!(
        list(opts("metadata.title", true, 0, 10)).await,
        (5, vec![id(2), id(0), id(4), id(1), id(3)])
    );

    // Paging: the total counts all pages; pages tile the whole list.
    assert_eq!(
        list(opts("created_at", false, 0, 2)).await,
        (5, vec![id(0), id(1)])
    );
    assert_eq!(
        list(opts("created_at", false, 2, 2)).await,
        (5, vec![id(2), id(3)])
    );
    assert_eq!(
        list(opts("created_at", false, 4, 2)).await,
        (5, vec![id(4)])
    );
    assert_eq!(list(opts("created_at", false, 5, 2)).await, (5, vec![]));
    assert_eq!(
        list(opts("metadata.title", true, 1, 3)).await,
        (5, vec![id(0), id(4), id(1)])
    );
    assert_eq!(
        list(opts("created_at", true, 3, 100)).await,
        (5, vec![id(1), id(0)])
    );
    assert_eq!(
        list(opts("created_at", false, 0, 0)).await,
        (5, vec![]),
        "a zero limit is an empty page, not \"no limit\""
    );
}

async fn profile_crud_and_unique_title(store: &dyn Store) {
    let mut p = profile("H.264 720p", EncoderName::Ffmpeg, None, 0);
    store.create_profile(&p).await.expect("create");
    assert_eq!(store.get_profile(p.id).await.expect("get"), Some(p.clone()));
    assert_eq!(
        store
            .get_profile(Uuid::new_v4())
            .await
            .expect("get missing"),
        None
    );

    let twin = profile("H.264 720p", EncoderName::Copy, Some(Uuid::new_v4()), 1);
    assert_conflict(store.create_profile(&twin).await, "title");
    assert_eq!(store.get_profile(twin.id).await.expect("get"), None);

    let mut other = profile("Copy", EncoderName::Copy, Some(Uuid::new_v4()), 2);
    store.create_profile(&other).await.expect("create");

    p.title = "H.264 720p (fast)".to_owned();
    p.description = "faster".to_owned();
    p.encoder_string = "-c:v libx264 -preset veryfast".to_owned();
    assert!(store.update_profile(&p).await.expect("update"));
    assert_eq!(store.get_profile(p.id).await.expect("get"), Some(p.clone()));

    let before = other.clone();
    other.title = p.title.clone();
    assert_conflict(store.update_profile(&other).await, "title");
    assert_eq!(
        store.get_profile(other.id).await.expect("get"),
        Some(before)
    );

    // The old title is free again.
    let reuse = profile("H.264 720p", EncoderName::Ffmpeg, None, 3);
    store
        .create_profile(&reuse)
        .await
        .expect("reuse a freed title");

    // Root's profiles have no owner either, and are not built-ins: the flag round-trips.
    let mut by_root = profile("Root's", EncoderName::Copy, None, 5);
    by_root.builtin = false;
    store.create_profile(&by_root).await.expect("create");
    let got = store.get_profile(by_root.id).await.expect("get");
    assert_eq!(got.as_ref().map(|p| p.builtin), Some(false));
    assert_eq!(got, Some(by_root.clone()));
    assert_eq!(
        store
            .get_profile(reuse.id)
            .await
            .expect("get")
            .map(|p| p.builtin),
        Some(true)
    );
    let listed = store
        .list_profiles(&ProfileFilter::default(), &opts("title", false, 0, 100))
        .await
        .expect("list");
    let flags: Vec<_> = listed
        .items
        .iter()
        .map(|p| (p.title.as_str(), p.builtin))
        .collect();
    assert_eq!(
        flags,
        [
            ("Copy", false),
            ("H.264 720p", true),
            ("H.264 720p (fast)", true),
            ("Root's", false)
        ]
    );

    let ghost = profile("Ghost", EncoderName::Copy, None, 4);
    assert!(!store.update_profile(&ghost).await.expect("update missing"));
    assert!(store.delete_profile(p.id).await.expect("delete"));
    assert_eq!(store.get_profile(p.id).await.expect("get deleted"), None);
    assert!(!store.delete_profile(p.id).await.expect("delete again"));
    assert!(
        !store
            .delete_profile(Uuid::new_v4())
            .await
            .expect("delete missing")
    );
}

async fn profile_list_filters(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let profiles = [
        profile("Copy", EncoderName::Copy, None, 0),
        profile("H.264 480p", EncoderName::Ffmpeg, None, 1),
        profile("H.264 720p", EncoderName::Ffmpeg, Some(owner), 2),
        profile("HLS (H.264)", EncoderName::Ffmpeg, None, 3),
        profile("My copy", EncoderName::Copy, Some(owner), 4),
    ];
    for p in &profiles {
        store.create_profile(p).await.expect("create");
    }
    let id = |i: usize| profiles[i].id;
    let list = |filter: ProfileFilter, o: ListOptions| async move {
        let page = store.list_profiles(&filter, &o).await.expect("list");
        (page.total, ids(&page.items, |p| p.id))
    };
    let by_title = opts("title", false, 0, 100);

    assert_eq!(
        list(ProfileFilter::default(), by_title.clone()).await,
        (5, vec![id(0), id(1), id(2), id(3), id(4)])
    );
    assert_eq!(
        list(ProfileFilter::default(), opts("title", true, 1, 2)).await,
        (5, vec![id(3), id(2)])
    );
    let encoder = |e: EncoderName| ProfileFilter {
        encoder_name: Some(e),
        ..ProfileFilter::default()
    };
    assert_eq!(
        list(encoder(EncoderName::Copy), by_title.clone()).await,
        (2, vec![id(0), id(4)])
    );
    assert_eq!(
        list(encoder(EncoderName::Ffmpeg), opts("created_at", true, 0, 2)).await,
        (3, vec![id(3), id(2)])
    );
    let q = |q: &str| ProfileFilter {
        q: Some(q.to_owned()),
        ..ProfileFilter::default()
    };
    assert_eq!(
        list(q("COPY"), by_title.clone()).await,
        (2, vec![id(0), id(4)])
    );
    assert_eq!(
        list(q("h.264"), by_title.clone()).await,
        (3, vec![id(1), id(2), id(3)])
    );
    assert_eq!(list(q("(h.264)"), by_title.clone()).await, (1, vec![id(3)]));
    assert_eq!(list(q("H.2.4"), by_title.clone()).await, (0, vec![]));
    let mine = ProfileFilter {
        user_id: Some(owner),
        ..ProfileFilter::default()
    };
    assert_eq!(list(mine, by_title.clone()).await, (2, vec![id(2), id(4)]));
    let mine_copy = ProfileFilter {
        user_id: Some(owner),
        encoder_name: Some(EncoderName::Copy),
        q: Some("my".to_owned()),
    };
    assert_eq!(list(mine_copy, by_title).await, (1, vec![id(4)]));
}

async fn token_create_get(store: &dyn Store) {
    let token = Token {
        hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
        user_id: Uuid::new_v4(),
        expires_at: at(60),
        secret_stamp: "stamp-1".to_owned(),
    };
    store.create_token(&token).await.expect("create");
    assert_eq!(
        store.get_token(&token.hash).await.expect("get"),
        Some(token.clone())
    );
    assert_eq!(store.get_token("0000").await.expect("get missing"), None);
    let other = Token {
        hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
        user_id: token.user_id,
        expires_at: at(120),
        secret_stamp: "stamp-2".to_owned(),
    };
    store
        .create_token(&other)
        .await
        .expect("a second token of the same user");
    assert_eq!(
        store.get_token(&other.hash).await.expect("get"),
        Some(other)
    );
    assert_eq!(
        store.get_token(&token.hash).await.expect("get"),
        Some(token)
    );
}

async fn token_revocation(store: &dyn Store) {
    let ada = Uuid::new_v4();
    let bob = Uuid::new_v4();
    let token = |n: u32, user_id: Uuid| Token {
        hash: format!("{n:064x}"),
        user_id,
        expires_at: at(60),
        secret_stamp: format!("stamp-{user_id}"),
    };
    let tokens = [token(1, ada), token(2, ada), token(3, ada), token(4, bob)];
    for t in &tokens {
        store.create_token(t).await.expect("create");
    }
    // One token.
    assert!(store.delete_token(&tokens[0].hash).await.expect("delete"));
    assert_eq!(store.get_token(&tokens[0].hash).await.expect("get"), None);
    assert!(!store.delete_token(&tokens[0].hash).await.expect("again"));
    assert!(!store.delete_token("ffff").await.expect("missing"));
    assert_eq!(
        store.get_token(&tokens[1].hash).await.expect("get"),
        Some(tokens[1].clone())
    );
    // All of one user's, and no one else's.
    assert_eq!(store.delete_user_tokens(ada).await.expect("delete all"), 2);
    for t in &tokens[..3] {
        assert_eq!(store.get_token(&t.hash).await.expect("get"), None);
    }
    assert_eq!(
        store.get_token(&tokens[3].hash).await.expect("get"),
        Some(tokens[3].clone())
    );
    assert_eq!(store.delete_user_tokens(ada).await.expect("again"), 0);

    // Expired ones are forgotten, to the microsecond; later ones stay.
    let mut soon = token(5, ada);
    soon.expires_at = at(10) + Duration::microseconds(1);
    let mut later = token(6, bob);
    later.expires_at = at(20);
    let mut gone = token(7, bob);
    gone.expires_at = at(9);
    for t in [&soon, &later, &gone] {
        store.create_token(t).await.expect("create");
    }
    assert_eq!(
        store.delete_expired_tokens(at(10)).await.expect("expired"),
        1
    );
    assert_eq!(store.get_token(&gone.hash).await.expect("get"), None);
    assert!(store.get_token(&soon.hash).await.expect("get").is_some());
    assert_eq!(
        store.delete_expired_tokens(at(15)).await.expect("expired"),
        1
    );
    assert_eq!(store.get_token(&soon.hash).await.expect("get"), None);
    assert!(store.get_token(&later.hash).await.expect("get").is_some());
    assert_eq!(
        store
            .delete_user_tokens(Uuid::new_v4())
            .await
            .expect("nobody's"),
        0
    );
}

async fn task_crud_round_trips_every_field(store: &dyn Store) {
    // As created: every option null.
    let mut t = task(Uuid::new_v4(), Uuid::new_v4(), "transform", 0);
    store.create_transform_task(&t).await.expect("create");
    assert_eq!(
        store.get_transform_task(t.id).await.expect("get"),
        Some(t.clone())
    );
    assert_eq!(
        store
            .get_transform_task(Uuid::new_v4())
            .await
            .expect("get missing"),
        None
    );
    let mut twin = t.clone();
    twin.queue = "gpu".to_owned();
    assert_conflict(store.create_transform_task(&twin).await, "id");
    assert_eq!(
        store.get_transform_task(t.id).await.expect("get"),
        Some(t.clone()),
        "a refused create changes nothing"
    );

    // Running, second attempt, with a progress report (some fields not reported yet).
    t.priority = 7;
    t.status = TaskStatus::Progress;
    t.attempt = 2;
    t.error = Some("lease lost on encoder-01.transform: retried".to_owned());
    t.unit_id = Some("encoder-02.transform".to_owned());
    t.dispatched_at = Some(at(3));
    t.started_at = Some(at(4));
    t.lease_expires_at = Some(at(6));
    t.progress = Some(Progress {
        report: ProgressReport {
            percent: 0.0,
            frame: None,
            fps: None,
            speed: None,
            out_time: None,
            elapsed: 0.5,
            eta: None,
        },
        updated_at: at(4),
    });
    assert!(store.update_transform_task(&mut t).await.expect("update"));
    assert_eq!(
        store.get_transform_task(t.id).await.expect("get"),
        Some(t.clone())
    );

    t.progress = Some(progress(42.5, 5));
    t.lease_expires_at = Some(at(7));
    assert!(store.update_transform_task(&mut t).await.expect("update"));
    let back = store
        .get_transform_task(t.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(back, t);
    assert_eq!(
        serde_json::to_value(&back).expect("json"),
        serde_json::to_value(&t).expect("json"),
        "the JSON round-trips too (22.0 stays a float)"
    );

    // Failed: the lease and the dispatch cleared, finished set, progress kept.
    t.status = TaskStatus::Failure;
    t.error = Some(
        "[libx264 @ 0x55d5c8a0e4c0] height not divisible by 2 (1280x719)\n\
         Error while opening encoder for output stream #0:0"
            .to_owned(),
    );
    t.lease_expires_at = None;
    t.dispatched_at = None;
    t.finished_at = Some(at(8));
    assert!(store.update_transform_task(&mut t).await.expect("update"));
    assert_eq!(
        store.get_transform_task(t.id).await.expect("get"),
        Some(t.clone())
    );

    // Back to null options (a re-queue), listed as stored.
    t.status = TaskStatus::Retry;
    t.attempt = 3;
    t.progress = None;
    t.error = None;
    t.unit_id = None;
    t.started_at = None;
    t.finished_at = None;
    assert!(store.update_transform_task(&mut t).await.expect("update"));
    assert_eq!(
        store.get_transform_task(t.id).await.expect("get"),
        Some(t.clone())
    );
    let page = store
        .list_transform_tasks(&TaskFilter::default(), &opts("created_at", false, 0, 10))
        .await
        .expect("list");
    assert_eq!(page.total, 1);
    assert_eq!(page.items, vec![t]);
}

async fn task_update_missing_is_false(store: &dyn Store) {
    update_missing_is_false::<TransformTask>(store).await;
}

async fn update_missing_is_false<T: StoredTask>(store: &dyn Store) {
    let (user, media) = (Uuid::new_v4(), Uuid::new_v4());
    let kept = T::fresh(user, media, T::QUEUE, 0);
    kept.create(store).await.expect("create");
    let mut ghost = running(
        T::fresh(user, media, T::QUEUE, 1),
        &unit_id::<T>(1),
        TaskStatus::Started,
        5,
    );
    assert!(!ghost.update(store).await.expect("update missing"));
    assert_eq!(
        T::get(store, ghost.id()).await.expect("get"),
        None,
        "an update never creates"
    );
    assert_eq!(
        T::get(store, kept.id()).await.expect("get"),
        Some(kept.clone())
    );
    assert_eq!(
        task_page::<T>(
            store,
            TaskFilter::default(),
            opts("created_at", false, 0, 10)
        )
        .await,
        (1, vec![kept.id()])
    );
}

async fn task_list_filters(store: &dyn Store) {
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let (m1, m2, m3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let t0 = task(u1, m1, "transform", 0);
    let mut t1 = running(
        task(u1, m1, "transform", 1),
        "encoder-01.transform",
        TaskStatus::Started,
        30,
    );
    t1.media_out_id = m2;
    let mut t2 = running(
        task(u2, m2, "gpu", 2),
        "encoder-02.transform",
        TaskStatus::Progress,
        12,
    );
    t2.progress = Some(progress(12.5, 3));
    let mut t3 = task(u2, m3, "gpu", 3);
    t3.status = TaskStatus::Retry;
    t3.attempt = 2;
    t3.unit_id = Some("encoder-02.transform".to_owned());
    let mut t4 = running(
        task(u1, m3, "transform", 4),
        "encoder-01.transform",
        TaskStatus::Success,
        9,
    );
    t4.lease_expires_at = None;
    t4.finished_at = Some(at(8));
    let t5 = running(
        task(u2, m1, "transform", 5),
        "encoder-01.transform",
        TaskStatus::Revoking,
        20,
    );
    let tasks = [&t0, &t1, &t2, &t3, &t4, &t5];
    for t in tasks {
        store.create_transform_task(t).await.expect("create");
    }
    let list = |filter| listed::<TransformTask>(store, filter);
    let none = Vec::<Uuid>::new();

    assert_eq!(
        list(TaskFilter::default()).await,
        vec![t0.id, t1.id, t2.id, t3.id, t4.id, t5.id],
        "no filter: every task"
    );

    assert_eq!(list(of_user(u1)).await, vec![t0.id, t1.id, t4.id]);
    assert_eq!(list(of_user(u2)).await, vec![t2.id, t3.id, t5.id]);
    assert_eq!(list(of_user(Uuid::new_v4())).await, none);

    assert_eq!(list(on_media(m1)).await, vec![t0.id, t1.id, t5.id]);
    assert_eq!(
        list(on_media(m2)).await,
        vec![t1.id, t2.id],
        "media_id matches the output (t1) and the input (t2)"
    );
    assert_eq!(list(on_media(t0.media_out_id)).await, vec![t0.id]);
    assert_eq!(list(on_media(t0.profile_id)).await, none);

    assert_eq!(
        list(with(&[])).await.len(),
        tasks.len(),
        "no statuses: every task"
    );
    assert_eq!(list(with(&TaskStatus::QUEUED)).await, vec![t0.id, t3.id]);
    assert_eq!(
        list(with(&TaskStatus::RUNNING)).await,
        vec![t1.id, t2.id, t5.id]
    );
    assert_eq!(list(with(&[TaskStatus::Success])).await, vec![t4.id]);
    assert_eq!(
        list(with(&[TaskStatus::Failure, TaskStatus::Revoked])).await,
        none
    );
    assert_eq!(list(with(&TaskStatus::ALL)).await.len(), tasks.len());

    assert_eq!(list(in_queue("gpu")).await, vec![t2.id, t3.id]);
    assert_eq!(
        list(in_queue("transform")).await,
        vec![t0.id, t1.id, t4.id, t5.id]
    );
    assert_eq!(list(in_queue("GPU")).await, none, "queue names are exact");

    assert_eq!(
        list(on_unit("encoder-01.transform")).await,
        vec![t1.id, t4.id, t5.id]
    );
    assert_eq!(
        list(on_unit("encoder-02.transform")).await,
        vec![t2.id, t3.id]
    );
    assert_eq!(list(on_unit("encoder-03.transform")).await, none);

    // All at once.
    let mine_running = TaskFilter {
        user_id: Some(u1),
        media_id: Some(m2),
        statuses: vec![TaskStatus::Started, TaskStatus::Progress],
        queue: Some("transform".to_owned()),
        unit_id: Some("encoder-01.transform".to_owned()),
        undispatched: false,
        lease_expired_before: Some(at(31)),
        finished_after: None,
    };
    assert_eq!(list(mine_running.clone()).await, vec![t1.id]);
    assert_eq!(
        list(TaskFilter {
            queue: Some("gpu".to_owned()),
            ..mine_running
        })
        .await,
        none
    );

    // The total counts every page.
    assert_eq!(
        task_page::<TransformTask>(store, on_media(m1), opts("created_at", true, 1, 1)).await,
        (3, vec![t1.id])
    );
    assert_eq!(
        task_page::<TransformTask>(store, of_user(u2), ListOptions::count_only()).await,
        (3, vec![])
    );
}

async fn task_list_dispatch_and_lease_filters(store: &dyn Store) {
    dispatch_and_lease_filters::<TransformTask>(store).await;
}

async fn dispatch_and_lease_filters<T: StoredTask>(store: &dyn Store) {
    let (user, media) = (Uuid::new_v4(), Uuid::new_v4());
    let fresh = |minute: i64, queue: &str| T::fresh(user, media, queue, minute);
    let (queue, other) = (T::QUEUE, T::OTHER_QUEUE);
    let (unit1, unit2) = (unit_id::<T>(1), unit_id::<T>(2));
    // Queued, not on the broker yet (the broker was down).
    let queued = fresh(0, queue);
    // Queued and on the broker.
    let mut sent = fresh(1, queue);
    *sent.state().dispatched_at = Some(at(1) + Duration::milliseconds(12));
    // A re-queued attempt whose message is not sent yet.
    let mut retried = fresh(2, other);
    let state = retried.state();
    *state.status = TaskStatus::Retry;
    *state.attempt = 2;
    *state.error = Some(format!("lease expired on {unit2}"));
    // Running, leases ending at minutes 10, 20 and 30.
    let early = running(fresh(3, queue), &unit1, TaskStatus::Progress, 10);
    let middle = running(fresh(4, queue), &unit1, TaskStatus::Started, 20);
    let late = running(fresh(5, other), &unit2, TaskStatus::Revoking, 30);
    for t in [&queued, &sent, &retried, &early, &middle, &late] {
        t.create(store).await.expect("create");
    }
    let list = |filter| listed::<T>(store, filter);
    let none = Vec::<Uuid>::new();

    let undispatched = TaskFilter {
        undispatched: true,
        ..TaskFilter::default()
    };
    assert_eq!(
        list(undispatched.clone()).await,
        vec![queued.id(), retried.id()]
    );
    assert_eq!(
        list(TaskFilter {
            queue: Some(other.to_owned()),
            statuses: TaskStatus::QUEUED.to_vec(),
            ..undispatched.clone()
        })
        .await,
        vec![retried.id()]
    );
    assert_eq!(
        list(TaskFilter {
            statuses: TaskStatus::RUNNING.to_vec(),
            ..undispatched
        })
        .await,
        none
    );

    assert_eq!(list(expired_before(at(0))).await, none);
    assert_eq!(list(expired_before(at(10))).await, none, "strictly before");
    assert_eq!(
        list(expired_before(at(10) + Duration::microseconds(1))).await,
        vec![early.id()]
    );
    assert_eq!(
        list(expired_before(at(10) + Duration::nanoseconds(1))).await,
        vec![early.id()],
        "a bound between two microseconds still counts"
    );
    assert_eq!(
        list(expired_before(at(20) - Duration::microseconds(1))).await,
        vec![early.id()]
    );
    assert_eq!(
        list(expired_before(at(25))).await,
        vec![early.id(), middle.id()]
    );
    assert_eq!(
        list(expired_before(at(24 * 60))).await,
        vec![early.id(), middle.id(), late.id()],
        "null leases never expire"
    );
    assert_eq!(
        list(TaskFilter {
            unit_id: Some(unit1),
            statuses: TaskStatus::RUNNING.to_vec(),
            ..expired_before(at(31))
        })
        .await,
        vec![early.id(), middle.id()]
    );
}

async fn task_list_finished_after(store: &dyn Store) {
    finished_after_filter::<TransformTask>(store).await;
}

async fn publisher_task_list_finished_after(store: &dyn Store) {
    finished_after_filter::<PublisherTask>(store).await;
}

/// `finished_after` keeps the tasks finished at or after the bound (to the microsecond, as
/// stored); a task that has not finished never matches. It holds with the other filters,
/// the lease one included (both are timestamp comparisons).
async fn finished_after_filter<T: StoredTask>(store: &dyn Store) {
    let (user, media) = (Uuid::new_v4(), Uuid::new_v4());
    let finished = |minute: i64, status: TaskStatus, done: i64| {
        let mut task = T::fresh(user, media, T::QUEUE, minute);
        let state = task.state();
        *state.status = status;
        *state.started_at = Some(at(minute) + Duration::seconds(1));
        *state.finished_at = Some(at(done));
        task
    };
    let pending = T::fresh(user, media, T::QUEUE, 0);
    let progressing = running(
        T::fresh(user, media, T::QUEUE, 1),
        &unit_id::<T>(1),
        TaskStatus::Progress,
        50,
    );
    let failed_early = finished(2, TaskStatus::Failure, 10);
    let succeeded = finished(3, TaskStatus::Success, 20);
    let mut failed_late = finished(4, TaskStatus::Failure, 30);
    // A lease left behind by the attempt that failed.
    *failed_late.state().lease_expires_at = Some(at(25));
    for t in [
        &pending,
        &progressing,
        &failed_early,
        &succeeded,
        &failed_late,
    ] {
        t.create(store).await.expect("create");
    }
    let list = |filter| listed::<T>(store, filter);
    let none = Vec::<Uuid>::new();
    let done = vec![failed_early.id(), succeeded.id(), failed_late.id()];

    assert_eq!(
        list(finished_after(at(-60))).await,
        done,
        "unfinished tasks never match"
    );
    assert_eq!(list(finished_after(at(10))).await, done, "the bound counts");
    assert_eq!(
        list(finished_after(at(10) + Duration::microseconds(1))).await,
        vec![succeeded.id(), failed_late.id()]
    );
    assert_eq!(
        list(finished_after(at(10) + Duration::nanoseconds(1))).await,
        vec![succeeded.id(), failed_late.id()],
        "a bound between two microseconds"
    );
    assert_eq!(list(finished_after(at(31))).await, none);
    assert_eq!(
        list(TaskFilter {
            statuses: vec![TaskStatus::Failure],
            ..finished_after(at(5))
        })
        .await,
        vec![failed_early.id(), failed_late.id()]
    );
    assert_eq!(
        list(TaskFilter {
            statuses: vec![TaskStatus::Failure],
            ..finished_after(at(15))
        })
        .await,
        vec![failed_late.id()]
    );
    assert_eq!(
        list(TaskFilter {
            lease_expired_before: Some(at(26)),
            ..finished_after(at(15))
        })
        .await,
        vec![failed_late.id()],
        "with the lease filter: both hold"
    );
    assert_eq!(
        list(TaskFilter {
            lease_expired_before: Some(at(24)),
            ..finished_after(at(15))
        })
        .await,
        none
    );
    let (total, page) = task_page::<T>(
        store,
        finished_after(at(0)),
        opts("finished_at", true, 0, 2),
    )
    .await;
    assert_eq!(
        (total, page),
        (3, vec![failed_late.id(), succeeded.id()]),
        "paged and sorted by finished_at"
    );
}

/// The tasks not over of one kind grouped by queue and status (how many, the oldest
/// creation), and the running ones by unit; the finished ones and the other kind's are not
/// there.
async fn active_tasks_by_queue_status_and_unit(store: &dyn Store) {
    let active = |kind| async move {
        let mut active = store.active_tasks(kind).await.expect("active tasks");
        active.groups.sort();
        active
    };
    assert_eq!(active(UnitKind::Transform).await, ActiveTasks::default());
    let (user, media_id) = (Uuid::new_v4(), Uuid::new_v4());
    for (queue, status, unit, minute) in [
        ("transform", TaskStatus::Pending, None, 3),
        ("transform", TaskStatus::Pending, None, 2),
        ("transform", TaskStatus::Retry, Some("u1"), 4),
        ("transform", TaskStatus::Progress, Some("u1"), 5),
        ("transform", TaskStatus::Started, Some("u2"), 6),
        ("gpu", TaskStatus::Revoking, Some("u1"), 7),
        ("gpu", TaskStatus::Pending, None, 8),
        ("transform", TaskStatus::Success, Some("u1"), 1),
        ("transform", TaskStatus::Failure, Some("u2"), 1),
    ] {
        let mut t = task(user, media_id, queue, minute);
        t.status = status;
        t.unit_id = unit.map(str::to_owned);
        store.create_transform_task(&t).await.expect("create task");
    }
    let mut p = publication(user, media_id, "publisher", 9);
    p.status = TaskStatus::Revoking;
    p.unit_id = Some("p1".into());
    store
        .create_publisher_task(&p)
        .await
        .expect("create publication");
    let group = |queue: &str, status: &str, count, minute| TaskGroup {
        queue: queue.to_owned(),
        status: status.to_owned(),
        count,
        oldest_created_at: Some(at(minute)),
    };
    let by_unit = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(u, n)| ((*u).to_owned(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        active(UnitKind::Transform).await,
        ActiveTasks {
            groups: vec![
                group("gpu", "PENDING", 1, 8),
                group("gpu", "REVOKING", 1, 7),
                group("transform", "PENDING", 2, 2),
                group("transform", "PROGRESS", 1, 5),
                group("transform", "RETRY", 1, 4),
                group("transform", "STARTED", 1, 6),
            ],
            running_by_unit: by_unit(&[("u1", 2), ("u2", 1)]),
        }
    );
    assert_eq!(
        active(UnitKind::Publisher).await,
        ActiveTasks {
            groups: vec![group("publisher", "REVOKING", 1, 9)],
            running_by_unit: by_unit(&[("p1", 1)]),
        }
    );
}

/// One grouped count per kind: the statuses present and how many, of everyone or of one
/// owner; a status nobody has is absent.
async fn counts_by_status(store: &dyn Store) {
    use std::collections::BTreeMap;
    let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    };
    let count = |counted, user| store.count_by_status(counted, user);
    for counted in [
        Counted::Medias,
        Counted::TransformTasks,
        Counted::PublisherTasks,
    ] {
        assert_eq!(
            count(counted, None).await.expect("count"),
            counts(&[]),
            "{counted:?} of an empty store"
        );
    }
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let mut minute = 0;
    let mut next = || {
        minute += 1;
        minute
    };
    for (owner, status) in [
        (u1, MediaStatus::Ready),
        (u1, MediaStatus::Ready),
        (u1, MediaStatus::Pending),
        (u2, MediaStatus::Ready),
        (u2, MediaStatus::Deleted),
    ] {
        let m = media(owner, "counted", status, next());
        store.create_media(&m).await.expect("create media");
    }
    let media_id = Uuid::new_v4();
    for (owner, status) in [
        (u1, TaskStatus::Pending),
        (u1, TaskStatus::Success),
        (u1, TaskStatus::Failure),
        (u1, TaskStatus::Failure),
        (u2, TaskStatus::Progress),
    ] {
        let mut t = task(owner, media_id, "transform", next());
        t.status = status;
        store.create_transform_task(&t).await.expect("create task");
    }
    for (owner, status) in [(u2, TaskStatus::Success), (u1, TaskStatus::Revoking)] {
        let mut p = publication(owner, media_id, "publisher", next());
        p.status = status;
        store
            .create_publisher_task(&p)
            .await
            .expect("create publication");
    }
    let of = |counted, user| async move { count(counted, user).await.expect("count") };
    assert_eq!(
        of(Counted::Medias, None).await,
        counts(&[("DELETED", 1), ("PENDING", 1), ("READY", 3)])
    );
    assert_eq!(
        of(Counted::Medias, Some(u1)).await,
        counts(&[("PENDING", 1), ("READY", 2)])
    );
    assert_eq!(
        of(Counted::TransformTasks, None).await,
        counts(&[
            ("FAILURE", 2),
            ("PENDING", 1),
            ("PROGRESS", 1),
            ("SUCCESS", 1)
        ])
    );
    assert_eq!(
        of(Counted::TransformTasks, Some(u2)).await,
        counts(&[("PROGRESS", 1)])
    );
    assert_eq!(
        of(Counted::PublisherTasks, Some(u1)).await,
        counts(&[("REVOKING", 1)])
    );
    assert_eq!(
        of(Counted::PublisherTasks, None).await,
        counts(&[("REVOKING", 1), ("SUCCESS", 1)])
    );
    assert_eq!(of(Counted::Medias, Some(Uuid::new_v4())).await, counts(&[]));
}

async fn task_list_sort_and_paging(store: &dyn Store) {
    // The orders both kinds have, then priority: 3, 9, 0, 5, 1.
    const PRIORITIES: [u8; 5] = [3, 9, 0, 5, 1];
    let ids = sort_and_paging(store, |i, t: &mut TransformTask| {
        t.priority = PRIORITIES[i];
    })
    .await;
    let id = |i: usize| ids[i];
    let list = |filter, o| task_page::<TransformTask>(store, filter, o);
    let all = TaskFilter::default;

    assert_eq!(
        list(all(), opts("priority", true, 0, 10)).await,
        (5, vec![id(1), id(3), id(0), id(4), id(2)]),
        "higher priority first"
    );
    assert_eq!(
        list(all(), opts("priority", false, 0, 10)).await,
        (5, vec![id(2), id(4), id(0), id(3), id(1)])
    );
    assert_eq!(
        list(all(), opts("priority", true, 1, 2)).await,
        (5, vec![id(3), id(0)])
    );
    assert_eq!(
        list(all(), opts("priority", true, 4, 2)).await,
        (5, vec![id(2)])
    );
    assert_eq!(list(all(), opts("priority", true, 5, 2)).await, (5, vec![]));
    assert_eq!(list(all(), opts("priority", true, 0, 0)).await, (5, vec![]));
    assert_eq!(
        list(with(&TaskStatus::ACTIVE), opts("priority", true, 0, 1)).await,
        (2, vec![id(1)])
    );
}

/// Stores five tasks, created at minutes 0..4, with status SUCCESS, PENDING, FAILURE,
/// PROGRESS, REVOKED; started_at 10, null, 5, 20, 15; finished_at 30, null, 8, null, 25 (each
/// passed to `edit` first). Checks the orders and pages both kinds have; answers the ids.
async fn sort_and_paging<T: StoredTask>(
    store: &dyn Store,
    edit: impl Fn(usize, &mut T),
) -> Vec<Uuid> {
    let (user, media) = (Uuid::new_v4(), Uuid::new_v4());
    let specs: [(TaskStatus, Option<i64>, Option<i64>); 5] = [
        (TaskStatus::Success, Some(10), Some(30)),
        (TaskStatus::Pending, None, None),
        (TaskStatus::Failure, Some(5), Some(8)),
        (TaskStatus::Progress, Some(20), None),
        (TaskStatus::Revoked, Some(15), Some(25)),
    ];
    let mut ids = Vec::new();
    for (i, &(status, started, finished)) in specs.iter().enumerate() {
        let mut t = T::fresh(user, media, T::QUEUE, i as i64);
        let state = t.state();
        *state.status = status;
        *state.started_at = started.map(at);
        *state.finished_at = finished.map(at);
        edit(i, &mut t);
        t.create(store).await.expect("create");
        ids.push(t.id());
    }
    let id = |i: usize| ids[i];
    let list = |filter, o| task_page::<T>(store, filter, o);
    let all = TaskFilter::default;

    assert_eq!(
        list(all(), opts("created_at", true, 0, 10)).await,
        (5, vec![id(4), id(3), id(2), id(1), id(0)])
    );
    assert_eq!(
        list(all(), opts("created_at", false, 3, 10)).await,
        (5, vec![id(3), id(4)])
    );
    assert_eq!(
        list(all(), opts("created_at", true, 1, 2)).await,
        (5, vec![id(3), id(2)])
    );
    assert_eq!(
        list(all(), opts("created_at", true, 4, 2)).await,
        (5, vec![id(0)])
    );
    assert_eq!(
        list(all(), opts("created_at", true, 5, 2)).await,
        (5, vec![])
    );
    assert_eq!(
        list(all(), opts("created_at", true, 0, 0)).await,
        (5, vec![])
    );
    assert_eq!(
        list(with(&TaskStatus::ACTIVE), opts("created_at", true, 0, 1)).await,
        (2, vec![id(3)])
    );
    assert_eq!(
        list(all(), opts("status", false, 0, 10)).await,
        (5, vec![id(2), id(1), id(3), id(4), id(0)])
    );
    assert_eq!(
        list(all(), opts("status", true, 0, 2)).await,
        (5, vec![id(0), id(4)])
    );
    assert_eq!(
        list(all(), opts("started_at", false, 0, 10)).await,
        (5, vec![id(1), id(2), id(0), id(4), id(3)]),
        "null sorts first"
    );
    assert_eq!(
        list(all(), opts("started_at", true, 0, 10)).await,
        (5, vec![id(3), id(4), id(0), id(2), id(1)])
    );
    let finished = || {
        with(&[
            TaskStatus::Success,
            TaskStatus::Failure,
            TaskStatus::Revoked,
        ])
    };
    assert_eq!(
        list(finished(), opts("finished_at", false, 0, 10)).await,
        (3, vec![id(2), id(4), id(0)])
    );
    assert_eq!(
        list(finished(), opts("finished_at", true, 0, 2)).await,
        (3, vec![id(0), id(4)])
    );
    ids
}

async fn publisher_task_crud_round_trips_every_field(store: &dyn Store) {
    // As created: every option null.
    let mut p = publication(Uuid::new_v4(), Uuid::new_v4(), "publisher", 0);
    store.create_publisher_task(&p).await.expect("create");
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );
    assert_eq!(
        store
            .get_publisher_task(Uuid::new_v4())
            .await
            .expect("get missing"),
        None
    );
    let mut twin = p.clone();
    twin.queue = "cdn".to_owned();
    assert_conflict(store.create_publisher_task(&twin).await, "id");
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone()),
        "a refused create changes nothing"
    );

    // Transform and publisher tasks are apart, even under one id.
    let mut namesake = task(p.user_id, p.media_id, "transform", 1);
    namesake.id = p.id;
    store
        .create_transform_task(&namesake)
        .await
        .expect("a transform task with a publisher task's id");
    assert_eq!(
        store.get_transform_task(p.id).await.expect("get"),
        Some(namesake.clone())
    );
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );

    // Publishing, second attempt.
    p.status = TaskStatus::Started;
    p.attempt = 2;
    p.error = Some("lease lost on publisher-01.publisher: retried".to_owned());
    p.unit_id = Some("publisher-02.publisher".to_owned());
    p.dispatched_at = Some(at(3) + Duration::microseconds(7));
    p.started_at = Some(at(4));
    p.lease_expires_at = Some(at(6));
    assert!(store.update_publisher_task(&mut p).await.expect("update"));
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );

    // Published: the URI set, the lease cleared.
    p.status = TaskStatus::Success;
    p.publish_uri = Some(public_uri("publisher-02.publisher", p.media_id));
    p.lease_expires_at = None;
    p.finished_at = Some(at(5));
    assert!(store.update_publisher_task(&mut p).await.expect("update"));
    let back = store
        .get_publisher_task(p.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(back, p);
    assert_eq!(
        serde_json::to_value(&back).expect("json"),
        serde_json::to_value(&p).expect("json"),
        "the JSON round-trips too"
    );

    // Unpublishing (the unpublish job on the broker), then unpublished: the URI is kept.
    p.status = TaskStatus::Revoking;
    p.dispatched_at = Some(at(9));
    assert!(store.update_publisher_task(&mut p).await.expect("update"));
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );
    p.status = TaskStatus::Revoked;
    p.error = None;
    p.finished_at = Some(at(10));
    assert!(store.update_publisher_task(&mut p).await.expect("update"));
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );

    // Every option back to null (the store checks no transition), listed as stored.
    p.status = TaskStatus::Retry;
    p.attempt = 3;
    p.publish_uri = None;
    p.unit_id = None;
    p.started_at = None;
    p.finished_at = None;
    p.dispatched_at = None;
    assert!(store.update_publisher_task(&mut p).await.expect("update"));
    assert_eq!(
        store.get_publisher_task(p.id).await.expect("get"),
        Some(p.clone())
    );
    let all = || opts("created_at", false, 0, 10);
    let page = store
        .list_publisher_tasks(&TaskFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (1, vec![p]));
    let page = store
        .list_transform_tasks(&TaskFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (1, vec![namesake]));
}

async fn publisher_task_update_missing_is_false(store: &dyn Store) {
    update_missing_is_false::<PublisherTask>(store).await;
    // A transform task's id is no publisher task's.
    let t = task(Uuid::new_v4(), Uuid::new_v4(), "transform", 2);
    store.create_transform_task(&t).await.expect("create");
    let mut p = publication(t.user_id, t.media_in_id, "publisher", 2);
    p.id = t.id;
    assert!(!store.update_publisher_task(&mut p).await.expect("update"));
    assert_eq!(store.get_publisher_task(t.id).await.expect("get"), None);
    assert_eq!(store.get_transform_task(t.id).await.expect("get"), Some(t));
}

async fn publisher_task_list_filters(store: &dyn Store) {
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let (m1, m2, m3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (unit1, unit2) = ("publisher-01.publisher", "publisher-02.publisher");
    let p0 = publication(u1, m1, "publisher", 0);
    let p1 = running(
        publication(u1, m1, "publisher", 1),
        unit1,
        TaskStatus::Started,
        30,
    );
    let mut p2 = running(
        publication(u2, m2, "cdn", 2),
        unit2,
        TaskStatus::Success,
        12,
    );
    p2.lease_expires_at = None;
    p2.finished_at = Some(at(4));
    p2.publish_uri = Some(public_uri(unit2, m2));
    let mut p3 = publication(u2, m3, "cdn", 3);
    p3.status = TaskStatus::Retry;
    p3.attempt = 2;
    p3.unit_id = Some(unit2.to_owned());
    let mut p4 = running(
        publication(u1, m3, "publisher", 4),
        unit1,
        TaskStatus::Revoking,
        20,
    );
    p4.publish_uri = Some(public_uri(unit1, m3));
    let mut p5 = running(
        publication(u2, m1, "publisher", 5),
        unit1,
        TaskStatus::Revoked,
        9,
    );
    p5.lease_expires_at = None;
    p5.finished_at = Some(at(8));
    p5.publish_uri = Some(public_uri(unit1, m1));
    let tasks = [&p0, &p1, &p2, &p3, &p4, &p5];
    for p in tasks {
        store.create_publisher_task(p).await.expect("create");
    }
    // A transform task matching most filters below: never listed with the publisher tasks.
    let mut t = running(task(u1, m1, "publisher", 6), unit1, TaskStatus::Started, 30);
    t.media_out_id = m2;
    store.create_transform_task(&t).await.expect("create");
    let list = |filter| listed::<PublisherTask>(store, filter);
    let none = Vec::<Uuid>::new();

    assert_eq!(
        list(TaskFilter::default()).await,
        vec![p0.id, p1.id, p2.id, p3.id, p4.id, p5.id],
        "no filter: every publisher task"
    );

    assert_eq!(list(of_user(u1)).await, vec![p0.id, p1.id, p4.id]);
    assert_eq!(list(of_user(u2)).await, vec![p2.id, p3.id, p5.id]);
    assert_eq!(list(of_user(Uuid::new_v4())).await, none);

    assert_eq!(list(on_media(m1)).await, vec![p0.id, p1.id, p5.id]);
    assert_eq!(list(on_media(m2)).await, vec![p2.id]);
    assert_eq!(list(on_media(m3)).await, vec![p3.id, p4.id]);
    assert_eq!(
        list(on_media(u1)).await,
        none,
        "media_id is the media's only"
    );
    assert_eq!(list(on_media(p0.id)).await, none);

    assert_eq!(
        list(with(&[])).await.len(),
        tasks.len(),
        "no statuses: every task"
    );
    assert_eq!(list(with(&TaskStatus::QUEUED)).await, vec![p0.id, p3.id]);
    assert_eq!(list(with(&TaskStatus::RUNNING)).await, vec![p1.id, p4.id]);
    assert_eq!(
        list(with(&[TaskStatus::Success, TaskStatus::Revoked])).await,
        vec![p2.id, p5.id]
    );
    assert_eq!(
        list(with(&[TaskStatus::Failure, TaskStatus::Progress])).await,
        none
    );
    assert_eq!(list(with(&TaskStatus::ALL)).await.len(), tasks.len());

    assert_eq!(list(in_queue("cdn")).await, vec![p2.id, p3.id]);
    assert_eq!(
        list(in_queue("publisher")).await,
        vec![p0.id, p1.id, p4.id, p5.id]
    );
    assert_eq!(list(in_queue("CDN")).await, none, "queue names are exact");

    assert_eq!(list(on_unit(unit1)).await, vec![p1.id, p4.id, p5.id]);
    assert_eq!(list(on_unit(unit2)).await, vec![p2.id, p3.id]);
    assert_eq!(list(on_unit("publisher-03.publisher")).await, none);

    let undispatched = TaskFilter {
        undispatched: true,
        ..TaskFilter::default()
    };
    assert_eq!(list(undispatched).await, vec![p0.id, p3.id]);
    assert_eq!(list(expired_before(at(20))).await, none);
    assert_eq!(list(expired_before(at(25))).await, vec![p4.id]);
    assert_eq!(list(expired_before(at(31))).await, vec![p1.id, p4.id]);

    // All at once.
    let mine_publishing = TaskFilter {
        user_id: Some(u1),
        media_id: Some(m1),
        statuses: vec![TaskStatus::Started, TaskStatus::Progress],
        queue: Some("publisher".to_owned()),
        unit_id: Some(unit1.to_owned()),
        undispatched: false,
        lease_expired_before: Some(at(31)),
        finished_after: None,
    };
    assert_eq!(list(mine_publishing.clone()).await, vec![p1.id]);
    assert_eq!(
        list(TaskFilter {
            media_id: Some(m2),
            ..mine_publishing.clone()
        })
        .await,
        none,
        "the transform task's output is no publisher task's media"
    );
    assert_eq!(
        listed::<TransformTask>(store, mine_publishing).await,
        vec![t.id],
        "and the publisher tasks are no transform tasks"
    );

    // The total counts every page.
    assert_eq!(
        task_page::<PublisherTask>(store, on_media(m1), opts("created_at", true, 1, 1)).await,
        (3, vec![p1.id])
    );
    assert_eq!(
        task_page::<PublisherTask>(store, of_user(u2), ListOptions::count_only()).await,
        (3, vec![])
    );
}

async fn publisher_task_list_dispatch_and_lease_filters(store: &dyn Store) {
    dispatch_and_lease_filters::<PublisherTask>(store).await;
}

async fn publisher_task_list_sort_and_paging(store: &dyn Store) {
    // The finished ones published a URI; the sorts answer whole tasks.
    let ids = sort_and_paging(store, |_, p: &mut PublisherTask| {
        p.unit_id = p.started_at.map(|_| "publisher-01.publisher".to_owned());
        p.publish_uri = p
            .finished_at
            .map(|_| public_uri("publisher-01.publisher", p.media_id));
    })
    .await;
    let page = store
        .list_publisher_tasks(
            &on_unit("publisher-01.publisher"),
            &opts("finished_at", true, 0, 1),
        )
        .await
        .expect("list");
    assert_eq!(page.total, 4);
    let first = page.items.first().expect("one item");
    assert_eq!(first.id, ids[0]);
    assert_eq!(first.finished_at, Some(at(30)));
    assert_eq!(
        first.publish_uri,
        Some(public_uri("publisher-01.publisher", first.media_id))
    );
}

async fn unit_put_get_list(store: &dyn Store) {
    assert_eq!(store.list_units().await.expect("list"), vec![]);
    assert_eq!(
        store.get_unit("encoder-01.transform").await.expect("get"),
        None
    );

    let mut e2 = unit("encoder-02.transform", UnitKind::Transform, 0);
    let e1 = unit("encoder-01.transform", UnitKind::Transform, 1);
    let p1 = unit("publisher-01.publisher", UnitKind::Publisher, 2);
    for u in [&e2, &p1, &e1] {
        store.put_unit(u).await.expect("put");
    }
    for u in [&e1, &e2, &p1] {
        assert_eq!(store.get_unit(&u.id).await.expect("get"), Some(u.clone()));
    }
    assert_eq!(
        store.get_unit("ENCODER-01.transform").await.expect("get"),
        None,
        "unit ids are exact"
    );
    assert_eq!(
        store.list_units().await.expect("list"),
        vec![e1.clone(), e2.clone(), p1.clone()],
        "listed by id"
    );

    // A second put (the next heartbeat) replaces the whole unit.
    e2.queues = vec!["gpu".to_owned()];
    e2.concurrency = 4;
    e2.running_tasks = vec![Uuid::new_v4(), Uuid::new_v4()];
    e2.ffmpeg_version = None;
    e2.last_heartbeat = at(3);
    e2.online = false;
    store.put_unit(&e2).await.expect("put again");
    assert_eq!(store.get_unit(&e2.id).await.expect("get"), Some(e2.clone()));
    assert_eq!(
        store.list_units().await.expect("list"),
        vec![e1.clone(), e2.clone(), p1.clone()],
        "a second put adds no unit"
    );
    assert_eq!(store.get_unit(&e1.id).await.expect("get"), Some(e1.clone()));
    // Forgetting a unit removes it, once.
    assert!(store.delete_unit(&e2.id).await.expect("delete"));
    assert!(!store.delete_unit(&e2.id).await.expect("delete again"));
    assert_eq!(store.get_unit(&e2.id).await.expect("get"), None);
    assert_eq!(store.list_units().await.expect("list"), vec![e1, p1]);
}

// ---------------------------------------------------------------------------------------------
// SQLite only: data files of older versions.

mod sqlite_file {
    use orchestra::models::{Counted, MediaStatus, PublisherTask, TaskFilter, TransformTask};
    use orchestra::store::{SqliteStore, Store};
    use oscied_protocol::TaskStatus;
    use rusqlite::params;

    use super::{
        Fenced, make_ready, media, publication, stale_copy_is_refused, start_on_unit, task,
    };

    /// A file made before the fence (no `rev` column) opens, reads every record at revision
    /// 0 and fences from there; opening it again keeps the revisions.
    #[tokio::test]
    async fn a_file_from_before_the_fence_opens_and_fences() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("oscied.db");
        let owner = uuid::Uuid::new_v4();
        let m = media(owner, "Cosmos Laundromat", MediaStatus::Pending, 0);
        let t = task(owner, m.id, "transform", 0);
        let p = publication(owner, m.id, "publisher", 0);
        let m2 = media(owner, "Spring", MediaStatus::Pending, 1);
        let t2 = task(owner, m2.id, "transform", 1);
        let p2 = publication(owner, m2.id, "publisher", 1);
        {
            // The tables as the version before the fence made them.
            let old = rusqlite::Connection::open(&path).expect("open");
            old.execute_batch(
                "CREATE TABLE medias (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
                 CREATE INDEX medias_status ON medias (json_extract(doc, '$.status'));
                 CREATE TABLE transform_tasks (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
                 CREATE TABLE publisher_tasks (id TEXT PRIMARY KEY, doc TEXT NOT NULL);",
            )
            .expect("old schema");
            for (table, id, doc) in [
                ("medias", m.id, serde_json::to_string(&m)),
                ("medias", m2.id, serde_json::to_string(&m2)),
                ("transform_tasks", t.id, serde_json::to_string(&t)),
                ("transform_tasks", t2.id, serde_json::to_string(&t2)),
                ("publisher_tasks", p.id, serde_json::to_string(&p)),
                ("publisher_tasks", p2.id, serde_json::to_string(&p2)),
            ] {
                old.execute(
                    &format!("INSERT INTO {table} (id, doc) VALUES (?1, ?2)"),
                    params![id.to_string(), doc.expect("json")],
                )
                .expect("insert");
            }
        }

        let store = SqliteStore::open(&path).expect("open an old file");
        // Its counters are filled from its records.
        for counted in [
            Counted::Medias,
            Counted::TransformTasks,
            Counted::PublisherTasks,
        ] {
            let counts = store.count_by_status(counted, Some(owner)).await;
            assert_eq!(
                counts.expect("count"),
                [("PENDING".to_owned(), 2)].into(),
                "{counted:?}"
            );
        }
        let mine = TaskFilter {
            user_id: Some(owner),
            statuses: vec![TaskStatus::Pending],
            ..TaskFilter::default()
        };
        let page = store
            .list_transform_tasks(&mine, &super::opts("created_at", false, 0, 1))
            .await
            .expect("list");
        assert_eq!((page.total, page.items.len()), (2, 1));
        stale_copy_is_refused(&store, m.clone(), m2, make_ready).await;
        stale_copy_is_refused(&store, t.clone(), t2, start_on_unit::<TransformTask>).await;
        stale_copy_is_refused(&store, p.clone(), p2, start_on_unit::<PublisherTask>).await;
        let mut twin = m.clone();
        twin.id = uuid::Uuid::new_v4();
        store
            .create_media(&twin)
            .await
            .expect("create in the old table");
        drop(store);

        let store = SqliteStore::open(&path).expect("open again");
        let back = store.get_media(m.id).await.expect("get").expect("present");
        assert_eq!(back.revision, 2, "the revision survives a reopen");
        assert_eq!(
            TransformTask::get(&store, t.id)
                .await
                .expect("get")
                .map(|t| t.revision),
            Some(2)
        );
        assert_eq!(
            store.get_media(twin.id).await.expect("get"),
            Some(twin),
            "a record created after the migration"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MongoDB only: connection behaviour.

mod mongo_connection {
    use std::time::{Duration, Instant};

    use orchestra::store::{MongoStore, Store, StoreError};
    use oscied_e2e::nx::{NxServer, fresh_database};

    use super::user;

    /// The URI's database is the store's; connecting again (indexes re-created) keeps the data.
    #[tokio::test]
    async fn uses_the_uri_database_and_reconnects() {
        let server = NxServer::start();
        let (db_a, db_b) = (fresh_database(), fresh_database());
        let alice = user("Alice", "A", "alice@example.org", 0);
        {
            let a = MongoStore::connect(&server.uri_with_db(&db_a))
                .await
                .expect("connect");
            a.create_user(&alice).await.expect("create");
        }
        let b = MongoStore::connect(&server.uri_with_db(&db_b))
            .await
            .expect("connect");
        assert_eq!(b.get_user(alice.user.id).await.expect("get"), None);
        b.create_user(&alice)
            .await
            .expect("the mail is free in another database");

        let a = MongoStore::connect(&server.uri_with_db(&db_a))
            .await
            .expect("reconnect");
        assert_eq!(
            a.get_user(alice.user.id).await.expect("get"),
            Some(alice.clone())
        );
        let twin = user("Twin", "A", "ALICE@example.org", 1);
        match a.create_user(&twin).await {
            Err(StoreError::Conflict("mail")) => {}
            other => panic!("the unique mail index survives a reconnect: {other:?}"),
        }
    }

    /// Start-up creates the indexes: unique mail and title, medias and task lookups, and the
    /// queues' (status with the order).
    #[tokio::test]
    async fn connect_creates_the_indexes() {
        let server = NxServer::start();
        let db = fresh_database();
        MongoStore::connect(&server.uri_with_db(&db))
            .await
            .expect("connect");
        let client = mongodb::Client::with_uri_str(server.uri_with_db(&db))
            .await
            .expect("client");
        let database = client.database(&db);
        for (collection, keys) in [
            ("users", &["mail_key"][..]),
            ("profiles", &["title"]),
            ("medias", &["user_id", "status", "parent_id", "created_at"]),
            (
                "transform_tasks",
                &[
                    "status",
                    "user_id",
                    "media_in_id",
                    "media_out_id",
                    "queue",
                    "created_at",
                ],
            ),
            (
                "publisher_tasks",
                &["status", "user_id", "media_id", "queue", "created_at"],
            ),
        ] {
            let indexes = database
                .collection::<mongodb::bson::Document>(collection)
                .list_index_names()
                .await
                .expect("list indexes");
            for key in keys {
                assert!(
                    indexes.iter().any(|name| name.contains(key)),
                    "{collection}: no index on {key} in {indexes:?}"
                );
            }
            // A queue's page and the dispatch scan: status, then the order.
            if collection.ends_with("_tasks") {
                for compound in [&["status", "created_at"][..], &["status", "dispatched_at"]] {
                    assert!(
                        indexes
                            .iter()
                            .any(|name| compound.iter().all(|key| name.contains(key))),
                        "{collection}: no index on {compound:?} in {indexes:?}"
                    );
                }
            }
        }
    }

    /// A document keeps its revision in `_rev` (not in the record's JSON); one written
    /// before the fence has none: it reads as revision 0 and is fenced from there.
    #[tokio::test]
    async fn documents_from_before_the_fence_read_as_revision_0() {
        use mongodb::bson::{Bson, Document, doc};

        /// The stored `_rev` as a number (written as an Int64; NX-27017 answers small ones
        /// as Int32).
        fn rev(doc: &Document) -> Option<i64> {
            match doc.get("_rev")? {
                Bson::Int64(n) => Some(*n),
                Bson::Int32(n) => Some(i64::from(*n)),
                other => panic!("a non-integer _rev: {other}"),
            }
        }

        use orchestra::models::{Media, MediaStatus, PublisherTask, TransformTask};

        use super::{
            Fenced, make_ready, media, publication, stale_copy_is_refused, start_on_unit, task,
        };

        let server = NxServer::start();
        let db = fresh_database();
        let store = MongoStore::connect(&server.uri_with_db(&db))
            .await
            .expect("connect");
        let client = mongodb::Client::with_uri_str(server.uri_with_db(&db))
            .await
            .expect("client");
        let database = client.database(&db);
        let owner = uuid::Uuid::new_v4();
        let m = media(owner, "Tears of Steel", MediaStatus::Pending, 0);
        let t = task(owner, m.id, "transform", 0);
        let p = publication(owner, m.id, "publisher", 0);
        let m2 = media(owner, "Agent 327", MediaStatus::Pending, 1);
        let t2 = task(owner, m2.id, "transform", 1);
        let p2 = publication(owner, m2.id, "publisher", 1);
        for m in [&m, &m2] {
            store.create_media(m).await.expect("create");
        }
        for t in [&t, &t2] {
            store.create_transform_task(t).await.expect("create");
        }
        for p in [&p, &p2] {
            store.create_publisher_task(p).await.expect("create");
        }
        for (collection, id) in [
            ("medias", m.id),
            ("medias", m2.id),
            ("transform_tasks", t.id),
            ("transform_tasks", t2.id),
            ("publisher_tasks", p.id),
            ("publisher_tasks", p2.id),
        ] {
            let coll = database.collection::<Document>(collection);
            let filter = doc! { "_id": id.to_string() };
            let stored = coll
                .find_one(filter.clone())
                .await
                .expect("find")
                .expect("stored");
            assert_eq!(rev(&stored), Some(0), "{collection}: {stored}");
            assert!(!stored.contains_key("revision"), "{collection}: {stored}");
            // As an older orchestra wrote it.
            coll.update_one(filter.clone(), doc! { "$unset": { "_rev": "" } })
                .await
                .expect("unset");
            let old = coll.find_one(filter).await.expect("find").expect("stored");
            assert_eq!(rev(&old), None, "{collection}: {old}");
        }
        stale_copy_is_refused(&store, m.clone(), m2, make_ready).await;
        stale_copy_is_refused(&store, t.clone(), t2, start_on_unit::<TransformTask>).await;
        stale_copy_is_refused(&store, p.clone(), p2, start_on_unit::<PublisherTask>).await;
        let stored = database
            .collection::<Document>("medias")
            .find_one(doc! { "_id": m.id.to_string() })
            .await
            .expect("find")
            .expect("stored");
        assert_eq!(rev(&stored), Some(2));
        assert_eq!(
            Media::get(&store, m.id)
                .await
                .expect("get")
                .map(|m| m.revision),
            Some(2)
        );
        assert_eq!(TransformTask::list_all(&store).await.1[0].revision, 2);
    }

    /// No server: Unavailable within the selection timeout (the URI's, when it gives one),
    /// not the driver's default 30 s.
    #[tokio::test]
    async fn no_server_is_unavailable_quickly() {
        let port = oscied_e2e::free_port();
        for (uri, limit) in [
            (
                format!("mongodb://127.0.0.1:{port}/oscied_test"),
                Duration::from_secs(12),
            ),
            (
                format!("mongodb://127.0.0.1:{port}/oscied_test?serverSelectionTimeoutMS=500"),
                Duration::from_secs(4),
            ),
        ] {
            let started = Instant::now();
            match MongoStore::connect(&uri).await {
                Err(StoreError::Unavailable(_)) => {}
                Err(e) => panic!("{uri}: expected Unavailable, got {e:?}"),
                Ok(_) => panic!("{uri}: connected to nothing"),
            }
            assert!(
                started.elapsed() < limit,
                "{uri}: took {:?}",
                started.elapsed()
            );
        }
    }

    /// A server that goes away: calls answer Unavailable instead of hanging.
    #[tokio::test]
    async fn server_gone_is_unavailable() {
        let server = NxServer::start();
        let store = MongoStore::connect(&format!("{}?serverSelectionTimeoutMS=1000", server.uri()))
            .await
            .expect("connect");
        store.ping().await.expect("ping");
        drop(server);
        let started = Instant::now();
        match store.ping().await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        match store.get_user(uuid::Uuid::new_v4()).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}

async fn root_secret_hash_is_kept_once(store: &dyn Store) {
    assert_eq!(store.root_secret_hash().await.unwrap(), None);
    // Two orchestras starting at once on an empty store: exactly one hash is kept.
    let (a, b) = tokio::join!(
        store.insert_root_secret_hash("$argon2id$first"),
        store.insert_root_secret_hash("$argon2id$second")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a != b, "exactly one insert wins: {a} {b}");
    let winner = if a {
        "$argon2id$first"
    } else {
        "$argon2id$second"
    };
    assert_eq!(
        store.root_secret_hash().await.unwrap().as_deref(),
        Some(winner)
    );
    assert!(
        !store
            .insert_root_secret_hash("$argon2id$third")
            .await
            .unwrap()
    );
    assert_eq!(
        store.root_secret_hash().await.unwrap().as_deref(),
        Some(winner)
    );
    store
        .set_root_secret_hash("$argon2id$rotated")
        .await
        .unwrap();
    assert_eq!(
        store.root_secret_hash().await.unwrap().as_deref(),
        Some("$argon2id$rotated")
    );
}

// ---------------------------------------------------------------------------------------------
// The fence: every media and task write is conditional on the revision it was read at.

async fn media_stale_copy_is_refused(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let created = media(owner, "Big Buck Bunny", MediaStatus::Pending, 0);
    let bystander = media(owner, "Elephants Dream", MediaStatus::Pending, 1);
    store.create_media(&created).await.expect("create");
    store.create_media(&bystander).await.expect("create");
    stale_copy_is_refused(store, created, bystander, make_ready).await;
}

/// Write `n` of [`stale_copy_is_refused`] on a media.
fn make_ready(m: &mut Media, n: u64) {
    m.status = MediaStatus::Ready;
    m.size = 1_000 + n;
    m.updated_at = at(1) + Duration::microseconds(n as i64);
}

/// Write `n` of [`stale_copy_is_refused`] on a task.
fn start_on_unit<T: StoredTask>(t: &mut T, n: u64) {
    let unit = unit_id::<T>(u8::try_from(n).expect("a small n"));
    *t = running(t.clone(), &unit, TaskStatus::Started, 5 + n as i64);
}

async fn task_stale_copy_is_refused(store: &dyn Store) {
    task_stale_copy::<TransformTask>(store).await;
}

async fn publisher_task_stale_copy_is_refused(store: &dyn Store) {
    task_stale_copy::<PublisherTask>(store).await;
}

async fn task_stale_copy<T: StoredTask>(store: &dyn Store) {
    let created = T::fresh(Uuid::new_v4(), Uuid::new_v4(), T::QUEUE, 0);
    let bystander = T::fresh(created.user_id, created.id(), T::QUEUE, 1);
    created.create(store).await.expect("create");
    bystander.create(store).await.expect("create");
    stale_copy_is_refused(store, created, bystander, start_on_unit::<T>).await;

    // A record is created at its revision, and fenced from there.
    let mut later = T::fresh(Uuid::new_v4(), Uuid::new_v4(), T::QUEUE, 2);
    later.set_revision(7);
    later.create(store).await.expect("create at a revision");
    assert_eq!(
        T::get(store, later.id()).await.expect("get"),
        Some(later.clone())
    );
    let mut stale = later.clone();
    stale.set_revision(6);
    stale.error = Some("written from an old read".to_owned());
    assert!(
        !stale.update(store).await.expect("update"),
        "revision 6 < 7"
    );
    later.error = Some("retried".to_owned());
    assert!(later.update(store).await.expect("update"));
    assert_eq!(later.revision(), 8);
    assert_eq!(T::get(store, later.id()).await.expect("get"), Some(later));
}

async fn task_totals_follow_every_change(store: &dyn Store) {
    totals_follow_every_change::<TransformTask>(store).await;
}

async fn publisher_task_totals_follow_every_change(store: &dyn Store) {
    totals_follow_every_change::<PublisherTask>(store).await;
}

/// A list's total by owner and status (which a store may keep as counters rather than count)
/// is the number of matching records after creates, status changes, refused stale writes and
/// changes that leave the status as it was: the same as the same filter narrowed by a queue
/// every record is on (which is counted), and as `count_by_status`.
async fn totals_follow_every_change<T: StoredTask>(store: &dyn Store) {
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let statuses = [
        TaskStatus::Pending,
        TaskStatus::Started,
        TaskStatus::Progress,
        TaskStatus::Success,
        TaskStatus::Failure,
    ];
    let mut records = vec![];
    for i in 0..24 {
        let owner = if i % 3 == 0 { bob } else { ada };
        let t = T::fresh(owner, Uuid::new_v4(), T::QUEUE, i);
        t.create(store).await.expect("create");
        records.push(t);
    }
    for (i, t) in records.iter_mut().enumerate() {
        for step in 0..=(i % 4) {
            let stale = t.clone();
            *t.state().status = statuses[(i + step) % statuses.len()];
            assert!(t.update(store).await.expect("update"));
            let mut late = stale;
            *late.state().status = TaskStatus::Revoked;
            assert!(!late.update(store).await.expect("update"), "a stale copy");
        }
        // A write that keeps the status.
        t.error = Some(format!("note {i}"));
        assert!(t.update(store).await.expect("update"));
    }
    let all = opts("created_at", false, 0, 1);
    for user_id in [None, Some(ada), Some(bob)] {
        let expected = |wanted: &[TaskStatus]| {
            records
                .iter()
                .filter(|t| user_id.is_none_or(|u| t.user_id == u))
                .filter(|t| wanted.is_empty() || wanted.contains(&t.status))
                .count() as u64
        };
        let sets: Vec<Vec<TaskStatus>> = vec![
            vec![],
            vec![TaskStatus::Pending],
            vec![TaskStatus::Started, TaskStatus::Progress],
            vec![TaskStatus::Revoked],
            statuses.to_vec(),
        ];
        for wanted in sets {
            let filter = TaskFilter {
                user_id,
                statuses: wanted.clone(),
                ..TaskFilter::default()
            };
            let total = T::list(store, &filter, &all).await.expect("list").total;
            let narrowed = TaskFilter {
                queue: Some(T::QUEUE.to_owned()),
                ..filter
            };
            let counted = T::list(store, &narrowed, &all).await.expect("list").total;
            let context = format!("{user_id:?} {wanted:?}");
            assert_eq!(total, expected(&wanted), "{context}");
            assert_eq!(counted, total, "{context}: counted");
        }
        let by_status = store
            .count_by_status(T::COUNTED, user_id)
            .await
            .expect("count");
        let expected: std::collections::BTreeMap<String, u64> = statuses
            .iter()
            .map(|s| (s.as_str().to_owned(), expected(&[*s])))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(by_status, expected, "{user_id:?}");
    }
}

/// A background pass's scan (`ListOptions::scan`) gets the oldest items, in order, without
/// a count: its total is what it got. A counted list of the same filter counts them all.
async fn task_scans_are_uncounted(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let mut made = vec![];
    for minute in 0..5 {
        let t = task(owner, Uuid::new_v4(), "transform", minute);
        store.create_transform_task(&t).await.expect("create");
        made.push(t.id);
    }
    let filter = with(&[TaskStatus::Pending]);
    let scanned = store
        .list_transform_tasks(&filter, &ListOptions::scan(2))
        .await
        .expect("scan");
    assert_eq!(task_ids(&scanned), made[..2].to_vec());
    assert_eq!(scanned.total, 2, "uncounted: the items it got");
    let counted = store
        .list_transform_tasks(&filter, &ListOptions::oldest_first(2))
        .await
        .expect("list");
    assert_eq!(task_ids(&counted), made[..2].to_vec());
    assert_eq!(counted.total, 5);

    // Over several statuses (the dispatch loop's queued ones), interleaved in time: still
    // the oldest of them all, in order, however the store gathers them; past a skip too.
    let owner = Uuid::new_v4();
    let mut made = vec![];
    for minute in 10..16 {
        let mut t = task(owner, Uuid::new_v4(), "transform", minute);
        if minute % 2 == 1 {
            *t.state().status = TaskStatus::Retry;
        }
        store.create_transform_task(&t).await.expect("create");
        made.push(t.id);
    }
    let queued = TaskFilter {
        statuses: TaskStatus::QUEUED.to_vec(),
        ..of_user(owner)
    };
    let scanned = store
        .list_transform_tasks(&queued, &ListOptions::scan(3))
        .await
        .expect("scan");
    assert_eq!(task_ids(&scanned), made[..3].to_vec());
    assert_eq!(scanned.total, 3);
    let past = ListOptions {
        skip: 2,
        ..ListOptions::scan(3)
    };
    let scanned = store
        .list_transform_tasks(&queued, &past)
        .await
        .expect("scan");
    assert_eq!(task_ids(&scanned), made[2..5].to_vec());
    let newest = ListOptions {
        descending: true,
        ..ListOptions::scan(4)
    };
    let scanned = store
        .list_transform_tasks(&queued, &newest)
        .await
        .expect("scan");
    let mut expected = made[2..].to_vec();
    expected.reverse();
    assert_eq!(task_ids(&scanned), expected);
}

/// A page that ends before its limit tells its total, and a store may answer it without a
/// count; a full page, or an empty one past the end, is counted. Either way the total is
/// right.
async fn task_list_totals_of_short_and_full_pages(store: &dyn Store) {
    let owner = Uuid::new_v4();
    for minute in 0..5 {
        let t = task(owner, Uuid::new_v4(), "transform", minute);
        store.create_transform_task(&t).await.expect("create");
    }
    let filter = of_user(owner);
    for (skip, limit, items) in [
        (0, 10, 5),
        (0, 5, 5),
        (0, 3, 3),
        (3, 10, 2),
        (4, 1, 1),
        (5, 10, 0),
        (9, 10, 0),
        (0, 0, 0),
    ] {
        let page = store
            .list_transform_tasks(&filter, &opts("created_at", false, skip, limit))
            .await
            .expect("list");
        assert_eq!(page.items.len(), items, "skip {skip} limit {limit}");
        assert_eq!(page.total, 5, "skip {skip} limit {limit}");
    }
}

async fn task_hold_rides_with_the_revision(store: &dyn Store) {
    hold_rides_with_the_revision::<TransformTask>(store).await;
}

async fn publisher_task_hold_rides_with_the_revision(store: &dyn Store) {
    hold_rides_with_the_revision::<PublisherTask>(store).await;
}

/// A task's hold (a completion under way) is stored and read with the record, beside its
/// JSON as the revision is: created with one, a get and a list give it back, an update
/// replaces or clears it, a stale copy's hold is refused with the rest; the API JSON never
/// shows it.
async fn hold_rides_with_the_revision<T: StoredTask + serde::Serialize>(store: &dyn Store) {
    let hold = |by: &str, minute| Hold {
        by: by.to_owned(),
        until: at(minute),
    };
    let mut held = T::fresh(Uuid::new_v4(), Uuid::new_v4(), T::QUEUE, 0);
    held.set_hold(Some(hold("completion-1", 1)));
    held.create(store).await.expect("create");
    let plain = T::fresh(held.user_id, Uuid::new_v4(), T::QUEUE, 1);
    plain.create(store).await.expect("create");
    let got = T::get(store, held.id())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.hold(), Some(&hold("completion-1", 1)));
    assert_eq!(got, held);
    let (_, listed) = T::list_all(store).await;
    let holds: Vec<_> = listed.iter().map(|t| (t.id(), t.hold().cloned())).collect();
    assert_eq!(
        holds,
        vec![
            (held.id(), Some(hold("completion-1", 1))),
            (plain.id(), None)
        ]
    );
    let json = serde_json::to_value(&got).expect("json");
    for key in ["hold", "_hold", "revision", "_rev"] {
        assert!(json.get(key).is_none(), "{key} in the API JSON: {json}");
    }

    // A stale copy's hold is refused with the rest of it.
    let mut stale = got.clone();
    let mut current = got;
    current.set_hold(Some(hold("completion-2", 2)));
    assert!(current.update(store).await.expect("update"));
    stale.set_hold(Some(hold("completion-3", 3)));
    assert!(!stale.update(store).await.expect("update"), "a stale copy");
    let got = T::get(store, held.id())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.hold(), Some(&hold("completion-2", 2)));

    // The holder's next write ends it.
    let mut ended = got;
    ended.set_hold(None);
    ended.error = Some("decided".to_owned());
    assert!(ended.update(store).await.expect("update"));
    let got = T::get(store, held.id())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.hold(), None);
    assert_eq!(got, ended);
    assert_eq!(
        T::get(store, plain.id()).await.expect("get"),
        Some(plain),
        "the other record is untouched"
    );
}

/// The fence, on `created` (stored at revision 0): a copy's update wins once and bumps the
/// revision on the copy and in the store; another copy read at the same revision is refused
/// and changes nothing; a fresh read wins again; `bystander`, another record at revision 0
/// (created after it, and the only other one of its kind), is never touched.
/// `change(record, n)` makes a distinct write `n`.
async fn stale_copy_is_refused<T: Fenced>(
    store: &dyn Store,
    created: T,
    bystander: T,
    change: fn(&mut T, u64),
) {
    assert_eq!((created.revision(), bystander.revision()), (0, 0));
    let mut first = T::get(store, created.id())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(first, created, "read back at revision 0");
    let mut second = first.clone();

    change(&mut first, 1);
    assert!(first.update(store).await.expect("update"));
    assert_eq!(
        first.revision(),
        1,
        "the update sets the new revision on the copy"
    );
    assert_eq!(
        T::get(store, first.id()).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        T::list_all(store).await,
        (2, vec![first.clone(), bystander.clone()]),
        "listed at revision 1"
    );

    // The second copy was read before the first write: refused, whatever it writes.
    change(&mut second, 2);
    assert!(!second.update(store).await.expect("stale update"));
    assert_eq!(
        second.revision(),
        0,
        "a refused update leaves the copy's revision"
    );
    let mut creator = created.clone();
    assert!(
        !creator.update(store).await.expect("stale update"),
        "an unchanged stale copy is refused too"
    );
    assert_eq!(
        T::get(store, first.id()).await.expect("get"),
        Some(first.clone()),
        "a refused update changes nothing"
    );

    // Read again, decide again: that one wins, and the one before it is stale now.
    let mut fresh = T::get(store, first.id())
        .await
        .expect("get")
        .expect("present");
    change(&mut fresh, 3);
    assert!(fresh.update(store).await.expect("update"));
    assert_eq!(fresh.revision(), 2);
    assert!(!first.update(store).await.expect("stale update"));
    assert_eq!(first.revision(), 1);
    assert_eq!(
        T::get(store, fresh.id()).await.expect("get"),
        Some(fresh.clone())
    );
    assert_eq!(
        T::list_all(store).await,
        (2, vec![fresh, bystander.clone()]),
        "listed at revision 2; the other record at the same revision is untouched"
    );
    assert_eq!(
        T::get(store, bystander.id()).await.expect("get"),
        Some(bystander)
    );
}

/// How many racers race each round.
const RACERS: usize = 16;

type Racing<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// A racer's read of record `id`.
type Read<T> = fn(Arc<dyn Store>, Uuid) -> Racing<T>;

fn by_get<T: Fenced>(store: Arc<dyn Store>, id: Uuid) -> Racing<T> {
    Box::pin(async move {
        T::get(&*store, id)
            .await
            .expect("get")
            .expect("the raced record is there")
    })
}

/// As the reaper finds it: among the running tasks whose lease lapsed.
fn by_lapsed_list<T: StoredTask>(store: Arc<dyn Store>, id: Uuid) -> Racing<T> {
    Box::pin(async move {
        let filter = TaskFilter {
            statuses: TaskStatus::RUNNING.to_vec(),
            lease_expired_before: Some(Utc::now()),
            ..TaskFilter::default()
        };
        T::list(&*store, &filter, &opts("created_at", false, 0, 10))
            .await
            .expect("list")
            .items
            .into_iter()
            .find(|t| t.id() == id)
            .expect("the lapsed task is listed")
    })
}

/// One round: [`RACERS`] tokio tasks, racer `n` on handle `n % stores.len()`, each read
/// record `id` with `read`, then (once all have read, so they all hold the same revision)
/// make their own change `change(record, n)` and update it. Exactly one must win; the store
/// holds its write at the next revision, on every handle; every loser's update changed
/// nothing and the loser's re-read shows the winner's write. Returns the winner's record.
async fn race<T: Fenced>(
    what: &str,
    stores: &[Arc<dyn Store>],
    id: Uuid,
    read: Read<T>,
    change: fn(&mut T, usize),
) -> T {
    let before = T::get(&*stores[0], id)
        .await
        .expect("get")
        .expect("present")
        .revision();
    let all_read = Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = stores[n % stores.len()].clone();
            let all_read = all_read.clone();
            tokio::spawn(async move {
                let mut copy = read(store.clone(), id).await;
                all_read.wait().await;
                change(&mut copy, n);
                let won = copy.update(&*store).await.expect("update");
                let seen = T::get(&*store, id).await.expect("get").expect("present");
                (won, copy, seen)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.expect("a racer panicked"));
    }

    let winners: Vec<&T> = outcomes
        .iter()
        .filter(|(won, ..)| *won)
        .map(|(_, copy, _)| copy)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{what}: exactly one of {RACERS} racers wins, not {}",
        winners.len()
    );
    let winner = winners[0].clone();
    assert_eq!(winner.revision(), before + 1, "{what}: one write, one bump");
    for (won, copy, seen) in &outcomes {
        if !won {
            assert_eq!(
                copy.revision(),
                before,
                "{what}: a loser's copy keeps its revision"
            );
            let mut unfenced = copy.clone();
            unfenced.set_revision(winner.revision());
            assert_ne!(unfenced, winner, "{what}: each racer writes something else");
        }
        assert_eq!(
            seen, &winner,
            "{what}: every racer's re-read is the winner's write"
        );
    }
    for store in stores {
        assert_eq!(
            T::get(&**store, id).await.expect("get"),
            Some(winner.clone()),
            "{what}: the store holds the winner's write"
        );
    }
    // A loser's stale copy stays refused after the round.
    let (_, mut loser, _) = outcomes.into_iter().find(|(won, ..)| !won).expect("losers");
    assert!(
        !loser.update(&*stores[0]).await.expect("update"),
        "{what}: stale"
    );
    winner
}

/// Racer `n`'s distinct instant after `minute`.
fn nth(minute: i64, n: usize) -> DateTime<Utc> {
    at(minute) + Duration::microseconds(n as i64 + 1)
}

async fn media_races(stores: Vec<Arc<dyn Store>>) {
    let owner = Uuid::new_v4();
    let m = media(owner, "Sintel", MediaStatus::Pending, 0);
    stores[0].create_media(&m).await.expect("create");

    let ready = race("ready", &stores, m.id, by_get::<Media>, |m, n| {
        m.status = MediaStatus::Ready;
        m.size = 1_000 + n as u64;
        m.updated_at = nth(1, n);
    })
    .await;
    assert_eq!(ready.status, MediaStatus::Ready);

    // Metadata patches and a delete racing on the ready media.
    let last = race("patch or delete", &stores, m.id, by_get::<Media>, |m, n| {
        if n % 4 == 0 {
            m.status = MediaStatus::Deleted;
        } else {
            m.metadata
                .insert("title".to_owned(), json!(format!("Sintel, cut {n}")));
        }
        m.updated_at = nth(2, n);
    })
    .await;
    assert_eq!(
        last.size, ready.size,
        "the ready write is kept under the last one"
    );
    assert_eq!(last.revision, 2);

    assert_eq!(
        Media::list_all(&*stores[0]).await,
        (1, vec![last]),
        "nothing doubled"
    );
}

async fn task_races(stores: Vec<Arc<dyn Store>>) {
    lifecycle_races::<TransformTask>(&stores).await;
}

async fn publisher_task_races(stores: Vec<Arc<dyn Store>>) {
    lifecycle_races::<PublisherTask>(&stores).await;
}

/// Racer `n` claims the task for its own unit (lease lapsed already: the dates are past).
fn claim<T: StoredTask>(t: &mut T, n: usize) {
    t.status = TaskStatus::Started;
    t.unit_id = Some(unit_id::<T>(u8::try_from(n + 1).expect("few racers")));
    t.started_at = Some(nth(2, n));
    t.lease_expires_at = Some(nth(3, n));
}

/// Racer `n` reaps the task: the lease lapsed, so it is queued again, attempt + 1.
fn reap<T: StoredTask>(t: &mut T, n: usize) {
    t.status = TaskStatus::Retry;
    t.attempt += 1;
    t.error = Some(format!("lease lost (reaper {n})"));
    t.unit_id = None;
    t.started_at = None;
    t.dispatched_at = None;
    t.lease_expires_at = None;
}

fn complete<T: StoredTask>(t: &mut T, n: usize) {
    t.status = TaskStatus::Success;
    t.error = None;
    t.finished_at = Some(nth(4, n));
    t.lease_expires_at = None;
}

fn revoke<T: StoredTask>(t: &mut T, n: usize) {
    t.status = TaskStatus::Revoked;
    t.error = Some(format!("revoked by request {n}"));
    t.finished_at = Some(nth(4, n));
    t.lease_expires_at = None;
}

/// Every transition of the lifecycle raced by [`RACERS`] writers.
async fn lifecycle_races<T: StoredTask>(stores: &[Arc<dyn Store>]) {
    let (user, media) = (Uuid::new_v4(), Uuid::new_v4());
    let t = T::fresh(user, media, T::QUEUE, 0);
    t.create(&*stores[0]).await.expect("create");

    let claimed = race("claim", stores, t.id(), by_get::<T>, claim::<T>).await;
    assert_eq!((claimed.status, claimed.attempt), (TaskStatus::Started, 1));

    let reaped = race("reap", stores, t.id(), by_lapsed_list::<T>, reap::<T>).await;
    assert_eq!(
        (reaped.status, reaped.attempt),
        (TaskStatus::Retry, 2),
        "one reap, one attempt more"
    );

    let claimed = race("claim again", stores, t.id(), by_get::<T>, claim::<T>).await;
    let done = race("complete", stores, t.id(), by_get::<T>, complete::<T>).await;
    assert_eq!((done.status, done.attempt), (TaskStatus::Success, 2));
    assert_eq!(done.unit_id, claimed.unit_id, "the winning claim is kept");
    assert_eq!(done.revision(), 4, "four rounds, four writes");

    // Revoked before it ran, by many requests at once.
    let queued = T::fresh(user, media, T::QUEUE, 1);
    queued.create(&*stores[0]).await.expect("create");
    let revoked = race("revoke", stores, queued.id(), by_get::<T>, revoke::<T>).await;
    assert_eq!(revoked.status, TaskStatus::Revoked);

    // A running task its unit completes while revokes and reapers come: one of them.
    let contested = T::fresh(user, media, T::QUEUE, 2);
    contested.create(&*stores[0]).await.expect("create");
    race("claim", stores, contested.id(), by_get::<T>, claim::<T>).await;
    let settled = race(
        "complete, revoke or reap",
        stores,
        contested.id(),
        by_get::<T>,
        |t, n| match n % 3 {
            0 => complete(t, n),
            1 => revoke(t, n),
            _ => reap(t, n),
        },
    )
    .await;
    assert!(matches!(
        settled.status,
        TaskStatus::Success | TaskStatus::Revoked | TaskStatus::Retry
    ));

    assert_eq!(
        T::list_all(&*stores[0]).await,
        (3, vec![done, revoked, settled]),
        "nothing lost, nothing doubled"
    );
}

async fn lease_races(stores: Vec<Arc<dyn Store>>) {
    const LOOPS: &str = "loops";
    let ttl = Duration::seconds(3);
    let holder = |n: usize| format!("replica-{n:02}");

    // All replicas start at once on a free lease: one takes it.
    let first = lease_round(&stores, LOOPS, (0..RACERS).collect(), ttl).await;
    let others: Vec<usize> = (0..RACERS).filter(|n| *n != first).collect();

    // The holder renews it (from any handle) before it lapses; the others cannot take it,
    // even past the first term.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for store in &stores {
        assert!(
            store
                .acquire_lease(LOOPS, &holder(first), ttl)
                .await
                .expect("renew"),
            "the holder renews"
        );
    }
    let renewed = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let refused = lease_attempts(&stores, LOOPS, others.clone(), ttl).await;
    assert!(
        renewed.elapsed() < std::time::Duration::from_secs(3),
        "too slow to see the renewed lease running ({:?})",
        renewed.elapsed()
    );
    assert_eq!(refused, Vec::<usize>::new(), "nobody takes a running lease");
    // Another lease is another name.
    assert!(
        stores[0]
            .acquire_lease("reaper", &holder(others[0]), ttl)
            .await
            .expect("acquire")
    );
    assert!(
        !stores[0]
            .acquire_lease("reaper", &holder(first), ttl)
            .await
            .expect("acquire")
    );

    // The holder stops renewing: once it lapses, exactly one of the others takes it.
    tokio::time::sleep(std::time::Duration::from_millis(3_300).saturating_sub(renewed.elapsed()))
        .await;
    let second = lease_round(&stores, LOOPS, others.clone(), ttl).await;
    assert_ne!(second, first);
    assert!(
        !stores[0]
            .acquire_lease(LOOPS, &holder(first), ttl)
            .await
            .expect("acquire"),
        "the old holder lost it"
    );

    // Releasing someone else's lease does nothing; the holder's release frees it at once.
    stores[0]
        .release_lease(LOOPS, &holder(first))
        .await
        .expect("release");
    assert!(
        !stores[0]
            .acquire_lease(LOOPS, &holder(first), ttl)
            .await
            .expect("acquire")
    );
    stores[stores.len() - 1]
        .release_lease(LOOPS, &holder(second))
        .await
        .expect("release");
    let rest = (0..RACERS).filter(|n| *n != second).collect();
    let third = lease_round(&stores, LOOPS, rest, ttl).await;
    assert!(
        !stores[0]
            .acquire_lease(LOOPS, &holder(second), ttl)
            .await
            .expect("acquire"),
        "{} holds it now",
        holder(third)
    );
}

/// Each lease name is its own: taking, renewing or releasing one never touches another, even
/// a lapsed one.
async fn leases_are_apart(store: &dyn Store) {
    let (ttl, lapsed) = (Duration::seconds(60), Duration::zero());
    assert!(
        store
            .acquire_lease("a", "replica-1", lapsed)
            .await
            .expect("acquire")
    );
    assert!(
        store
            .acquire_lease("b", "replica-2", ttl)
            .await
            .expect("acquire")
    );
    assert!(
        !store
            .acquire_lease("b", "replica-3", ttl)
            .await
            .expect("acquire"),
        "b is held"
    );
    assert!(
        store
            .acquire_lease("a", "replica-3", ttl)
            .await
            .expect("acquire"),
        "a lapsed"
    );
    assert!(
        store
            .acquire_lease("c", "replica-1", lapsed)
            .await
            .expect("acquire")
    );
    assert!(
        store
            .acquire_lease("b", "replica-2", ttl)
            .await
            .expect("acquire"),
        "its holder renews b beside a lapsed c"
    );
    store
        .release_lease("a", "replica-3")
        .await
        .expect("release");
    assert!(
        !store
            .acquire_lease("b", "replica-1", ttl)
            .await
            .expect("acquire"),
        "b is held"
    );
    assert!(
        store
            .acquire_lease("a", "replica-1", ttl)
            .await
            .expect("acquire"),
        "a is free"
    );
    assert!(
        !store
            .acquire_lease("a", "replica-2", ttl)
            .await
            .expect("acquire"),
        "a is held"
    );
    assert!(
        store
            .acquire_lease("c", "replica-2", ttl)
            .await
            .expect("acquire"),
        "c lapsed"
    );
}

/// `racers` all try to take `name` at once (racer `n` as `replica-n`, on handle
/// `n % stores.len()`); returns those who got it.
async fn lease_attempts(
    stores: &[Arc<dyn Store>],
    name: &'static str,
    racers: Vec<usize>,
    ttl: Duration,
) -> Vec<usize> {
    let all_ready = Arc::new(tokio::sync::Barrier::new(racers.len()));
    let attempts: Vec<_> = racers
        .into_iter()
        .map(|n| {
            let store = stores[n % stores.len()].clone();
            let all_ready = all_ready.clone();
            tokio::spawn(async move {
                all_ready.wait().await;
                let holder = format!("replica-{n:02}");
                (
                    n,
                    store
                        .acquire_lease(name, &holder, ttl)
                        .await
                        .expect("acquire"),
                )
            })
        })
        .collect();
    let mut won = Vec::new();
    for attempt in attempts {
        let (n, got) = attempt.await.expect("a racer panicked");
        if got {
            won.push(n);
        }
    }
    won
}

/// [`lease_attempts`] where exactly one must win; returns it.
async fn lease_round(
    stores: &[Arc<dyn Store>],
    name: &'static str,
    racers: Vec<usize>,
    ttl: Duration,
) -> usize {
    let n = racers.len();
    let won = lease_attempts(stores, name, racers, ttl).await;
    assert_eq!(
        won.len(),
        1,
        "exactly one of {n} racers takes {name}: {won:?}"
    );
    won[0]
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys.

fn idempotency(id: &str, holder: &str, expires_at: DateTime<Utc>) -> Idempotency {
    Idempotency {
        id: id.to_owned(),
        fingerprint: "body-digest".to_owned(),
        holder: holder.to_owned(),
        status: None,
        body: None,
        created_at: at(0),
        expires_at,
        lease_until: at(2),
    }
}

async fn idempotency_records_are_kept_and_changed_by_their_holder(store: &dyn Store) {
    let first = idempotency("key-a", "request-1", at(60));
    assert!(store.insert_idempotency(&first).await.expect("insert"));
    assert_eq!(
        store.get_idempotency("key-a").await.expect("get"),
        Some(first.clone())
    );
    // The id is taken: a second insert writes nothing.
    let second = idempotency("key-a", "request-2", at(90));
    assert!(
        !store
            .insert_idempotency(&second)
            .await
            .expect("insert again")
    );
    assert_eq!(
        store.get_idempotency("key-a").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(store.get_idempotency("key-b").await.expect("get"), None);

    // Only the holder finishes it, or removes it.
    let mut done = first.clone();
    done.status = Some(201);
    done.body = Some(r#"{"id":"x","é":[1,2]}"#.to_owned());
    let mut foreign = done.clone();
    foreign.holder = "request-2".to_owned();
    assert!(!store.finish_idempotency(&foreign).await.expect("finish"));
    assert!(store.finish_idempotency(&done).await.expect("finish"));
    assert_eq!(
        store.get_idempotency("key-a").await.expect("get"),
        Some(done.clone())
    );
    assert!(
        !store
            .delete_idempotency("key-a", "request-2")
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete_idempotency("key-a", "request-1")
            .await
            .expect("delete")
    );
    assert_eq!(store.get_idempotency("key-a").await.expect("get"), None);
    assert!(
        !store
            .finish_idempotency(&done)
            .await
            .expect("finish a gone one")
    );

    // Expired ones are forgotten, the others kept.
    for (id, expires) in [("old-1", at(10)), ("old-2", at(19)), ("young", at(30))] {
        assert!(
            store
                .insert_idempotency(&idempotency(id, "r", expires))
                .await
                .expect("insert")
        );
    }
    assert_eq!(
        store
            .delete_expired_idempotency(at(20))
            .await
            .expect("sweep"),
        2
    );
    assert_eq!(store.get_idempotency("old-1").await.expect("get"), None);
    assert!(store.get_idempotency("young").await.expect("get").is_some());
}

/// Racing requests with one key, on every handle: exactly one inserts it.
async fn idempotency_races(stores: Vec<Arc<dyn Store>>) {
    for round in 0..5 {
        let id = format!("raced-{round}");
        let tries = (0..RACERS).map(|n| {
            let store = stores[n % stores.len()].clone();
            let record = idempotency(&id, &format!("request-{n}"), at(60));
            tokio::spawn(async move { store.insert_idempotency(&record).await.expect("insert") })
        });
        let winner = one_winner(tries, round).await;
        let kept = stores[0]
            .get_idempotency(&id)
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(kept.holder, format!("request-{winner}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks and deliveries.

fn webhook(user_id: Uuid, task_id: Option<Uuid>, enabled: bool, minute: i64) -> WebhookRecord {
    WebhookRecord {
        webhook: Webhook {
            id: Uuid::new_v4(),
            user_id,
            url: "https://example.com/hooks/oscied?x=é".to_owned(),
            events: vec!["task.finished".to_owned(), "media".to_owned()],
            task_id,
            enabled,
            disabled_reason: (!enabled).then(|| "20 attempts failed in a row".to_owned()),
            failures: if enabled { 0 } else { 20 },
            created_at: at(minute),
            updated_at: at(minute),
            secret: None,
            revision: 0,
        },
        signing_key: "whsec_0123456789abcdef".to_owned(),
    }
}

fn delivery(
    webhook_id: Uuid,
    status: DeliveryStatus,
    next_at: Option<i64>,
    minute: i64,
) -> Delivery {
    Delivery {
        id: Uuid::new_v4(),
        webhook_id,
        user_id: Uuid::new_v4(),
        event_id: format!("1700000000000-abcdefghij-{minute}"),
        event_type: "task.finished".to_owned(),
        status,
        attempts: vec![DeliveryAttempt {
            at: at(minute),
            status: Some(503),
            latency_ms: 12,
            error: Some("the receiver answered 503 Service Unavailable".to_owned()),
        }],
        next_at: next_at.map(at),
        replay_of: None,
        body: r#"{"id":"e","type":"task.finished","data":{"n":1.5,"s":"é"}}"#.to_owned(),
        created_at: at(minute),
        finished_at: None,
        expires_at: at(minute + 100),
        revision: 0,
    }
}

async fn webhooks_round_trip_and_filter(store: &dyn Store) {
    let (alice, bob, task) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let a = webhook(alice, None, true, 1);
    let b = webhook(alice, Some(task), true, 2);
    let c = webhook(bob, None, false, 3);
    for hook in [&a, &b, &c] {
        store.create_webhook(hook).await.expect("create");
    }
    assert_conflict(store.create_webhook(&a).await, "id");
    assert_eq!(
        store.get_webhook(a.webhook.id).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.get_webhook(Uuid::new_v4()).await.expect("get"), None);
    let listed = |filter: WebhookFilter| async move {
        let page = store
            .list_webhooks(&filter, &opts("created_at", false, 0, 100))
            .await
            .expect("list");
        let ids: Vec<Uuid> = page.items.iter().map(|h| h.webhook.id).collect();
        assert_eq!(page.total, ids.len() as u64);
        ids
    };
    let all = WebhookFilter::default();
    assert_eq!(
        listed(all.clone()).await,
        [a.webhook.id, b.webhook.id, c.webhook.id]
    );
    let alices = WebhookFilter {
        user_id: Some(alice),
        ..all.clone()
    };
    assert_eq!(listed(alices).await, [a.webhook.id, b.webhook.id]);
    let subscriptions = WebhookFilter {
        task_id: Some(None),
        ..all.clone()
    };
    assert_eq!(listed(subscriptions).await, [a.webhook.id, c.webhook.id]);
    let callbacks = WebhookFilter {
        task_id: Some(Some(task)),
        ..all.clone()
    };
    assert_eq!(listed(callbacks).await, [b.webhook.id]);
    let enabled = WebhookFilter {
        task_id: Some(None),
        enabled: Some(true),
        ..all.clone()
    };
    assert_eq!(listed(enabled).await, [a.webhook.id]);
    let disabled = WebhookFilter {
        enabled: Some(false),
        ..all.clone()
    };
    assert_eq!(listed(disabled).await, [c.webhook.id]);

    // Fenced: a stale copy is refused.
    let mut fresh = a.clone();
    fresh.webhook.failures = 3;
    assert!(store.update_webhook(&mut fresh).await.expect("update"));
    assert_eq!(fresh.webhook.revision, 1);
    let mut stale = a.clone();
    assert!(
        !store
            .update_webhook(&mut stale)
            .await
            .expect("update stale")
    );
    assert_eq!(
        store.get_webhook(a.webhook.id).await.expect("get"),
        Some(fresh.clone())
    );

    // Deleting one takes its deliveries along, and no one else's.
    let mine = delivery(a.webhook.id, DeliveryStatus::Pending, Some(5), 5);
    let theirs = delivery(c.webhook.id, DeliveryStatus::Pending, Some(5), 5);
    store.create_delivery(&mine).await.expect("create delivery");
    store
        .create_delivery(&theirs)
        .await
        .expect("create delivery");
    assert!(store.delete_webhook(a.webhook.id).await.expect("delete"));
    assert!(
        !store
            .delete_webhook(a.webhook.id)
            .await
            .expect("delete again")
    );
    assert_eq!(store.get_webhook(a.webhook.id).await.expect("get"), None);
    assert_eq!(store.get_delivery(mine.id).await.expect("get"), None);
    assert_eq!(
        store.get_delivery(theirs.id).await.expect("get"),
        Some(theirs)
    );
}

async fn deliveries_round_trip_filter_and_expire(store: &dyn Store) {
    let (hook, other) = (Uuid::new_v4(), Uuid::new_v4());
    let due = delivery(hook, DeliveryStatus::Pending, Some(10), 1);
    let later = delivery(hook, DeliveryStatus::Pending, Some(30), 2);
    let mut done = delivery(hook, DeliveryStatus::Delivered, None, 3);
    done.finished_at = Some(at(3));
    done.replay_of = Some(due.id);
    let elsewhere = delivery(other, DeliveryStatus::Pending, Some(5), 4);
    for d in [&due, &later, &done, &elsewhere] {
        store.create_delivery(d).await.expect("create");
    }
    assert_eq!(
        store.get_delivery(done.id).await.expect("get"),
        Some(done.clone())
    );
    let listed = |filter: DeliveryFilter, sort: &'static str, descending: bool| async move {
        let page = store
            .list_deliveries(&filter, &opts(sort, descending, 0, 100))
            .await
            .expect("list");
        page.items.iter().map(|d| d.id).collect::<Vec<Uuid>>()
    };
    let of_hook = DeliveryFilter {
        webhook_id: Some(hook),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        listed(of_hook.clone(), "created_at", true).await,
        [done.id, later.id, due.id]
    );
    let delivered = DeliveryFilter {
        status: Some(DeliveryStatus::Delivered),
        ..of_hook.clone()
    };
    assert_eq!(listed(delivered, "created_at", false).await, [done.id]);
    // Due: pending with `next_at` before the bound, to the millisecond.
    let due_at = |t: DateTime<Utc>| DeliveryFilter {
        due_before: Some(t),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        listed(due_at(at(10)), "next_at", false).await,
        [elsewhere.id]
    );
    assert_eq!(
        listed(due_at(at(10) + Duration::milliseconds(1)), "next_at", false).await,
        [elsewhere.id, due.id]
    );
    assert_eq!(
        listed(due_at(at(60)), "next_at", false).await,
        [elsewhere.id, due.id, later.id]
    );

    // Fenced, and an update keeps every field.
    let mut sent = due.clone();
    sent.status = DeliveryStatus::Delivered;
    sent.next_at = None;
    sent.finished_at = Some(at(11));
    sent.attempts.push(DeliveryAttempt {
        at: at(11),
        status: Some(204),
        latency_ms: 3,
        error: None,
    });
    assert!(store.update_delivery(&mut sent).await.expect("update"));
    assert!(
        !store
            .update_delivery(&mut due.clone())
            .await
            .expect("update stale")
    );
    assert_eq!(store.get_delivery(due.id).await.expect("get"), Some(sent));
    assert_eq!(
        listed(due_at(at(60)), "next_at", false).await,
        [elsewhere.id, later.id]
    );

    // Expired ones are forgotten (`expires_at` = created + 100 minutes here).
    assert_eq!(
        store
            .delete_expired_deliveries(at(102) + Duration::seconds(1))
            .await
            .expect("sweep"),
        2
    );
    assert_eq!(store.get_delivery(due.id).await.expect("get"), None);
    assert!(store.get_delivery(done.id).await.expect("get").is_some());
}

/// N senders claim one due delivery from the same read: exactly one wins.
async fn delivery_claim_races(stores: Vec<Arc<dyn Store>>) {
    for round in 0..5 {
        let first = delivery(Uuid::new_v4(), DeliveryStatus::Pending, Some(1), round);
        stores[0].create_delivery(&first).await.expect("create");
        let read = stores[0]
            .get_delivery(first.id)
            .await
            .expect("get")
            .expect("kept");
        let tries = (0..RACERS).map(|n| {
            let store = stores[n % stores.len()].clone();
            let mut claim = read.clone();
            claim.next_at = Some(at(100 + n as i64));
            tokio::spawn(async move { store.update_delivery(&mut claim).await.expect("claim") })
        });
        let winner = one_winner(tries, round).await as i64;
        let kept = stores[0]
            .get_delivery(first.id)
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(kept.next_at, Some(at(100 + winner)));
        assert_eq!(kept.revision, 1);
    }
}

/// Await the racers of one round: the index of the one that won (exactly one must).
async fn one_winner(
    tries: impl Iterator<Item = tokio::task::JoinHandle<bool>>,
    round: impl std::fmt::Display,
) -> usize {
    let won: Vec<bool> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|joined| joined.expect("the racer ran"))
        .collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "round {round}: {won:?}"
    );
    won.iter().position(|w| *w).expect("a winner")
}
