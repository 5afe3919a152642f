//! The publisher unit's [`JobHandler`] (see the crate docs for the rules): a publish job is
//! claimed by the runtime, then published, checked over HTTP and completed; an unpublish job
//! is not claimed: it removes the publication and completes REVOKED before its message is
//! acked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use oscied_protocol::http::ServeLimits;
use oscied_protocol::node::{CompleteRequest, UnitKind};
use oscied_protocol::unit::{
    self, Attempt, Completion, HandBack, JobHandler, Output, Ran, Services, Unit, UnitError,
    hide_root,
};
use oscied_protocol::{Delivery, PublishAction, PublishJob, TaskStatus};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{publish, reconcile, serve};

/// The longest one try of the URL check may take.
pub(crate) const CHECK_TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the URL check keeps trying: a proxy or a cache in front of the unit may need a
/// moment to see a new directory.
const CHECK_BUDGET: Duration = Duration::from_secs(5);
const CHECK_PAUSE: Duration = Duration::from_millis(500);
/// How long the HTTP server waits for open downloads after the unit stopped.
const SERVER_GRACE: Duration = Duration::from_secs(5);

/// The publisher unit's handler: its web root, its HTTP server and client, its reconciles.
pub(crate) struct Publisher {
    pub storage_root: PathBuf,
    /// The served directory: publications go to `<www_root>/medias/<id>/`.
    pub www_root: PathBuf,
    /// Without a trailing slash.
    pub public_url: String,
    /// For checking published URLs.
    pub http: reqwest::Client,
    pub serve_limits: ServeLimits,
    pub reconcile_secs: u64,
    /// The bound listener, for the log.
    pub local_addr: SocketAddr,
    /// Served from [`JobHandler::start`] on.
    pub listener: Mutex<Option<TcpListener>>,
    /// Asks the reconcile loop for a reconcile now.
    pub reconcile_now: Notify,
    /// `OSCIED_METRICS_TOKEN`: what the server's `GET /metrics` asks for, if anything.
    pub metrics_token: Option<String>,
}

impl JobHandler for Publisher {
    type Job = PublishJob;
    const KIND: UnitKind = UnitKind::Publisher;
    // Nothing may stay served that the orchestra no longer says this unit holds.
    const HAND_BACK: HandBack = HandBack::DiscardFirst;

    /// Clean the web root of what is not held, then serve it and reconcile it periodically.
    async fn start(self: Arc<Self>, unit: Arc<Unit>) -> Result<Services, UnitError> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| UnitError::NotStarted("the publisher's listener is gone".into()))?;
        let published = publish::published_ids(&self.www_root)
            .await
            .map(|ids| ids.len())
            .unwrap_or(0);
        tracing::info!(
            unit_id = %unit.spec.unit_id,
            queues = %oscied_protocol::unit::log::List(&unit.spec.queues),
            own_queue = unit.spec.own_queue.as_deref(),
            concurrency = unit.spec.concurrency,
            storage_root = %self.storage_root.display(),
            www_root = %self.www_root.display(),
            listen = %self.local_addr,
            public_url = %self.public_url,
            published,
            broker = unit.broker.kind(),
            "publisher unit started"
        );
        if let Err(e) = publish::remove_orphan_owners(&self.www_root).await {
            tracing::warn!("cannot clean the publication records: {e}");
        }
        reconcile::reconcile(&self, &unit, 3).await;
        let mut services = Services::default();
        services.helper(tokio::spawn(reconcile::reconcile_loop(
            self.clone(),
            unit.clone(),
        )));
        let app = serve::router(self.www_root.clone(), unit.spec.unit_id.clone()).merge(
            oscied_protocol::unit::metrics::routes(
                unit.metrics.clone(),
                self.metrics_token.clone(),
            ),
        );
        let link = unit.link.clone();
        let limits = self.serve_limits;
        let server = tokio::spawn(async move {
            let stopped = async move { link.stopped().await };
            let served = oscied_protocol::http::serve(listener, app, limits, stopped).await;
            if let Err(e) = served {
                tracing::error!("the HTTP server failed: {e}");
            }
        });
        // The listener gone, the unit could publish but not serve.
        services.vital("the HTTP server", server, SERVER_GRACE);
        Ok(services)
    }

    /// By action, whatever the queue: a misrouted message still does the right thing.
    fn claims(&self, job: &PublishJob) -> bool {
        job.action == PublishAction::Publish
    }

    async fn unclaimed(&self, unit: &Unit, job: PublishJob, delivery: Delivery) {
        self.unpublish(unit, &job, delivery).await;
    }

    async fn run(&self, job: &PublishJob, attempt: &mut Attempt) -> Ran {
        self.publish(job, attempt).await
    }

    /// Remove the media's publication, unless a later attempt of the same task runs here (the
    /// files may be its own).
    async fn discard(&self, unit: &Unit, job: &PublishJob) {
        if unit.running.has_later(job.task_id, job.attempt) {
            return;
        }
        if let Err(e) =
            publish::unpublish_owned(&self.www_root, job.media_id, &job.task_id.to_string()).await
        {
            tracing::error!(
                task = %job.task_id, media = %job.media_id,
                "cannot remove a publication the orchestra does not hold: {e}"
            );
        }
    }

    /// REVOKING: revoked meanwhile, and the orchestra sends this unit an unpublish.
    fn keeps(&self, answered: TaskStatus) -> bool {
        matches!(answered, TaskStatus::Success | TaskStatus::Revoking)
    }

    /// Files an earlier attempt of ours left may be served: reconcile now.
    fn lost(&self, _job: &PublishJob) {
        self.reconcile_now.notify_one();
    }
}

impl Publisher {
    /// Publish, then check the public URL; stopped wherever it waits when the attempt is
    /// interrupted (the copy stops between chunks, the check at once).
    async fn publish(&self, job: &PublishJob, attempt: &mut Attempt) -> Ran {
        let (task, attempt_no) = (job.task_id, job.attempt);
        tracing::info!(
            %task, attempt = attempt_no, media = %job.media_id, uri = %job.media_uri,
            "publication started"
        );
        let cancel = Arc::new(AtomicBool::new(false));
        // Per attempt (the staging name): a leftover of another attempt never mixes in.
        let owner = publish::Owner {
            unit_id: attempt.unit().spec.unit_id.clone(),
            task_id: task,
            attempt: attempt_no,
        };
        let work = publish::publish_as(
            &self.storage_root,
            &self.www_root,
            job.media_id,
            &job.media_uri,
            &owner,
            {
                let cancel = cancel.clone();
                move || cancel.load(Ordering::Relaxed)
            },
        );
        let mut work = std::pin::pin!(work);
        let published = tokio::select! {
            result = &mut work => result,
            stopped = attempt.interrupted() => {
                cancel.store(true, Ordering::Relaxed);
                // The copy runs on a blocking thread that checks `cancel` between chunks:
                // wait until it let go of the files. It may have renamed into place just
                // before; the runtime's discard removes it.
                let _ = work.await;
                return Ran::Stopped(stopped);
            }
        };
        let published = match published {
            Ok(published) => published,
            // A failed republish leaves an older copy in place; it is nobody's now (the
            // runtime discards it).
            Err(e) => return Ran::Failure(self.hide_roots(&e.to_string())),
        };
        tracing::debug!(
            %task, attempt = attempt_no, files = published.files, bytes = published.bytes,
            linked = published.linked, "published; checking the public URL"
        );
        let filename = file_name(&job.media_uri);
        let url = public_file_url(&self.public_url, job.media_id, filename);
        let size = tokio::fs::metadata(
            self.www_root
                .join(oscied_protocol::job::published_dir(job.media_id))
                .join(filename),
        )
        .await
        .ok()
        .map(|m| m.len());
        let checked = tokio::select! {
            checked = self.check(&url, size) => checked,
            stopped = attempt.interrupted() => return Ran::Stopped(stopped),
        };
        match checked {
            Err(message) => Ran::Failure(message),
            Ok(()) => Ran::Success(Output {
                output: None,
                publish_uri: Some(url),
            }),
        }
    }

    /// Unpublish: no claim (the unit holds the task since its SUCCESS). The message is acked
    /// only once the orchestra took the REVOKED, so a unit killed in between does it again.
    async fn unpublish(&self, unit: &Unit, job: &PublishJob, delivery: Delivery) {
        let (task, attempt) = (job.task_id, job.attempt);
        let link = &unit.link;
        if let Err(e) =
            publish::unpublish_owned(&self.www_root, job.media_id, &job.task_id.to_string()).await
        {
            tracing::error!(
                %task, media = %job.media_id,
                "cannot unpublish: {}; the job is retried", self.hide_roots(&e.to_string())
            );
            unit::pause_then_requeue(link, delivery).await;
            return;
        }
        let request = CompleteRequest {
            unit_id: link.unit_id.clone(),
            attempt,
            status: TaskStatus::Revoked,
            error: None,
            output: None,
            publish_uri: None,
        };
        match unit::complete(link, task, &request).await {
            Completion::Answered(answer) => {
                tracing::info!(
                    %task, attempt, media = %job.media_id, status = %answer.status, "unpublished"
                );
                unit::ack(delivery).await;
            }
            Completion::Stale(message) => {
                tracing::info!(%task, attempt, "unpublish no longer expected, dropped: {message}");
                unit::ack(delivery).await;
            }
            // A bad node secret: keep the message until the configuration is fixed.
            Completion::Refused(401 | 403, _) => unit::pause_then_requeue(link, delivery).await,
            // Refused for good (logged by `complete`): the files are gone, nothing to retry.
            Completion::Refused(..) => unit::ack(delivery).await,
            Completion::Stopped => delivery.requeue(),
        }
    }

    /// GET the published file at its public URL until it answers 200 with the file's size,
    /// for [`CHECK_BUDGET`]. The error says which URL answered what.
    async fn check(&self, url: &str, size: Option<u64>) -> Result<(), String> {
        let deadline = Instant::now() + CHECK_BUDGET;
        loop {
            let answer = match self.http.get(url).send().await {
                // Dropping the response closes it without reading the body.
                Ok(response) => match (response.status(), response.content_length(), size) {
                    (status, Some(got), Some(want)) if status.is_success() && got != want => {
                        format!("answered {status} with {got} bytes, but the file has {want}")
                    }
                    (reqwest::StatusCode::OK, _, _) => return Ok(()),
                    (status, _, _) => format!("answered {status}"),
                },
                Err(e) => format!("failed: {}", error_chain(&e)),
            };
            if Instant::now() + CHECK_PAUSE >= deadline {
                return Err(format!(
                    "the published media is not reachable at its public URL: GET {url} {answer} \
                 (is the publisher's public URL, OSCIED_PUBLIC_URL, right?)"
                ));
            }
            tokio::time::sleep(CHECK_PAUSE).await;
        }
    }
}

/// An error with its causes (reqwest's own text leaves out why a request failed).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Publisher {
    fn hide_roots(&self, message: &str) -> String {
        let message = hide_root(message, &self.storage_root);
        hide_root(&message, &self.www_root)
    }
}

/// The media's main file name: the last segment of its uri.
fn file_name(media_uri: &str) -> &str {
    media_uri.rsplit('/').next().unwrap_or(media_uri)
}

/// `<public url>/medias/<id>/<filename>`, the filename percent-encoded as a path segment.
fn public_file_url(public_url: &str, media_id: Uuid, filename: &str) -> String {
    let mut segment = String::with_capacity(filename.len());
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "{}/medias/{media_id}/{segment}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_the_file_name() {
        let id = Uuid::nil();
        assert_eq!(
            public_file_url("http://h:5080/", id, "a b+c%é.mp4"),
            format!("http://h:5080/medias/{id}/a%20b%2Bc%25%C3%A9.mp4")
        );
        assert_eq!(
            public_file_url("https://cdn.example.com/oscied", id, "index.m3u8"),
            format!("https://cdn.example.com/oscied/medias/{id}/index.m3u8")
        );
        assert_eq!(file_name("medias/x/clip.mp4"), "clip.mp4");
        assert_eq!(file_name("clip.mp4"), "clip.mp4");
    }
}
