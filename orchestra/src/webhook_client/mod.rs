//! The webhooks' outbound side, a component of the orchestra's state (docs/architecture.md
//! §17): the HTTP client every delivery attempt goes through (signed, SSRF-guarded by
//! [`target`], no proxy, no redirect), what is in flight on this replica, and the
//! subscriptions as last read from the store. It knows requests and events, not the store:
//! `crate::webhooks` decides what to send and keeps what came of it.

pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use hmac::{KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::config::Config;
use crate::events::{Event, EventFilter};
use crate::locks::locked;
use crate::models::{Delivery, DeliveryAttempt, WebhookRecord, now};
use target::{Guarded, Targets};

/// Attempts in flight at once per orchestra.
const PARALLEL: usize = 32;
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How far past its timeout a claimed attempt is left to its sender.
const CLAIM_MARGIN: Duration = Duration::from_secs(15);
/// How long the enabled subscriptions are matched from memory before they are read again.
pub const FRESH: Duration = Duration::from_secs(5);

/// A subscription as matched.
#[derive(Clone)]
pub struct Sub {
    pub target: Target,
    pub owner: Uuid,
    /// Its owner is an admin, who sees everyone's events.
    pub sees_all: bool,
    pub filter: EventFilter,
}

impl Sub {
    pub fn wants(&self, event: &Event) -> bool {
        self.filter.matches(event)
            && event
                .user_id
                .is_none_or(|owner| self.sees_all || owner == self.owner)
    }
}

type Cached = (Instant, Arc<Vec<Sub>>);

type Https = hyper_rustls::HttpsConnector<HttpConnector<Guarded>>;

/// Where and how one webhook's deliveries are sent.
#[derive(Clone)]
pub struct Target {
    pub webhook_id: Uuid,
    pub url: String,
    /// The signing secret.
    pub key: String,
    /// Its failures in a row as read.
    pub failures: u32,
}

impl Target {
    pub fn of(hook: &WebhookRecord) -> Target {
        Target {
            webhook_id: hook.webhook.id,
            url: hook.webhook.url.clone(),
            key: hook.signing_key.clone(),
            failures: hook.webhook.failures,
        }
    }
}

/// The webhooks' HTTP client, what is in flight here, the subscriptions as last read.
pub struct WebhookClient {
    /// HTTP/1.1 and HTTPS (webpki roots), every name resolved through [`Guarded`], no
    /// proxy, and no redirect followed (this client follows none).
    client: Client<Https, Full<Bytes>>,
    targets: Targets,
    timeout: Duration,
    permits: Semaphore,
    in_flight: Mutex<HashSet<Uuid>>,
    /// Webhooks whose last attempt here failed.
    failing: Mutex<HashSet<Uuid>>,
    /// The users' subscriptions, read at most [`FRESH`] ago (None: read them again).
    subscriptions: Mutex<Option<Cached>>,
    /// Tasks' callbacks, by task, as last read.
    callbacks: Mutex<HashMap<Uuid, Cached>>,
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

impl WebhookClient {
    pub fn new(config: &Config) -> Result<WebhookClient, String> {
        let targets = Targets::new(&config.webhook_allowed_nets);
        let timeout = Duration::from_secs(config.webhook_timeout_secs);
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
        Ok(WebhookClient {
            client,
            targets,
            timeout,
            permits: Semaphore::new(PARALLEL),
            in_flight: Mutex::default(),
            failing: Mutex::default(),
            subscriptions: Mutex::default(),
            callbacks: Mutex::default(),
        })
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// How long a claimed attempt is its sender's: past its timeout, with a margin.
    pub fn claim(&self) -> Duration {
        self.timeout + CLAIM_MARGIN
    }

    /// One of the attempts this replica makes at once (None once closed).
    pub async fn permit(&self) -> Option<SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
    }

    /// Mark `id` in flight here; false when it is already.
    pub fn enter(&self, id: Uuid) -> bool {
        locked(&self.in_flight).insert(id)
    }

    pub fn leave(&self, id: Uuid) {
        locked(&self.in_flight).remove(&id);
    }

    /// Whether an attempt's outcome must be written to its webhook's count of failures in a
    /// row: a failure always is; a success only when the count may not be 0 (it was not
    /// when read, or an attempt failed here since), so that a healthy webhook's deliveries
    /// cost no write but their own.
    pub fn count_changes(&self, target: &Target, delivered: bool) -> bool {
        let mut failing = locked(&self.failing);
        if delivered {
            failing.remove(&target.webhook_id) || target.failures > 0
        } else {
            failing.insert(target.webhook_id);
            true
        }
    }

    /// POST one attempt.
    pub async fn post(&self, target: &Target, delivery: &Delivery) -> (DeliveryAttempt, Outcome) {
        let at = now();
        let started = Instant::now();
        let (status, outcome, error) = match self.try_post(target, delivery).await {
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
        target: &Target,
        delivery: &Delivery,
    ) -> Result<(StatusCode, HeaderMap), (Outcome, String)> {
        let url = url::Url::parse(&target.url)
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
                signature(&target.key, timestamp, &delivery.body),
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

impl WebhookClient {
    /// The users' subscriptions, if read less than [`FRESH`] ago.
    pub fn subscriptions(&self) -> Option<Arc<Vec<Sub>>> {
        locked(&self.subscriptions)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, subs)| subs.clone())
    }

    pub fn keep_subscriptions(&self, subs: Arc<Vec<Sub>>) {
        *locked(&self.subscriptions) = Some((Instant::now(), subs));
    }

    /// A task's callbacks, if read less than [`FRESH`] ago.
    pub fn callbacks(&self, task: Uuid) -> Option<Arc<Vec<Sub>>> {
        locked(&self.callbacks)
            .get(&task)
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, subs)| subs.clone())
    }

    pub fn keep_callbacks(&self, task: Uuid, subs: Arc<Vec<Sub>>) {
        let mut map = locked(&self.callbacks);
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < FRESH);
        }
        map.insert(task, (Instant::now(), subs));
    }

    /// A subscription changed here (a task's callback, or a user's): read them again.
    pub fn changed(&self, task_id: Option<Uuid>) {
        match task_id {
            Some(task) => {
                locked(&self.callbacks).remove(&task);
            }
            None => *locked(&self.subscriptions) = None,
        }
    }
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
}
