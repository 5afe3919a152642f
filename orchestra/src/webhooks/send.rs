//! Sending deliveries: one POST per attempt, signed, with what came of it kept on the
//! delivery (docs/architecture.md §17).
//!
//! A delivery is stored before it is first sent, so it survives a restart or the death of
//! its replica: whoever finds it due sends it (its replica at once, the loops' leader when
//! it is due again). Before each attempt the sender claims it with a fenced write that moves
//! `next_at` past the attempt's timeout, so two replicas never send one attempt twice, and a
//! sender that dies mid-attempt lets another retry after that. At least once: a receiver
//! dedupes on `X-OSCIED-Delivery`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::target::{Guarded, Targets};
use crate::models::{
    Delivery, DeliveryAttempt, DeliveryFilter, DeliveryStatus, ListOptions, WebhookRecord, now,
};
use crate::state::AppState;

/// Attempts in flight at once per orchestra.
const PARALLEL: usize = 32;
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// A delivery is retried until it is this old.
pub const RETRY_FOR: chrono::Duration = chrono::Duration::hours(24);
/// How far past its timeout a claimed attempt is left to its sender.
const CLAIM_MARGIN: Duration = Duration::from_secs(15);
/// The most due deliveries one pass starts.
const PASS: u64 = 500;

type Https = hyper_rustls::HttpsConnector<HttpConnector<Guarded>>;

/// The webhooks' HTTP client and what is in flight here.
pub struct Sender {
    /// HTTP/1.1 and HTTPS (webpki roots), every name resolved through [`Guarded`], no
    /// proxy, and no redirect followed (this client follows none).
    client: Client<Https, Full<Bytes>>,
    targets: Targets,
    timeout: Duration,
    permits: Semaphore,
    in_flight: Mutex<HashSet<Uuid>>,
}

/// How an attempt ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// A timeout, a connection error, a 5xx, 408 or 429: again later (the receiver's
    /// `Retry-After` when it gave one, at most an hour).
    Retry(Option<Duration>),
    /// Any other answer, or a target refused: not again.
    Final,
}

/// An attempt's signature header: HMAC-SHA256 of `{timestamp}.{body}` under the webhook's
/// secret, in hex.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait before retry number `failures` (1 for the first): `base` doubled each time, at
/// most [`MAX_DELAY`], ±25 % so that a receiver back up is not hit by everything at once.
pub fn backoff(base: Duration, failures: u32) -> Duration {
    let doubled = base.saturating_mul(1 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(MAX_DELAY);
    let jitter = 0.75 + f64::from(Uuid::new_v4().as_bytes()[0]) / 510.0;
    capped.mul_f64(jitter)
}

/// What an answer's status means for the delivery.
pub fn judge(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Outcome::Retry(None)
    } else {
        Outcome::Final
    }
}

impl Sender {
    pub fn new(targets: Targets, timeout: Duration) -> Result<Sender, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(targets.resolver());
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Sender {
            client,
            targets,
            timeout,
            permits: Semaphore::new(PARALLEL),
            in_flight: Mutex::default(),
        })
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Mark `id` in flight here; false when it is already.
    fn enter(&self, id: Uuid) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    fn leave(&self, id: Uuid) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// POST one attempt.
    async fn post(&self, hook: &WebhookRecord, delivery: &Delivery) -> (DeliveryAttempt, Outcome) {
        let at = now();
        let started = Instant::now();
        let (status, outcome, error) = match self.try_post(hook, delivery).await {
            Ok((status, headers)) => {
                let outcome = match judge(status) {
                    Outcome::Retry(_) => Outcome::Retry(retry_after(&headers)),
                    other => other,
                };
                let error = (outcome != Outcome::Delivered).then(|| {
                    format!(
                        "the receiver answered {status}{}",
                        if outcome == Outcome::Final {
                            ": not retried (only timeouts, connection errors, 5xx, 408 and 429 are)"
                        } else {
                            ""
                        }
                    )
                });
                (Some(status.as_u16()), outcome, error)
            }
            Err((outcome, why)) => (None, outcome, Some(why)),
        };
        let attempt = DeliveryAttempt {
            at,
            status,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
        };
        (attempt, outcome)
    }

    async fn try_post(
        &self,
        hook: &WebhookRecord,
        delivery: &Delivery,
    ) -> Result<(StatusCode, HeaderMap), (Outcome, String)> {
        let url = url::Url::parse(&hook.webhook.url)
            .map_err(|e| (Outcome::Final, format!("the URL is invalid: {e}")))?;
        self.targets
            .check_literal(&url)
            .map_err(|why| (Outcome::Final, why))?;
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| (Outcome::Final, format!("the URL is invalid: {e}")))?;
        let timestamp = now().timestamp();
        let request = Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("OSCIED-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-OSCIED-Event", &delivery.event_type)
            .header("X-OSCIED-Delivery", delivery.id.to_string())
            .header("X-OSCIED-Timestamp", timestamp.to_string())
            .header(
                "X-OSCIED-Signature",
                signature(&hook.signing_key, timestamp, &delivery.body),
            )
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .map_err(|e| (Outcome::Final, format!("the request: {e}")))?;
        let answer = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        match answer {
            Err(_) => Err((
                Outcome::Retry(None),
                format!("no answer within {} s", self.timeout.as_secs()),
            )),
            // The answer's head is all it takes; its body is not read.
            Ok(Ok(answer)) => Ok((answer.status(), answer.headers().clone())),
            Ok(Err(e)) => {
                // The whole chain: the resolver's refusal, the refused connection.
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    why = format!("{why}: {cause}");
                    source = cause.source();
                }
                let outcome = if why.contains("OSCIED_WEBHOOK_ALLOWED_NETS") {
                    Outcome::Final
                } else {
                    Outcome::Retry(None)
                };
                Err((outcome, why))
            }
        }
    }
}

/// `Retry-After` in seconds (the date form is not worth it here), at most [`MAX_DELAY`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_DELAY))
}

/// Start every due delivery not in flight here (the loops' leader, each second).
pub async fn deliver_due(state: &AppState) {
    let filter = DeliveryFilter {
        due_before: Some(now()),
        ..DeliveryFilter::default()
    };
    let opts = ListOptions {
        sort: "next_at",
        ..ListOptions::scan(PASS)
    };
    match state.store.list_deliveries(&filter, &opts).await {
        Ok(page) => {
            for delivery in page.items {
                spawn_attempt(state, delivery.id);
            }
        }
        Err(e) => tracing::debug!(error = %e, "webhook deliveries: store unavailable"),
    }
}

/// Send delivery `id` in the background if it is due and not in flight here.
pub fn spawn_attempt(state: &AppState, id: Uuid) {
    if !state.webhooks.sender.enter(id) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let sender = &state.webhooks.sender;
        if let Ok(_permit) = sender.permits.acquire().await
            && let Err(e) = attempt(&state, id).await
        {
            tracing::debug!(delivery = %id, error = %e, "webhook delivery attempt not made");
        }
        sender.leave(id);
    });
}

/// Claim, send and record one attempt of delivery `id`.
async fn attempt(state: &AppState, id: Uuid) -> Result<(), crate::store::StoreError> {
    let store = state.store.as_ref();
    let Some(mut delivery) = store.get_delivery(id).await? else {
        return Ok(());
    };
    let at = now();
    if delivery.status != DeliveryStatus::Pending || delivery.next_at.is_some_and(|t| t > at) {
        return Ok(());
    }
    let Some(hook) = store.get_webhook(delivery.webhook_id).await? else {
        return Ok(());
    };
    if !hook.webhook.enabled {
        let why = hook
            .webhook
            .disabled_reason
            .as_deref()
            .unwrap_or("by a PATCH");
        cancel(&mut delivery, &format!("the webhook was disabled: {why}"));
        store.update_delivery(&mut delivery).await?;
        return Ok(());
    }
    let claim = state.webhooks.sender.timeout + CLAIM_MARGIN;
    delivery.next_at = Some(at + chrono::Duration::from_std(claim).unwrap_or_default());
    if !store.update_delivery(&mut delivery).await? {
        // Another sender claimed it.
        return Ok(());
    }
    let (tried, outcome) = state.webhooks.sender.post(&hook, &delivery).await;
    let delivered = outcome == Outcome::Delivered;
    let error = tried.error.clone();
    tracing::debug!(delivery = %id, webhook = %hook.webhook.id, status = ?tried.status, ?outcome, "webhook attempt");
    let base = Duration::from_secs_f64(state.config.webhook_retry_secs);
    // The claim holds off every other writer but the webhook's deletion.
    let mut rounds = 0;
    loop {
        settle(&mut delivery, tried.clone(), &outcome, base);
        if store.update_delivery(&mut delivery).await? {
            break;
        }
        rounds += 1;
        match store.get_delivery(id).await? {
            Some(fresh) if rounds < 5 => delivery = fresh,
            _ => return Ok(()),
        }
    }
    super::attempted(state, hook.webhook.id, delivered, error).await;
    Ok(())
}

/// Record an attempt on the delivery and decide what comes next.
fn settle(delivery: &mut Delivery, tried: DeliveryAttempt, outcome: &Outcome, base: Duration) {
    let at = tried.at;
    let failures = u32::try_from(delivery.attempts.len() + 1).unwrap_or(u32::MAX);
    delivery.attempts.push(tried);
    match outcome {
        Outcome::Delivered => finish(delivery, DeliveryStatus::Delivered, at),
        Outcome::Final => finish(delivery, DeliveryStatus::Failed, at),
        Outcome::Retry(asked) => {
            let wait = asked.unwrap_or_else(|| backoff(base, failures));
            let next = at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            if next > delivery.created_at + RETRY_FOR {
                finish(delivery, DeliveryStatus::Failed, at);
            } else {
                delivery.next_at = Some(next);
            }
        }
    }
}

fn finish(delivery: &mut Delivery, status: DeliveryStatus, at: DateTime<Utc>) {
    delivery.status = status;
    delivery.next_at = None;
    delivery.finished_at = Some(at);
}

/// A pending delivery that will not be sent.
pub fn cancel(delivery: &mut Delivery, why: &str) {
    let at = now();
    delivery.attempts.push(DeliveryAttempt {
        at,
        status: None,
        latency_ms: 0,
        error: Some(why.to_owned()),
    });
    finish(delivery, DeliveryStatus::Cancelled, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed with Python's hmac module (as README's verification script does).
        assert_eq!(
            signature("s3cret", 1_700_000_000, r#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn answers_are_judged() {
        assert_eq!(judge(StatusCode::OK), Outcome::Delivered);
        assert_eq!(judge(StatusCode::NO_CONTENT), Outcome::Delivered);
        assert_eq!(
            judge(StatusCode::INTERNAL_SERVER_ERROR),
            Outcome::Retry(None)
        );
        assert_eq!(judge(StatusCode::BAD_GATEWAY), Outcome::Retry(None));
        assert_eq!(judge(StatusCode::REQUEST_TIMEOUT), Outcome::Retry(None));
        assert_eq!(judge(StatusCode::TOO_MANY_REQUESTS), Outcome::Retry(None));
        assert_eq!(judge(StatusCode::NOT_FOUND), Outcome::Final);
        assert_eq!(judge(StatusCode::GONE), Outcome::Final);
        assert_eq!(judge(StatusCode::MOVED_PERMANENTLY), Outcome::Final);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_an_hour() {
        let base = Duration::from_secs(10);
        for failures in 1..40 {
            let expected = (base * (1 << (failures - 1).min(20))).min(MAX_DELAY);
            let got = backoff(base, failures);
            assert!(
                got >= expected.mul_f64(0.75) && got <= expected.mul_f64(1.25),
                "{failures}: {got:?}"
            );
        }
    }

    #[test]
    fn retries_stop_after_a_day() {
        let at = now();
        let mut delivery = Delivery {
            id: Uuid::new_v4(),
            webhook_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            event_id: "e".into(),
            event_type: "task.finished".into(),
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_at: Some(at),
            replay_of: None,
            body: "{}".into(),
            created_at: at,
            finished_at: None,
            expires_at: at,
            revision: 0,
        };
        let tried = |at| DeliveryAttempt {
            at,
            status: Some(503),
            latency_ms: 1,
            error: Some("503".into()),
        };
        settle(
            &mut delivery,
            tried(at),
            &Outcome::Retry(None),
            Duration::from_secs(10),
        );
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert!(delivery.next_at.unwrap() > at);
        let late = at + chrono::Duration::hours(23) + chrono::Duration::minutes(30);
        settle(
            &mut delivery,
            tried(late),
            &Outcome::Retry(Some(MAX_DELAY)),
            Duration::from_secs(10),
        );
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempts.len(), 2);
        assert!(delivery.next_at.is_none());
    }
}
