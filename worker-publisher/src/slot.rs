//! A job slot: one broker consumer, one job at a time. A publish job is claimed, acked,
//! published, checked over HTTP and completed; an unpublish job removes the publication and
//! completes REVOKED before its message is acked (see the crate docs for why).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oscied_protocol::node::CompleteRequest;
use oscied_protocol::unit::{self, Completion, LeaseEvent, Reporter, hide_root};
use oscied_protocol::{Delivery, PublishAction, PublishJob, TaskStatus};
use uuid::Uuid;

use crate::{Ctx, publish};

/// The longest one try of the URL check may take.
pub(crate) const CHECK_TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the URL check keeps trying: a proxy or a cache in front of the unit may need a
/// moment to see a new directory.
const CHECK_BUDGET: Duration = Duration::from_secs(5);
const CHECK_PAUSE: Duration = Duration::from_millis(500);

pub(crate) async fn run(ctx: Arc<Ctx>, queues: Vec<String>) {
    let mut consumer = ctx.broker.consumer(&queues);
    loop {
        // None once draining; waits while the orchestra refuses the node secret.
        let Some(delivery) = ctx.link.next_delivery(consumer.as_mut()).await else {
            break;
        };
        handle(&ctx, delivery).await;
    }
}

async fn handle(ctx: &Ctx, delivery: Delivery) {
    // A job this unit cannot decode (a transform job, a malformed one) ends its task FAILURE.
    let Some((job, delivery)) = unit::decode::<PublishJob>(&ctx.link, delivery).await else {
        return;
    };
    // By action, whatever the queue: a misrouted message still does the right thing.
    match job.action {
        PublishAction::Publish => publish_job(ctx, &job, delivery).await,
        PublishAction::Unpublish => unpublish_job(ctx, &job, delivery).await,
    }
}

/// Why a publication stopped before its completion.
enum Stop {
    Cancel,
    Stale(String),
    Shutdown,
}

impl Stop {
    fn from_event(event: Option<LeaseEvent>) -> Stop {
        match event {
            Some(LeaseEvent::Cancel) => Stop::Cancel,
            Some(LeaseEvent::Stale(message)) => Stop::Stale(message),
            // The reporter never ends without an event; treat it as a lost lease.
            None => Stop::Stale("the lease reporter ended".into()),
        }
    }
}

async fn publish_job(ctx: &Ctx, job: &PublishJob, delivery: Delivery) {
    let (task, attempt) = (job.task_id, job.attempt);
    let Some(_running) = ctx.running.register(task, attempt) else {
        tracing::info!(%task, attempt, "redelivery of a job this unit runs: acked and skipped");
        unit::ack(delivery).await;
        return;
    };
    let Some(claim) = unit::claim(&ctx.link, task, attempt, delivery).await else {
        // Not ours (stale or refused): files an earlier attempt of ours left may be served.
        ctx.reconcile_now.notify_one();
        return;
    };
    tracing::info!(
        %task, attempt, media = %job.media_id, uri = %job.media_uri, "publication started"
    );
    // Lives until the completion is answered, so the lease holds through the copy, the check
    // and a completion that waits for an orchestra restart.
    let mut reporter = Reporter::heartbeats(ctx.link.clone(), task, attempt, claim.lease_secs);
    let cancel = Arc::new(AtomicBool::new(false));
    // Per attempt (the staging name): a leftover of another attempt never mixes in.
    let owner = publish::Owner {
        unit_id: ctx.config.unit_id.clone(),
        task_id: task,
        attempt,
    };
    let work = publish::publish_as(
        &ctx.config.storage_root,
        &ctx.config.www_root,
        job.media_id,
        &job.media_uri,
        &owner,
        {
            let cancel = cancel.clone();
            move || cancel.load(Ordering::Relaxed)
        },
    );
    let mut work = std::pin::pin!(work);
    let stop = tokio::select! {
        result = &mut work => Ok(result),
        event = reporter.events.recv() => Err(Stop::from_event(event)),
        () = ctx.link.stopped() => Err(Stop::Shutdown),
    };
    let published = match stop {
        Ok(result) => result,
        Err(stop) => {
            cancel.store(true, Ordering::Relaxed);
            // The copy runs on a blocking thread that checks `cancel` between chunks: wait
            // until it let go of the files. It may have renamed into place just before.
            let _ = work.await;
            stopped(ctx, job, stop).await;
            return;
        }
    };
    let published = match published {
        Ok(published) => published,
        Err(e) => {
            let message = hide_roots(ctx, &e.to_string());
            tracing::warn!(%task, attempt, "publication failed: {message}");
            // A failed republish leaves an older copy in place; it is nobody's now.
            discard(ctx, job).await;
            finish(ctx, job, TaskStatus::Failure, Some(message), None).await;
            return;
        }
    };
    tracing::debug!(
        %task, attempt, files = published.files, bytes = published.bytes,
        linked = published.linked, "published; checking the public URL"
    );
    let filename = file_name(&job.media_uri);
    let url = public_file_url(&ctx.public_url, job.media_id, filename);
    let size = tokio::fs::metadata(
        ctx.config
            .www_root
            .join(oscied_protocol::job::published_dir(job.media_id))
            .join(filename),
    )
    .await
    .ok()
    .map(|m| m.len());
    let checked = tokio::select! {
        checked = check(ctx, &url, size) => Ok(checked),
        event = reporter.events.recv() => Err(Stop::from_event(event)),
        () = ctx.link.stopped() => Err(Stop::Shutdown),
    };
    match checked {
        Err(stop) => stopped(ctx, job, stop).await,
        Ok(Err(message)) => {
            tracing::warn!(%task, attempt, "publication failed: {message}");
            discard(ctx, job).await;
            finish(ctx, job, TaskStatus::Failure, Some(message), None).await;
        }
        Ok(Ok(())) => finish(ctx, job, TaskStatus::Success, None, Some(url)).await,
    }
    drop(reporter);
}

/// A publication stopped by a revoke, a lost lease or the unit stopping: nothing of it stays
/// served; a revoke is completed (REVOKED), a stop handed back (once its files are gone, so
/// the unit never serves what the orchestra no longer says it holds).
async fn stopped(ctx: &Ctx, job: &PublishJob, stop: Stop) {
    let (task, attempt) = (job.task_id, job.attempt);
    discard(ctx, job).await;
    match stop {
        Stop::Cancel => {
            tracing::info!(%task, attempt, "publication revoked");
            finish(ctx, job, TaskStatus::Revoked, None, None).await;
        }
        Stop::Stale(message) => {
            tracing::warn!(%task, attempt, "attempt is stale, publication dropped: {message}");
        }
        Stop::Shutdown => {
            tracing::info!(%task, attempt, "publication stopped by shutdown: handing it back");
            unit::hand_back(&ctx.link, task, attempt).await;
        }
    }
}

/// Complete a publication and remove it unless the orchestra accepted it.
async fn finish(
    ctx: &Ctx,
    job: &PublishJob,
    status: TaskStatus,
    error: Option<String>,
    publish_uri: Option<String>,
) {
    let (task, attempt) = (job.task_id, job.attempt);
    let request = CompleteRequest {
        unit_id: ctx.config.unit_id.clone(),
        attempt,
        status,
        error,
        output: None,
        publish_uri,
    };
    let mut stopped = false;
    let keep = match unit::complete(&ctx.link, task, &request).await {
        Completion::Answered(answer) => {
            tracing::info!(
                %task, attempt, asked = %status, status = %answer.status,
                uri = request.publish_uri.as_deref(), "publication completed"
            );
            // REVOKING: revoked meanwhile, and the orchestra sends this unit an unpublish.
            status == TaskStatus::Success
                && matches!(answer.status, TaskStatus::Success | TaskStatus::Revoking)
        }
        Completion::Stale(message) => {
            tracing::warn!(%task, attempt, "completion refused as stale: {message}");
            ctx.reconcile_now.notify_one();
            false
        }
        // Logged by `complete`; the lease lapses and the task is re-queued.
        Completion::Refused(..) => {
            ctx.reconcile_now.notify_one();
            false
        }
        Completion::Stopped => {
            stopped = true;
            false
        }
    };
    if status == TaskStatus::Success && !keep {
        discard(ctx, job).await;
    }
    // Stopped while the orchestra did not answer: hand it back rather than wait for the lease.
    if stopped {
        unit::hand_back(&ctx.link, task, attempt).await;
    }
}

/// Remove the media's publication, unless a later attempt of the same task runs here (the
/// files may be its own).
async fn discard(ctx: &Ctx, job: &PublishJob) {
    if ctx.running.has_later(job.task_id, job.attempt) {
        return;
    }
    if let Err(e) =
        publish::unpublish_owned(&ctx.config.www_root, job.media_id, &job.task_id.to_string()).await
    {
        tracing::error!(
            task = %job.task_id, media = %job.media_id,
            "cannot remove a publication the orchestra does not hold: {e}"
        );
    }
}

/// Unpublish: no claim (the unit holds the task since its SUCCESS). The message is acked only
/// once the orchestra took the REVOKED, so a unit killed in between does it again.
async fn unpublish_job(ctx: &Ctx, job: &PublishJob, delivery: Delivery) {
    let (task, attempt) = (job.task_id, job.attempt);
    if let Err(e) =
        publish::unpublish_owned(&ctx.config.www_root, job.media_id, &job.task_id.to_string()).await
    {
        tracing::error!(
            %task, media = %job.media_id,
            "cannot unpublish: {}; the job is retried", hide_roots(ctx, &e.to_string())
        );
        unit::pause_then_requeue(&ctx.link, delivery).await;
        return;
    }
    let request = CompleteRequest {
        unit_id: ctx.config.unit_id.clone(),
        attempt,
        status: TaskStatus::Revoked,
        error: None,
        output: None,
        publish_uri: None,
    };
    match unit::complete(&ctx.link, task, &request).await {
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
        Completion::Refused(401 | 403, _) => unit::pause_then_requeue(&ctx.link, delivery).await,
        // Refused for good (logged by `complete`): the files are gone, nothing to retry.
        Completion::Refused(..) => unit::ack(delivery).await,
        Completion::Stopped => delivery.requeue(),
    }
}

/// GET the published file at its public URL until it answers 200 with the file's size, for
/// [`CHECK_BUDGET`]. The error says which URL answered what.
async fn check(ctx: &Ctx, url: &str, size: Option<u64>) -> Result<(), String> {
    let deadline = Instant::now() + CHECK_BUDGET;
    loop {
        let answer = match ctx.http.get(url).send().await {
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

fn hide_roots(ctx: &Ctx, message: &str) -> String {
    let message = hide_root(message, &ctx.config.storage_root);
    hide_root(&message, &ctx.config.www_root)
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
