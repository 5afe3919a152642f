//! Live events (docs/architecture.md §16): what happens to tasks, medias and units, as it
//! happens, for the event stream (`GET /api/v1/events`).
//!
//! The domain emits an [`Event`] after each winning write ([`Hub::emit`]); the hub gives it an
//! id, keeps it for [`WINDOW`] (so a client reconnecting with `Last-Event-ID` is sent what it
//! missed) and hands it to every live stream of this process. With several replicas each one
//! also broadcasts its own events through the broker ([`TOPIC`], a RabbitMQ fanout exchange)
//! and takes in the others', so a client on any replica sees every event; each replica's
//! window holds them all. A replica that may have missed some (its subscription broke, a
//! slow stream fell behind) tells the affected clients with a `reset`: reload, then carry on.
//!
//! A component of the `AppState` every handler holds: it knows events, not tasks; the task
//! engine, medias and units build them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use oscied_protocol::broker::{Broadcast, Broker};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::locks::locked;
use crate::models::{now, ts};

/// The broker topic the replicas share their events on.
pub const TOPIC: &str = "events";
/// How long events are kept for clients that reconnect.
pub const WINDOW: Duration = Duration::from_secs(600);
/// At most this many are kept, whatever their age (a burst of progress).
const MAX_KEPT: usize = 50_000;
/// How far a stream may fall behind before it is sent a `reset` instead.
const LIVE_BACKLOG: usize = 2048;
/// At most one progress event per task this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Events waiting to be broadcast to the other replicas while the broker is away.
const FAN_OUT_BACKLOG: usize = 10_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// A task was created (data: `task`).
    #[serde(rename = "task.created")]
    TaskCreated,
    /// A task changed status and is not over (data: `from`, `task`).
    #[serde(rename = "task.status")]
    TaskStatus,
    /// A running task reported progress, at most once a second (data: `status`, `progress`).
    #[serde(rename = "task.progress")]
    TaskProgress,
    /// A task reached a final status: SUCCESS, FAILURE or REVOKED (data: `from`, `task`).
    #[serde(rename = "task.finished")]
    TaskFinished,
    /// A media was created or changed status (data: `from`, null for a new one; `media`).
    #[serde(rename = "media.status")]
    MediaStatus,
    /// A publication's URL was added to a media (data: `publisher_task_id`, `url`, `media`).
    #[serde(rename = "media.published")]
    MediaPublished,
    /// A publication's URL was removed from a media (same data).
    #[serde(rename = "media.unpublished")]
    MediaUnpublished,
    /// A unit came online: new, or back after silence (data: `unit`).
    #[serde(rename = "unit.online")]
    UnitOnline,
    /// A unit went silent past its heartbeats (data: `unit`).
    #[serde(rename = "unit.offline")]
    UnitOffline,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::TaskCreated,
        EventType::TaskStatus,
        EventType::TaskProgress,
        EventType::TaskFinished,
        EventType::MediaStatus,
        EventType::MediaPublished,
        EventType::MediaUnpublished,
        EventType::UnitOnline,
        EventType::UnitOffline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TaskCreated => "task.created",
            EventType::TaskStatus => "task.status",
            EventType::TaskProgress => "task.progress",
            EventType::TaskFinished => "task.finished",
            EventType::MediaStatus => "media.status",
            EventType::MediaPublished => "media.published",
            EventType::MediaUnpublished => "media.unpublished",
            EventType::UnitOnline => "unit.online",
            EventType::UnitOffline => "unit.offline",
        }
    }

    /// Whether it tells of a task created or changing status (what a list's total counts);
    /// progress does not.
    pub fn changes_a_task(self) -> bool {
        matches!(
            self,
            EventType::TaskCreated | EventType::TaskStatus | EventType::TaskFinished
        )
    }

    /// The types a filter word names: one type (`task.status`), or every type of a subject
    /// (`task`, `media`, `unit`, also written `task.*`). None when it names none.
    pub fn named(word: &str) -> Option<Vec<EventType>> {
        let subject = word.strip_suffix(".*").unwrap_or(word);
        let found: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|t| t.as_str() == word || t.as_str().split('.').next() == Some(subject))
            .collect();
        (!found.is_empty()).then_some(found)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as streamed (the SSE `data`) and as delivered to webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Unique and opaque; send it back as `Last-Event-ID` to resume after it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "ts")]
    pub at: DateTime<Utc>,
    /// The owner of the task or media; null for a unit's event (every user sees those).
    pub user_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    /// `transform` or `publisher`, for a task's event.
    pub task_kind: Option<String>,
    /// The media the event is about: a media's own, the output of a transform task, the
    /// published media of a publisher task.
    pub media_id: Option<Uuid>,
    /// The input media of a transform task's event.
    pub media_in_id: Option<Uuid>,
    pub unit_id: Option<String>,
    /// What changed, and the record as it is now (see [`EventType`]).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    /// An event without its id yet ([`Hub::emit`] gives it one).
    pub fn new(kind: EventType, data: serde_json::Value) -> Event {
        Event {
            id: String::new(),
            kind,
            at: now(),
            user_id: None,
            task_id: None,
            task_kind: None,
            media_id: None,
            media_in_id: None,
            unit_id: None,
            data,
        }
    }

    /// Whether this event concerns media `id`.
    pub fn about_media(&self, id: Uuid) -> bool {
        self.media_id == Some(id) || self.media_in_id == Some(id)
    }
}

/// What a stream is sent next.
#[derive(Debug, Clone)]
pub enum Live {
    Event(Arc<Event>),
    /// Events may have been missed: reload what is shown, then carry on.
    Reset(&'static str),
}

/// What a new stream is sent before the live events.
#[derive(Debug)]
pub enum Replay {
    /// The events after the client's last one (none for a new client).
    Events(Vec<Arc<Event>>),
    /// Its last event is no longer known (older than the window, or this replica started
    /// since): a `reset`.
    Reset(&'static str),
}

/// The events kept for reconnecting clients, oldest first; `base` numbers the first.
#[derive(Default)]
struct Window {
    events: VecDeque<(Instant, Arc<Event>)>,
    base: u64,
    by_id: HashMap<String, u64>,
}

impl Window {
    fn push(&mut self, event: Arc<Event>) {
        let at = Instant::now();
        while let Some((kept_at, _)) = self.events.front() {
            if self.events.len() < MAX_KEPT && at.duration_since(*kept_at) < WINDOW {
                break;
            }
            if let Some((_, old)) = self.events.pop_front() {
                self.by_id.remove(&old.id);
            }
            self.base += 1;
        }
        self.by_id
            .insert(event.id.clone(), self.base + self.events.len() as u64);
        self.events.push_back((at, event));
    }

    fn after(&self, id: &str) -> Option<Vec<Arc<Event>>> {
        let at = *self.by_id.get(id)?;
        let skip = (at + 1 - self.base) as usize;
        Some(
            self.events
                .iter()
                .skip(skip)
                .map(|(_, e)| e.clone())
                .collect(),
        )
    }

    fn clear(&mut self) {
        self.base += self.events.len() as u64;
        self.events.clear();
        self.by_id.clear();
    }
}

/// An event as the replicas send it to each other.
#[derive(Serialize, Deserialize)]
struct Wire {
    origin: String,
    event: Event,
}

/// This process's events: the window, the live streams, the fan-out to other replicas.
pub struct Hub {
    /// This process in event ids (random: a restarted replica is another origin), and how
    /// it skips its own events coming back from the broker.
    origin: String,
    seq: AtomicU64,
    /// How many task creations and status changes this process has seen, its own and the
    /// other replicas' (a gap counts as one): a list's total counted since is still right
    /// while it stays.
    task_changes: AtomicU64,
    /// The window and the live channel change together, under this lock: a new stream's
    /// replay and its first live event neither overlap nor leave a gap.
    window: Mutex<Window>,
    live: broadcast::Sender<Live>,
    fan_out: Option<mpsc::Sender<Arc<Event>>>,
    /// When each running task last had a progress event.
    progress: Mutex<HashMap<Uuid, Instant>>,
    /// How many streams each caller has open (None: root).
    streams: Mutex<HashMap<Option<Uuid>, usize>>,
    /// Set when the orchestra stops: streams end, so that the server's graceful stop does
    /// not wait for clients that never hang up.
    closing: tokio::sync::watch::Sender<bool>,
    /// This process's own events, for whoever acts on each event once (the webhooks): each
    /// is emitted by one replica only, so each is taken here once in the cluster.
    own: std::sync::OnceLock<mpsc::Sender<Arc<Event>>>,
}

impl Hub {
    /// A hub on its own (standalone: nothing to share events with).
    pub fn local() -> Hub {
        Hub {
            origin: Uuid::new_v4().simple().to_string()[..10].to_owned(),
            seq: AtomicU64::new(0),
            task_changes: AtomicU64::new(0),
            window: Mutex::default(),
            live: broadcast::channel(LIVE_BACKLOG).0,
            fan_out: None,
            progress: Mutex::default(),
            streams: Mutex::default(),
            closing: tokio::sync::watch::Sender::new(false),
            own: std::sync::OnceLock::new(),
        }
    }

    /// The events this process emits from now on, up to `backlog` waiting (more are dropped,
    /// with a warning); one taker only (None for the next).
    pub fn take_own(&self, backlog: usize) -> Option<mpsc::Receiver<Arc<Event>>> {
        let (tx, rx) = mpsc::channel(backlog);
        self.own.set(tx).ok().map(|()| rx)
    }

    /// End every stream (the orchestra is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes true when the orchestra stops.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// A hub that shares its events with the other replicas on `broker` (and takes theirs
    /// in): two background tasks, ending when the hub is dropped.
    pub fn shared(broker: Arc<dyn Broker>) -> Arc<Hub> {
        let (tx, rx) = mpsc::channel(FAN_OUT_BACKLOG);
        let hub = Arc::new(Hub {
            fan_out: Some(tx),
            ..Hub::local()
        });
        let subscriber = broker.subscribe(TOPIC);
        tokio::spawn(send_out(rx, broker, hub.origin.clone()));
        tokio::spawn(take_in(Arc::downgrade(&hub), subscriber));
        hub
    }

    /// Give the event its id, keep it, send it to this process's streams and to the other
    /// replicas.
    pub fn emit(&self, mut event: Event) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        event.id = format!("{}-{}-{seq}", event.at.timestamp_millis(), self.origin);
        let event = Arc::new(event);
        if let Some(fan_out) = &self.fan_out
            && fan_out.try_send(event.clone()).is_err()
        {
            tracing::warn!(event = %event.id, "event not shared with the other replicas: the broker is away and the backlog is full");
        }
        if let Some(own) = self.own.get()
            && own.try_send(event.clone()).is_err()
        {
            tracing::warn!(event = %event.id, "event not handed to the webhooks: their backlog is full (the store is slow or away)");
        }
        self.accept(event);
    }

    /// Whether a progress event for `task` is due (one a second at most); counts it as sent.
    pub fn progress_due(&self, task: Uuid) -> bool {
        let mut last = locked(&self.progress);
        let at = Instant::now();
        if last
            .get(&task)
            .is_some_and(|t| at.duration_since(*t) < PROGRESS_EVERY)
        {
            return false;
        }
        if last.len() > 10_000 {
            last.retain(|_, t| at.duration_since(*t) < PROGRESS_EVERY);
        }
        last.insert(task, at);
        true
    }

    /// A task is over: forget its progress clock.
    pub fn task_over(&self, task: Uuid) {
        locked(&self.progress).remove(&task);
    }

    /// The count of task changes seen so far (see the field).
    pub fn task_changes(&self) -> u64 {
        self.task_changes.load(Ordering::SeqCst)
    }

    fn accept(&self, event: Arc<Event>) {
        if event.kind.changes_a_task() {
            self.task_changes.fetch_add(1, Ordering::SeqCst);
        }
        let mut window = locked(&self.window);
        window.push(event.clone());
        // No stream listening is fine.
        let _ = self.live.send(Live::Event(event));
    }

    /// Events may have been lost on the way here: every stream is told, and the window
    /// starts afresh (a client resuming from before now gets a reset too).
    fn gap(&self, why: &'static str) {
        self.task_changes.fetch_add(1, Ordering::SeqCst);
        let mut window = locked(&self.window);
        window.clear();
        let _ = self.live.send(Live::Reset(why));
    }

    /// A new stream: what to send first (after `last_id`, when the client resumes), and the
    /// live events from then on.
    pub fn subscribe(&self, last_id: Option<&str>) -> (Replay, broadcast::Receiver<Live>) {
        let window = locked(&self.window);
        let live = self.live.subscribe();
        let replay = match last_id {
            None => Replay::Events(Vec::new()),
            Some(id) => match window.after(id) {
                Some(events) => Replay::Events(events),
                None => Replay::Reset(
                    "the last event id is unknown here: too old, or this orchestra restarted since",
                ),
            },
        };
        (replay, live)
    }

    /// Count a stream open for `owner` unless it has `max` already; the guard counts it
    /// closed when dropped.
    pub fn open_stream(self: &Arc<Self>, owner: Option<Uuid>, max: usize) -> Option<StreamGuard> {
        let mut streams = locked(&self.streams);
        let open = streams.entry(owner).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(StreamGuard {
            hub: self.clone(),
            owner,
        })
    }
}

/// One open stream, counted against its owner's limit while alive.
pub struct StreamGuard {
    hub: Arc<Hub>,
    owner: Option<Uuid>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = locked(&self.hub.streams);
        if let Some(open) = streams.get_mut(&self.owner) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.owner);
            }
        }
    }
}

/// Broadcast this replica's events, in order; while the broker is away each waits (its
/// subscribers elsewhere will see a gap and reset anyway, but the events after come through).
async fn send_out(mut events: mpsc::Receiver<Arc<Event>>, broker: Arc<dyn Broker>, origin: String) {
    while let Some(event) = events.recv().await {
        let wire = Wire {
            origin: origin.clone(),
            event: event.as_ref().clone(),
        };
        let Ok(payload) = serde_json::to_vec(&wire) else {
            continue;
        };
        let mut pause = Duration::from_millis(100);
        loop {
            match broker.broadcast(TOPIC, &payload).await {
                Ok(()) => break,
                Err(e) => {
                    let age = (now() - event.at).to_std().unwrap_or_default();
                    if age > WINDOW {
                        tracing::warn!(event = %event.id, error = %e, "event dropped: not shared with the other replicas in time");
                        break;
                    }
                    tracing::debug!(event = %event.id, error = %e, "sharing an event failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Take the other replicas' events in, until the hub is gone.
async fn take_in(
    hub: std::sync::Weak<Hub>,
    mut subscriber: Box<dyn oscied_protocol::broker::Subscriber>,
) {
    loop {
        let got = subscriber.next().await;
        let Some(hub) = hub.upgrade() else { return };
        match got {
            Broadcast::Message(payload) => match serde_json::from_slice::<Wire>(&payload) {
                Ok(wire) if wire.origin == hub.origin => {}
                Ok(wire) => hub.accept(Arc::new(wire.event)),
                Err(e) => tracing::warn!(error = %e, "an undecodable event from another replica"),
            },
            Broadcast::Gap => {
                tracing::warn!("the event subscription was lost for a while: streams are reset");
                hub.gap("this orchestra lost the other replicas' events for a while");
            }
        }
    }
}

/// What a stream wants: some types, one task, one media (each optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Empty: every type.
    pub types: Vec<EventType>,
    pub task_id: Option<Uuid>,
    pub media_id: Option<Uuid>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&event.kind))
            && self.task_id.is_none_or(|id| event.task_id == Some(id))
            && self.media_id.is_none_or(|id| event.about_media(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventType) -> Event {
        Event::new(kind, serde_json::json!({}))
    }

    fn ids(replay: Replay) -> Vec<String> {
        match replay {
            Replay::Events(events) => events.iter().map(|e| e.id.clone()).collect(),
            Replay::Reset(why) => panic!("reset: {why}"),
        }
    }

    #[tokio::test]
    async fn a_client_resumes_after_its_last_event_or_is_reset() {
        let hub = Hub::local();
        let (replay, mut live) = hub.subscribe(None);
        assert!(ids(replay).is_empty());
        for _ in 0..5 {
            hub.emit(event(EventType::TaskStatus));
        }
        let mut seen = Vec::new();
        for _ in 0..5 {
            match live.recv().await.unwrap() {
                Live::Event(e) => seen.push(e.id.clone()),
                Live::Reset(why) => panic!("{why}"),
            }
        }
        // Ids are unique and name this process.
        assert!(seen.iter().all(|id| id.contains(&hub.origin)));
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 5);
        let (replay, _) = hub.subscribe(Some(&seen[1]));
        assert_eq!(ids(replay), seen[2..].to_vec());
        let (replay, _) = hub.subscribe(Some(&seen[4]));
        assert!(ids(replay).is_empty());
        assert!(matches!(
            hub.subscribe(Some("1-elsewhere-0")).0,
            Replay::Reset(_)
        ));
        // After a gap nothing from before can be resumed from.
        hub.gap("test");
        assert!(matches!(live.recv().await.unwrap(), Live::Reset("test")));
        assert!(matches!(hub.subscribe(Some(&seen[4])).0, Replay::Reset(_)));
    }

    #[test]
    fn the_window_drops_its_oldest_past_its_size() {
        let mut window = Window::default();
        for i in 0..(MAX_KEPT + 3) {
            let mut e = event(EventType::TaskProgress);
            e.id = i.to_string();
            window.push(Arc::new(e));
        }
        assert_eq!(window.events.len(), MAX_KEPT);
        assert!(window.after("2").is_none());
        assert_eq!(window.after("3").unwrap().len(), MAX_KEPT - 1);
        let last = (MAX_KEPT + 2).to_string();
        assert_eq!(window.after(&last).unwrap().len(), 0);
    }

    #[test]
    fn progress_is_due_once_a_second_per_task() {
        let hub = Hub::local();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(hub.progress_due(a));
        assert!(!hub.progress_due(a));
        assert!(hub.progress_due(b));
        hub.task_over(a);
        assert!(hub.progress_due(a));
    }

    #[test]
    fn filter_words_name_types_or_subjects() {
        assert_eq!(
            EventType::named("task.status"),
            Some(vec![EventType::TaskStatus])
        );
        assert_eq!(EventType::named("unit").map(|t| t.len()), Some(2));
        assert_eq!(EventType::named("media.*").map(|t| t.len()), Some(3));
        assert_eq!(EventType::named("task.nope"), None);
        assert_eq!(EventType::named(""), None);
        let media = Uuid::new_v4();
        let mut e = event(EventType::TaskStatus);
        e.media_in_id = Some(media);
        let filter = EventFilter {
            types: vec![EventType::TaskStatus],
            media_id: Some(media),
            task_id: None,
        };
        assert!(filter.matches(&e));
        e.kind = EventType::TaskCreated;
        assert!(!filter.matches(&e));
    }

    #[test]
    fn streams_are_counted_per_owner() {
        let hub = Arc::new(Hub::local());
        let owner = Some(Uuid::new_v4());
        let first = hub.open_stream(owner, 2).unwrap();
        let _second = hub.open_stream(owner, 2).unwrap();
        assert!(hub.open_stream(owner, 2).is_none());
        assert!(hub.open_stream(None, 2).is_some());
        drop(first);
        assert!(hub.open_stream(owner, 2).is_some());
    }
}
