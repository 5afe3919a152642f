//! The unit runtime (docs/architecture.md §5): [`run_unit`] runs a [`JobHandler`] as a unit.
//!
//! A unit kind is its handler: what it does with one claimed attempt, and how to remove what
//! an attempt left. Everything else is the runtime's, the same for every kind:
//!
//! - **Slots.** `concurrency` slots consume the unit's queues (and one more its own queue, when
//!   it has one). A slot holds one job; it takes the next one when the job ends, or earlier
//!   when the handler says the slot is free ([`Attempt::free_slot`]: a transform's encoder has
//!   exited while its output is probed and completed). A slot that ends before the unit stops
//!   (a panic) is started again with the same queues.
//! - **A delivery** is decoded (a job the unit cannot run ends its task FAILURE, see
//!   [`super::decode`]), skipped and acked when this unit already runs that attempt (a lost
//!   ack's redelivery), claimed with the job's attempt, then acked ([`super::claim`]). A job
//!   the handler takes without a claim (a publisher's unpublish) goes to
//!   [`JobHandler::unclaimed`] with its delivery.
//! - **The lease.** From the claim until the completion is answered a reporter sends the
//!   attempt's progress, which is also its lease heartbeat ([`super::report`]). What its
//!   answers mean, and the unit stopping, reach the work through [`Attempt::interrupted`]: a
//!   revoke (the attempt is completed REVOKED once its work stopped), a stale attempt (nothing
//!   is completed), a stop (the attempt is handed back).
//! - **The completion** is retried while the orchestra is unavailable. What the attempt left
//!   is discarded ([`JobHandler::discard`]) unless the orchestra took it: before a FAILURE or
//!   REVOKED is sent, and after a SUCCESS that was not kept ([`JobHandler::keeps`]), refused
//!   or answered stale. A stale or refused claim or completion is also told to the handler
//!   ([`JobHandler::lost`]).
//! - **Heartbeat, refused secret, stop.** The unit heartbeat, the rules of a refused node
//!   secret ([`super::secret`]: no job taken while it is refused, the unit ends with
//!   [`UnitError::SecretRefused`] once it was refused for `refused_exit_secs`), and the stop:
//!   drain for `drain_secs`, then stop the attempts still running and hand them back
//!   ([`super::drain`]), discarding their files before or after as [`JobHandler::HAND_BACK`]
//!   says. What the handler runs beside its jobs ([`Services`]) stops last.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::claim::{ack, claim};
use super::decode::decode;
use super::drain::{hand_back, wind_down};
use super::heartbeat::{UnitInfo, heartbeat};
use super::metrics::UnitMetrics;
use super::report::{Completion, LeaseEvent, Reporter, complete};
use super::{Running, UnitError, UnitLink};
use crate::broker::{Broker, Delivery};
use crate::client::NodeClient;
use crate::job::{PublishJob, TransformJob};
use crate::node::{CompleteRequest, TransformOutput, UnitKind};
use crate::queue::check_unit_queues;
use crate::task::{ProgressReport, TaskStatus};

/// A job message: which attempt at which task it is.
pub trait JobMessage: DeserializeOwned + Send + Sync + 'static {
    /// The task id and the attempt.
    fn task(&self) -> (Uuid, u32);
}

impl JobMessage for TransformJob {
    fn task(&self) -> (Uuid, u32) {
        (self.task_id, self.attempt)
    }
}

impl JobMessage for PublishJob {
    fn task(&self) -> (Uuid, u32) {
        (self.task_id, self.attempt)
    }
}

/// What a unit kind does. The runtime calls [`JobHandler::run`] for each claimed attempt and
/// settles the attempt by what it returns; the other methods have defaults that fit a unit
/// whose jobs are all claimed and whose files are its own.
pub trait JobHandler: Send + Sync + Sized + 'static {
    /// The job message the unit's queues carry.
    type Job: JobMessage;
    /// The unit's kind: its node routes, the queues it may consume, its heartbeat.
    const KIND: UnitKind;
    /// When a stopping unit removes the files of an attempt it hands back.
    const HAND_BACK: HandBack = HandBack::ThenDiscard;

    /// Once the unit is linked to the orchestra, before any job is taken: log the start,
    /// prepare, and spawn what runs beside the jobs. An error ends the unit unstarted.
    fn start(
        self: Arc<Self>,
        unit: Arc<Unit>,
    ) -> impl Future<Output = Result<Services, UnitError>> + Send {
        let _ = unit;
        async { Ok(Services::default()) }
    }

    /// `ffmpeg -version`'s first line, sent in every heartbeat, for units that run ffmpeg.
    fn ffmpeg_version(&self) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }

    /// Whether the job is claimed and run as an attempt (the default); the others go to
    /// [`JobHandler::unclaimed`].
    fn claims(&self, job: &Self::Job) -> bool {
        let _ = job;
        true
    }

    /// A job run without a claim (a publisher's unpublish: its unit holds the task since it
    /// published). The handler settles the delivery.
    fn unclaimed(
        &self,
        unit: &Unit,
        job: Self::Job,
        delivery: Delivery,
    ) -> impl Future<Output = ()> + Send {
        let _ = unit;
        async move {
            let (task, attempt) = job.task();
            tracing::error!(%task, attempt, "a job this unit does not claim was dropped");
            ack(delivery).await;
        }
    }

    /// Do the work of one claimed attempt, and say how it ended. Anything wrong with the job
    /// is a [`Ran::Failure`] with a message for the user (storage paths hidden, see
    /// [`super::hide_root`]), never a panic. The work selects on
    /// [`Attempt::interrupted`] wherever it waits, and returns [`Ran::Stopped`] once it
    /// stopped (its processes gone, its files let go) when that resolves; its files are
    /// left for [`JobHandler::discard`].
    fn run(&self, job: &Self::Job, attempt: &mut Attempt) -> impl Future<Output = Ran> + Send;

    /// Remove what the attempt left that the orchestra did not take (its work files, its
    /// publication). Idempotent: it may be called when there is nothing left.
    fn discard(&self, unit: &Unit, job: &Self::Job) -> impl Future<Output = ()> + Send;

    /// Whether a SUCCESS the orchestra answered `answered` keeps the attempt's output (else
    /// it is discarded). Default: only when answered SUCCESS.
    fn keeps(&self, answered: TaskStatus) -> bool {
        answered == TaskStatus::Success
    }

    /// The orchestra said the job is not (or no longer) this unit's: its claim or completion
    /// was refused or answered stale.
    fn lost(&self, job: &Self::Job) {
        let _ = job;
    }
}

/// When a stopping unit removes the files of an attempt it hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandBack {
    /// Hand back, then remove: the files are the attempt's own, and another unit starts on
    /// the task sooner.
    ThenDiscard,
    /// Remove, then hand back: the files are served, and nothing may stay served once the
    /// orchestra no longer says this unit holds it.
    DiscardFirst,
}

/// How an attempt's work ended.
#[derive(Debug)]
pub enum Ran {
    /// Complete SUCCESS with this output.
    Success(Output),
    /// Complete FAILURE with this message (what was wrong, for the user).
    Failure(String),
    /// Stopped as [`Attempt::interrupted`] asked.
    Stopped(Interrupted),
}

/// What a SUCCESS hands the orchestra: a transform's output, a publication's URL.
#[derive(Debug, Default)]
pub struct Output {
    pub output: Option<TransformOutput>,
    pub publish_uri: Option<String>,
}

/// Why the runtime stops a running attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// The task was revoked: completed REVOKED once the work stopped.
    Revoked,
    /// The attempt is not current any more: nothing is completed.
    Stale(String),
    /// The unit stops: the attempt is handed back.
    Shutdown,
}

/// A work stopped because [`Attempt::interrupted`] asked; only that makes one.
#[derive(Debug)]
pub struct Interrupted(Interrupt);

impl Interrupted {
    pub fn reason(&self) -> &Interrupt {
        &self.0
    }
}

/// What a unit is, whatever it does. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// How the unit calls itself on the node API (`PUT /node/units/{unit_id}`).
    pub unit_id: String,
    /// The queues its `concurrency` slots consume (and its heartbeat names).
    pub queues: Vec<String>,
    /// A queue for this unit alone, consumed by one slot of its own besides (a publisher's
    /// unpublish jobs); not named in the heartbeat.
    pub own_queue: Option<String>,
    /// Slots (≥ 1).
    pub concurrency: u32,
    /// Seconds between unit heartbeats (≥ 1).
    pub heartbeat_secs: u64,
    /// On stop, how long running attempts may go on before they are handed back (0: at once).
    pub drain_secs: u64,
    /// How long a refused node secret is retried before the unit ends with failure.
    pub refused_exit_secs: u64,
}

/// What the slots, the heartbeat and the handler share: the spec, the link to the orchestra,
/// the attempts running, the broker.
pub struct Unit {
    pub spec: UnitSpec,
    pub link: UnitLink,
    pub running: Running,
    pub broker: Arc<dyn Broker>,
    /// What the unit's `/metrics` shows; the runtime counts the attempts' outcomes.
    pub metrics: Arc<UnitMetrics>,
}

/// What a handler runs beside its jobs for the unit's life (the publisher's HTTP server and
/// reconcile loop); stopped once every attempt ended or was handed back.
#[derive(Debug, Default)]
pub struct Services {
    vital: Vec<Vital>,
    helpers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Vital {
    what: &'static str,
    task: JoinHandle<()>,
    grace: Duration,
}

impl Services {
    /// A task the unit cannot work without (`what`: "the HTTP server"): the unit stops when
    /// it ends. Once the unit stopped it may go on for `grace` (it sees the unit stopping on
    /// [`UnitLink::stopped`]), then it is aborted.
    pub fn vital(&mut self, what: &'static str, task: JoinHandle<()>, grace: Duration) {
        self.vital.push(Vital { what, task, grace });
    }

    /// A task aborted once the unit stopped.
    pub fn helper(&mut self, task: JoinHandle<()>) {
        self.helpers.push(task);
    }

    /// Resolves with the name of a vital task that ended; never when there is none.
    async fn ended(&mut self) -> &'static str {
        if self.vital.is_empty() {
            return std::future::pending().await;
        }
        let tasks = self.vital.iter_mut().map(|v| &mut v.task);
        let (ended, index, _) = futures_util::future::select_all(tasks).await;
        let vital = self.vital.remove(index);
        if let Err(e) = ended {
            tracing::error!("{} failed: {e}", vital.what);
        }
        vital.what
    }

    async fn stop(self) {
        for helper in self.helpers {
            helper.abort();
        }
        for mut vital in self.vital {
            if tokio::time::timeout(vital.grace, &mut vital.task)
                .await
                .is_err()
            {
                tracing::warn!(
                    "{} still busy {:?} after the unit stopped: closed",
                    vital.what,
                    vital.grace
                );
                vital.task.abort();
            }
        }
    }
}

/// One claimed attempt, as its work sees it. Dropped when the attempt is settled.
pub struct Attempt {
    unit: Arc<Unit>,
    task: Uuid,
    attempt: u32,
    lease_secs: u64,
    reporter: Reporter,
    /// What the reporter sends.
    progress: watch::Sender<Option<ProgressReport>>,
    /// Forwards a followed progress channel into `progress`.
    follow: Option<JoinHandle<()>>,
    interrupt: Option<Interrupt>,
    /// Dropped or sent: the slot takes its next job.
    slot: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .field("lease_secs", &self.lease_secs)
            .field("interrupt", &self.interrupt)
            .finish()
    }
}

impl Attempt {
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    pub fn task(&self) -> Uuid {
        self.task
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The lease the claim granted, in seconds.
    pub fn lease_secs(&self) -> u64 {
        self.lease_secs
    }

    /// Report this progress (sent within a second).
    pub fn report(&self, report: ProgressReport) {
        self.progress.send_replace(Some(report));
    }

    /// Report what `progress` says from now on (an encoder's own progress), instead of what
    /// was followed before.
    pub fn follow(&mut self, mut progress: watch::Receiver<Option<ProgressReport>>) {
        if let Some(before) = self.follow.take() {
            before.abort();
        }
        let reports = self.progress.clone();
        self.follow = Some(tokio::spawn(async move {
            loop {
                if let Some(report) = progress.borrow_and_update().clone() {
                    reports.send_replace(Some(report));
                }
                // An error: the encoder ended, nothing new will come.
                if progress.changed().await.is_err() {
                    return;
                }
            }
        }));
    }

    /// Resolves once the work must stop: the task was revoked, the attempt is stale, or the
    /// unit stops. Cancel-safe; once resolved it resolves at once, with the same reason.
    pub async fn interrupted(&mut self) -> Interrupted {
        if let Some(reason) = &self.interrupt {
            return Interrupted(reason.clone());
        }
        let reason = tokio::select! {
            event = self.reporter.events.recv() => match event {
                Some(LeaseEvent::Cancel) => Interrupt::Revoked,
                Some(LeaseEvent::Stale(message)) => Interrupt::Stale(message),
                // The reporter never ends without an event; treat it as a lost lease.
                None => Interrupt::Stale("the lease reporter ended".into()),
            },
            () = self.unit.link.stopped() => Interrupt::Shutdown,
        };
        self.interrupt = Some(reason.clone());
        Interrupted(reason)
    }

    /// The slot may take its next job while this one goes on (its encoder has exited).
    pub fn free_slot(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = slot.send(());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(follow) = self.follow.take() {
            follow.abort();
        }
    }
}

/// Run `handler` as a unit until `shutdown` resolves; then take no new job, let the running
/// attempts finish for up to `drain_secs`, stop and hand back those still running, stop the
/// handler's [`Services`] and return. Ends the same way, with an error, when the orchestra
/// refused the node secret for `refused_exit_secs`; with an error at once when the spec is
/// refused (queues of the other kind) or the handler's start fails. Meant for `tokio::spawn`.
/// The attempts' outcomes are counted in `metrics`.
pub async fn run_unit<H: JobHandler>(
    handler: H,
    mut spec: UnitSpec,
    broker: Arc<dyn Broker>,
    client: NodeClient,
    metrics: Arc<UnitMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), UnitError> {
    let kind = H::KIND.as_str();
    spec.concurrency = spec.concurrency.max(1);
    spec.heartbeat_secs = spec.heartbeat_secs.max(1);
    // The binaries' flags refuse them already; a library caller gets the same rule.
    if let Err(e) = check_unit_queues(H::KIND, &spec.queues) {
        tracing::error!("{kind} unit not started: {e}");
        return Err(UnitError::NotStarted(e.to_string()));
    }
    let (mut link, stop) = UnitLink::new(client, spec.unit_id.clone(), H::KIND);
    link.set_refused_exit(Duration::from_secs(spec.refused_exit_secs));
    let unit = Arc::new(Unit {
        spec,
        link,
        running: Running::default(),
        broker,
        metrics,
    });
    let handler = Arc::new(handler);
    let mut services = handler.clone().start(unit.clone()).await?;
    let mut slots = JoinSet::new();
    // Each slot's number and queues by task id, to start a slot that died with the same ones.
    let mut slot_queues = HashMap::new();
    let mut queue_sets = vec![unit.spec.queues.clone(); unit.spec.concurrency as usize];
    queue_sets.extend(unit.spec.own_queue.clone().map(|own| vec![own]));
    for (number, queues) in queue_sets.into_iter().enumerate() {
        let started = slots.spawn(slot(unit.clone(), handler.clone(), number, queues.clone()));
        slot_queues.insert(started.id(), (number, queues));
    }
    let heartbeat = tokio::spawn({
        let (unit, handler) = (unit.clone(), handler.clone());
        async move {
            let info = UnitInfo {
                queues: unit.spec.queues.clone(),
                concurrency: unit.spec.concurrency,
                heartbeat_secs: unit.spec.heartbeat_secs,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                // Read once: it does not change under a running unit.
                ffmpeg_version: handler.ffmpeg_version().await,
            };
            heartbeat(&unit.link, info, &unit.running).await;
        }
    });
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ended = Ok(());
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            failure = unit.link.refused_for_good() => {
                tracing::error!("{failure}; the unit stops");
                ended = Err(failure);
                break;
            }
            Some(slot_ended) = slots.join_next_with_id() => {
                // A slot only ends on shutdown; a panic must not shrink the unit.
                let (id, error) = match slot_ended {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e)),
                };
                let (number, queues) = slot_queues
                    .remove(&id)
                    .unwrap_or_else(|| (0, unit.spec.queues.clone()));
                tracing::error!(
                    slot = number,
                    queues = %super::log::List(&queues),
                    error = error.as_ref().map(tracing::field::display),
                    "a job slot ended unexpectedly; restarting it"
                );
                let started = slots.spawn(slot(unit.clone(), handler.clone(), number, queues.clone()));
                slot_queues.insert(started.id(), (number, queues));
            }
            what = services.ended() => {
                // The unit could take jobs but not do all its work (a publisher not serving).
                tracing::error!("{what} stopped; stopping the unit");
                break;
            }
        }
    }
    tracing::info!("{kind} unit stopping");
    wind_down(&stop, &unit.running, &mut slots, unit.spec.drain_secs).await;
    heartbeat.abort();
    services.stop().await;
    tracing::info!("{kind} unit stopped");
    ended
}

/// One slot: one consumer, one job at a time (see the module docs).
async fn slot<H: JobHandler>(unit: Arc<Unit>, handler: Arc<H>, number: usize, queues: Vec<String>) {
    let mut consumer = unit.broker.consumer(&queues);
    let mut jobs = JoinSet::new();
    loop {
        // None once draining; waits while the orchestra refuses the node secret.
        let Some(delivery) = unit.link.next_delivery(consumer.as_mut()).await else {
            break;
        };
        let (free, freed) = oneshot::channel();
        jobs.spawn(take(unit.clone(), handler.clone(), number, delivery, free));
        // Resolves when the handler frees the slot, or when the job ends (the sender is
        // dropped with it).
        let _ = freed.await;
        while let Some(ended) = jobs.try_join_next() {
            log_panic(ended);
        }
        if unit.link.is_draining() {
            break;
        }
    }
    // Jobs still running (draining), completing or handing back finish first.
    while let Some(ended) = jobs.join_next().await {
        log_panic(ended);
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!("a job failed: {e}");
    }
}

/// One delivery, from its decoding to its attempt's settling.
async fn take<H: JobHandler>(
    unit: Arc<Unit>,
    handler: Arc<H>,
    slot: usize,
    delivery: Delivery,
    free: oneshot::Sender<()>,
) {
    let link = &unit.link;
    // A job this unit cannot run (the other kind's, a malformed one) ends its task FAILURE.
    let Some((job, delivery)) = decode::<H::Job>(link, delivery).await else {
        return;
    };
    if !handler.claims(&job) {
        handler.unclaimed(&unit, job, delivery).await;
        return;
    }
    let (task, attempt) = job.task();
    let Some(_running) = unit.running.register(task, attempt) else {
        tracing::info!(%task, attempt, "redelivery of a job this unit runs: acked and skipped");
        ack(delivery).await;
        return;
    };
    let Some(claimed) = claim(link, task, attempt, delivery).await else {
        handler.lost(&job);
        return;
    };
    tracing::debug!(%task, attempt, slot, lease_secs = claimed.lease_secs, "task claimed");
    let (progress, reports) = watch::channel(None);
    // Lives until the attempt is settled, so the lease holds through the work, what follows
    // it (a probe of the output) and a completion that waits for an orchestra restart.
    let reporter = Reporter::spawn(link.clone(), task, attempt, claimed.lease_secs, reports);
    let mut current = Attempt {
        unit: unit.clone(),
        task,
        attempt,
        lease_secs: claimed.lease_secs,
        reporter,
        progress,
        follow: None,
        interrupt: None,
        slot: Some(free),
    };
    let ran = handler.run(&job, &mut current).await;
    settle(&unit, &*handler, &job, ran).await;
    drop(current);
}

/// Complete the attempt as its work ended, and remove what the orchestra did not take.
async fn settle<H: JobHandler>(unit: &Unit, handler: &H, job: &H::Job, ran: Ran) {
    let (task, attempt) = job.task();
    unit.metrics.task_ended(H::KIND, outcome(&ran));
    let (status, error, output) = match ran {
        Ran::Success(output) => (TaskStatus::Success, None, output),
        Ran::Failure(message) => {
            tracing::warn!(%task, attempt, "job failed: {message}");
            handler.discard(unit, job).await;
            (TaskStatus::Failure, Some(message), Output::default())
        }
        Ran::Stopped(Interrupted(Interrupt::Revoked)) => {
            handler.discard(unit, job).await;
            tracing::info!(%task, attempt, "job revoked");
            (TaskStatus::Revoked, None, Output::default())
        }
        Ran::Stopped(Interrupted(Interrupt::Stale(message))) => {
            handler.discard(unit, job).await;
            tracing::warn!(%task, attempt, "attempt is stale, work dropped: {message}");
            return;
        }
        Ran::Stopped(Interrupted(Interrupt::Shutdown)) => {
            tracing::info!(%task, attempt, "job stopped by shutdown: handing it back");
            give_back(unit, handler, job, true).await;
            return;
        }
    };
    let request = CompleteRequest {
        unit_id: unit.link.unit_id.clone(),
        attempt,
        status,
        error,
        output: output.output,
        publish_uri: output.publish_uri,
    };
    // Only a SUCCESS still has its output; anything else was discarded before.
    let success = status == TaskStatus::Success;
    match complete(&unit.link, task, &request).await {
        Completion::Answered(answer) => {
            tracing::info!(
                %task, attempt, asked = %status, status = %answer.status,
                uri = request.publish_uri.as_deref(), "job completed"
            );
            if success && !handler.keeps(answer.status) {
                handler.discard(unit, job).await;
            }
        }
        Completion::Stale(message) => {
            tracing::warn!(%task, attempt, "completion refused as stale: {message}");
            handler.lost(job);
            if success {
                handler.discard(unit, job).await;
            }
        }
        // Logged by `complete`; the lease lapses and the task is retried.
        Completion::Refused(..) => {
            handler.lost(job);
            if success {
                handler.discard(unit, job).await;
            }
        }
        // Stopped while the orchestra did not answer: the task goes back rather than waiting
        // for its lease, if the orchestra answers the hand-back.
        Completion::Stopped => give_back(unit, handler, job, success).await,
    }
}

/// The label of how an attempt's work ended (`oscied_unit_tasks_total`).
fn outcome(ran: &Ran) -> &'static str {
    match ran {
        Ran::Success(_) => "success",
        Ran::Failure(_) => "failure",
        Ran::Stopped(Interrupted(Interrupt::Revoked)) => "revoked",
        Ran::Stopped(Interrupted(Interrupt::Stale(_))) => "stale",
        Ran::Stopped(Interrupted(Interrupt::Shutdown)) => "handed_back",
    }
}

/// Hand a stopped attempt back, removing its files (when `discard`) before or after as the
/// handler says.
async fn give_back<H: JobHandler>(unit: &Unit, handler: &H, job: &H::Job, discard: bool) {
    let (task, attempt) = job.task();
    if discard && H::HAND_BACK == HandBack::DiscardFirst {
        handler.discard(unit, job).await;
    }
    hand_back(&unit.link, task, attempt).await;
    if discard && H::HAND_BACK == HandBack::ThenDiscard {
        handler.discard(unit, job).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};
    use std::time::Instant;

    use serde::Deserialize;

    use super::*;
    use crate::broker::MemoryBroker;
    use crate::unit::testing::{Fake, FakeNode, NODE_SECRET};

    /// A job of the test handler: `work` says what its attempt does.
    #[derive(Debug, Deserialize)]
    struct TestJob {
        task_id: Uuid,
        attempt: u32,
        work: String,
    }

    impl JobMessage for TestJob {
        fn task(&self) -> (Uuid, u32) {
            (self.task_id, self.attempt)
        }
    }

    /// A handler doing what each job says, noting what it discards.
    #[derive(Default)]
    struct Scripted {
        /// Shared with the test.
        discarded: Arc<Mutex<Vec<Uuid>>>,
        /// A vital service that ends after this long.
        vital_for: Option<Duration>,
    }

    impl JobHandler for Scripted {
        type Job = TestJob;
        const KIND: UnitKind = UnitKind::Transform;

        async fn start(self: Arc<Self>, _unit: Arc<Unit>) -> Result<Services, UnitError> {
            let mut services = Services::default();
            if let Some(after) = self.vital_for {
                let task = tokio::spawn(tokio::time::sleep(after));
                services.vital("the test service", task, Duration::from_secs(1));
            }
            Ok(services)
        }

        async fn run(&self, job: &TestJob, attempt: &mut Attempt) -> Ran {
            match job.work.as_str() {
                "ok" => Ran::Success(Output::default()),
                "fail" => Ran::Failure("it failed".into()),
                "panic" => panic!("a handler bug"),
                "second" => tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => Ran::Success(Output::default()),
                    stopped = attempt.interrupted() => Ran::Stopped(stopped),
                },
                "free, then wait" => {
                    attempt.free_slot();
                    Ran::Stopped(attempt.interrupted().await)
                }
                _ => Ran::Stopped(attempt.interrupted().await),
            }
        }

        async fn discard(&self, _unit: &Unit, job: &TestJob) {
            self.discarded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(job.task_id);
        }
    }

    struct Harness {
        node: FakeNode,
        broker: Arc<MemoryBroker>,
        discarded: Arc<Mutex<Vec<Uuid>>>,
        stop: Option<oneshot::Sender<()>>,
        unit: JoinHandle<Result<(), UnitError>>,
    }

    impl Harness {
        /// A unit of `concurrency` on the fake, called through `api` (the fake's URL given).
        async fn start(
            fake: Fake,
            handler: Scripted,
            tweak: impl FnOnce(&mut UnitSpec),
            api: impl FnOnce(&str) -> String,
        ) -> Harness {
            let node = FakeNode::start(fake).await;
            let broker = Arc::new(MemoryBroker::new());
            let mut spec = UnitSpec {
                unit_id: "unit-1".into(),
                queues: vec!["transform".into()],
                own_queue: None,
                concurrency: 1,
                heartbeat_secs: 1,
                drain_secs: 0,
                refused_exit_secs: 60,
            };
            tweak(&mut spec);
            let client = NodeClient::new(&api(node.url()), NODE_SECRET).unwrap();
            let discarded = handler.discarded.clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let metrics = crate::unit::metrics::UnitMetrics::new();
            let unit = tokio::spawn(run_unit(
                handler,
                spec,
                broker.clone(),
                client,
                metrics,
                async {
                    let _ = stopped.await;
                },
            ));
            Harness {
                node,
                broker,
                discarded,
                stop: Some(stop),
                unit,
            }
        }

        async fn send(&self, work: &str) -> Uuid {
            let task = Uuid::new_v4();
            let job = serde_json::json!({"task_id": task, "attempt": 1, "work": work});
            let payload = serde_json::to_vec(&job).unwrap();
            self.broker.publish("transform", &payload, 0).await.unwrap();
            task
        }

        fn discarded(&self) -> Vec<Uuid> {
            self.discarded.lock().unwrap().clone()
        }

        async fn queued(&self) -> u64 {
            self.broker.queue_stats("transform").await.unwrap().messages
        }

        async fn stop(mut self) -> Self {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(Duration::from_secs(10), &mut self.unit)
                .await
                .expect("the unit stops")
                .unwrap()
                .expect("the unit ends without failure");
            self
        }
    }

    fn direct(url: &str) -> String {
        url.to_owned()
    }

    #[tokio::test]
    async fn jobs_are_claimed_completed_and_discarded_unless_kept() {
        let h = Harness::start(Fake::default(), Scripted::default(), |_| {}, direct).await;
        let ok = h.send("ok").await;
        let failed = h.send("fail").await;
        h.node
            .wait_for(10, "two completions", |f| f.completes.len() == 2)
            .await;
        let completes = h.node.completes();
        assert_eq!(
            (completes[0].task, completes[0].status),
            (ok, TaskStatus::Success)
        );
        assert_eq!(
            (completes[1].task, completes[1].status),
            (failed, TaskStatus::Failure)
        );
        assert_eq!(completes[1].error.as_deref(), Some("it failed"));
        assert_eq!(completes[1].kind, UnitKind::Transform);
        // The SUCCESS was kept; the FAILURE's files went before it was sent.
        assert_eq!(h.discarded(), vec![failed]);
        assert_eq!(h.queued().await, 0, "acked");
        {
            let f = h.node.lock();
            assert_eq!(f.claims.len(), 2);
            assert!(
                f.claims
                    .iter()
                    .all(|c| c.unit_id == "unit-1" && c.attempt == 1)
            );
            let beat = f.heartbeats.first().expect("a heartbeat");
            assert_eq!(
                (beat.kind, beat.queues.clone(), beat.concurrency),
                (UnitKind::Transform, vec!["transform".to_owned()], 1)
            );
        }
        h.stop().await;
    }

    #[tokio::test]
    async fn a_unit_keeps_working_when_an_orchestra_replica_is_down() {
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let h = Harness::start(
            Fake::default(),
            Scripted::default(),
            |_| {},
            |url| format!("{dead},{url}"),
        )
        .await;
        let task = h.send("ok").await;
        h.node
            .wait_for(10, "the completion", |f| !f.completes.is_empty())
            .await;
        assert_eq!(h.node.completes()[0].task, task);
        assert!(!h.node.lock().heartbeats.is_empty());
        h.stop().await;
    }

    #[tokio::test]
    async fn a_refused_secret_takes_no_job_and_ends_the_unit() {
        let h = Harness::start(
            Fake {
                refuse_secret: true,
                ..Fake::default()
            },
            Scripted::default(),
            |spec| spec.refused_exit_secs = 1,
            direct,
        )
        .await;
        h.send("ok").await;
        let started = Instant::now();
        let mut h = h;
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut h.unit)
            .await
            .expect("the unit ends by itself")
            .unwrap();
        assert!(
            matches!(ended, Err(UnitError::SecretRefused(1))),
            "{ended:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Held by nobody: a well-configured unit runs it.
        assert_eq!(h.queued().await, 1);
        assert!(h.node.lock().completes.is_empty());
    }

    #[tokio::test]
    async fn a_secret_accepted_again_in_time_lets_the_unit_take_its_jobs() {
        let h = Harness::start(
            Fake {
                refuse_secret: true,
                ..Fake::default()
            },
            Scripted::default(),
            |spec| spec.refused_exit_secs = 30,
            direct,
        )
        .await;
        let task = h.send("ok").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(h.queued().await, 1, "no job taken while refused");
        h.node.lock().refuse_secret = false;
        // The heartbeat checks every REFUSED_CHECK_EVERY (5 s) while refused.
        h.node
            .wait_for(15, "the completion", |f| !f.completes.is_empty())
            .await;
        assert_eq!(h.node.completes()[0].task, task);
        assert!(!h.unit.is_finished());
        h.stop().await;
    }

    #[tokio::test]
    async fn a_freed_slot_takes_the_next_job_and_stop_hands_back_what_runs() {
        let h = Harness::start(Fake::default(), Scripted::default(), |_| {}, direct).await;
        let waiting = h.send("free, then wait").await;
        h.node
            .wait_for(10, "the first claim", |f| f.claims.len() == 1)
            .await;
        let next = h.send("ok").await;
        h.node
            .wait_for(10, "the second job's completion", |f| {
                f.completes.len() == 1
            })
            .await;
        assert_eq!(h.node.completes()[0].task, next);
        // A slot that is not freed takes nothing more.
        let blocked = h.send("wait").await;
        h.node
            .wait_for(10, "the third claim", |f| f.claims.len() == 3)
            .await;
        let fourth = h.send("ok").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.queued().await, 1, "the fourth job waits for a slot");
        let h = h.stop().await;
        let mut released: Vec<Uuid> = h.node.lock().releases.iter().map(|r| r.task).collect();
        released.sort();
        let mut expected = vec![waiting, blocked];
        expected.sort();
        assert_eq!(released, expected);
        // Their files removed too.
        let mut discarded = h.discarded();
        discarded.sort();
        assert_eq!(discarded, expected);
        assert_eq!(h.node.completes().len(), 1);
        assert!(!h.node.completes().iter().any(|c| c.task == fourth));
        // Never taken, so still queued.
        assert_eq!(h.queued().await, 1);
    }

    #[tokio::test]
    async fn a_drain_lets_running_jobs_finish() {
        let h = Harness::start(
            Fake::default(),
            Scripted::default(),
            |spec| spec.drain_secs = 10,
            direct,
        )
        .await;
        let task = h.send("second").await;
        h.node
            .wait_for(10, "the claim", |f| f.claims.len() == 1)
            .await;
        let h = h.stop().await;
        let completes = h.node.completes();
        assert_eq!(completes.len(), 1);
        assert_eq!(
            (completes[0].task, completes[0].status),
            (task, TaskStatus::Success)
        );
        assert!(h.node.lock().releases.is_empty());
    }

    #[tokio::test]
    async fn a_revoke_completes_revoked_and_a_stale_attempt_nothing() {
        let h = Harness::start(
            Fake {
                cancel_on_progress: true,
                ..Fake::default()
            },
            Scripted::default(),
            |_| {},
            direct,
        )
        .await;
        let revoked = h.send("wait").await;
        h.node
            .wait_for(10, "the REVOKED completion", |f| !f.completes.is_empty())
            .await;
        let done = &h.node.completes()[0];
        assert_eq!((done.task, done.status), (revoked, TaskStatus::Revoked));
        assert_eq!(h.discarded(), vec![revoked]);
        {
            let mut f = h.node.lock();
            f.cancel_on_progress = false;
            f.progress_stale = true;
        }
        let stale = h.send("wait").await;
        h.node
            .wait_for(10, "the stale progress report", |f| {
                f.progress.iter().any(|p| p.task == stale)
            })
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.discarded().len() < 2 {
            assert!(Instant::now() < deadline, "the stale attempt's files stay");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(h.discarded(), vec![revoked, stale]);
        let h = h.stop().await;
        // Neither completed nor handed back.
        assert_eq!(h.node.completes().len(), 1);
        assert!(h.node.lock().releases.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_shrink_the_unit() {
        let h = Harness::start(Fake::default(), Scripted::default(), |_| {}, direct).await;
        h.send("panic").await;
        let task = h.send("ok").await;
        h.node
            .wait_for(10, "the completion", |f| !f.completes.is_empty())
            .await;
        assert_eq!(h.node.completes()[0].task, task);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_vital_service_that_ends_stops_the_unit() {
        let handler = Scripted {
            vital_for: Some(Duration::from_millis(300)),
            ..Scripted::default()
        };
        let mut h = Harness::start(Fake::default(), handler, |_| {}, direct).await;
        let ended = tokio::time::timeout(Duration::from_secs(5), &mut h.unit)
            .await
            .expect("the unit stops by itself")
            .unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }

    #[tokio::test]
    async fn queues_of_the_other_kind_are_refused_at_start() {
        let mut h = Harness::start(
            Fake::default(),
            Scripted::default(),
            |spec| spec.queues = vec!["publisher".into()],
            direct,
        )
        .await;
        let ended = (&mut h.unit).await.unwrap();
        assert!(matches!(ended, Err(UnitError::NotStarted(_))), "{ended:?}");
        assert!(h.node.lock().heartbeats.is_empty());
    }
}
