//! The HTTP client units call the orchestra's node API with (see [`crate::node`]).
//!
//! `OSCIED_API_URL` may name several orchestra replicas, comma separated. A call goes to the
//! replica that answered last; when it cannot be reached, times out or answers 502, 503 or
//! 504 (a replica that is dying, restarting or behind a proxy that lost it), the call moves on
//! to the next one, round robin, each replica tried at most once per call. Whichever answers
//! is remembered by every clone of the client, so the unit's slots, reporters and heartbeat
//! all move together. Any other answer (even 500, 4xx) is the replica's word and is not
//! retried elsewhere: every replica shares one store, so another would answer the same. With
//! one URL a call is exactly one try, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, HeldPublications, ProgressAnswer,
    ProgressRequest, ReleaseAnswer, ReleaseRequest, STALE_ATTEMPT, UnitHeartbeat,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// This attempt is not the current one (or the task is gone): drop it.
    #[error("stale: {0}")]
    Stale(String),
    /// The orchestra could not be reached or answered 5xx: try again later.
    #[error("orchestra unavailable: {0}")]
    Unavailable(String),
    /// The orchestra refused the call (bad node secret, bad payload): a configuration error.
    #[error("orchestra refused ({0}): {1}")]
    Refused(u16, String),
}

/// A node API client: `OSCIED_API_URL` (one URL or several replicas' comma separated, each
/// with or without `/api/v1`) and the node secret. Cheap to clone; clones share which replica
/// answers.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    /// Each replica's `.../api/v1`, in the order given; never empty.
    bases: Arc<[String]>,
    /// The index in `bases` of the replica that answered last.
    current: Arc<AtomicUsize>,
    secret: String,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("NodeClient")
            .field("bases", &self.bases)
            .field("current", &self.base())
            .finish()
    }
}

/// `OSCIED_API_URL`: one or more http(s) URLs, comma separated (blanks around and between
/// entries ignored), each returned without a trailing `/` nor `/api/v1`. The error names the
/// entry that is not an http(s) URL with a host.
pub fn parse_api_urls(list: &str) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let trimmed = entry.trim_end_matches('/');
        let base = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        let bad = match host {
            None => Some("not an http(s) URL"),
            Some("") => Some("no host"),
            Some(_) if base.chars().any(char::is_whitespace) => Some("a space inside"),
            Some(_) if base.contains(['?', '#']) => Some("a query or a fragment"),
            Some(_) => None,
        };
        if let Some(why) = bad {
            return Err(format!(
                "OSCIED_API_URL entry {entry:?}: {why}; give the orchestra's URL, e.g. \
                 http://10.0.0.1:5000, or several replicas' comma separated"
            ));
        }
        urls.push(base.to_owned());
    }
    if urls.is_empty() {
        return Err(
            "OSCIED_API_URL names no orchestra: give its URL, e.g. http://10.0.0.1:5000".into(),
        );
    }
    Ok(urls)
}

/// What one try at one replica came to.
enum Try<T> {
    Answered(Result<T, NodeError>),
    /// No answer from this replica (connection error, timeout, 502, 503, 504): the next one
    /// may answer.
    Unreachable(NodeError),
}

impl NodeClient {
    /// A client of the replicas `api_url` names ([`parse_api_urls`]); an error names the bad
    /// entry.
    pub fn new(api_url: &str, node_secret: &str) -> Result<NodeClient, NodeError> {
        let bases = parse_api_urls(api_url).map_err(|e| NodeError::Refused(0, e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| NodeError::Refused(0, e.to_string()))?;
        Ok(NodeClient {
            http,
            bases: bases.iter().map(|b| format!("{b}/api/v1")).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            secret: node_secret.to_owned(),
        })
    }

    /// The node API's base of the replica calls go to now.
    pub fn base(&self) -> &str {
        let current = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[current]
    }

    /// Every replica's node API base, in the order given.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, NodeError> {
        let count = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        let mut unreachable = None;
        for step in 0..count {
            let index = (first + step) % count;
            match self.try_once(&self.bases[index], &method, path, body).await {
                Try::Answered(result) => {
                    if index != first {
                        // Several calls may fail over at once: one line per move.
                        let moved = self
                            .current
                            .compare_exchange(first, index, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok();
                        if moved {
                            tracing::warn!(
                                api = %self.bases[index],
                                was = %self.bases[first],
                                "the orchestra replica did not answer ({}); calling this one now",
                                unreachable.as_ref().map_or_else(String::new, ToString::to_string)
                            );
                        }
                    }
                    return result;
                }
                Try::Unreachable(e) => unreachable = Some(e),
            }
        }
        // `count` ≥ 1, so at least one try was made.
        Err(unreachable.unwrap_or_else(|| NodeError::Unavailable("no orchestra URL".into())))
    }

    async fn try_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        base: &str,
        method: &reqwest::Method,
        path: &str,
        body: &B,
    ) -> Try<T> {
        let request = self
            .http
            .request(method.clone(), format!("{base}{path}"))
            .basic_auth("node", Some(&self.secret));
        let request = if *method == reqwest::Method::GET {
            request
        } else {
            request.json(body)
        };
        let response = match request.send().await {
            Ok(response) => response,
            // No HTTP answer at all (refused, reset, timed out).
            Err(e) => {
                let e = NodeError::Unavailable(e.to_string());
                return Try::Unreachable(e);
            }
        };
        let status = response.status();
        if status.is_success() {
            return Try::Answered(
                response
                    .json()
                    .await
                    .map_err(|e| NodeError::Unavailable(format!("bad answer: {e}"))),
            );
        }
        let text = response.text().await.unwrap_or_default();
        let (code, message) = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|v| {
                (
                    v["error"]["code"].as_str().unwrap_or_default().to_owned(),
                    v["error"]["message"].as_str().unwrap_or(&text).to_owned(),
                )
            })
            .unwrap_or_else(|| (String::new(), text.clone()));
        let error = match status.as_u16() {
            404 => NodeError::Stale(message),
            409 if code == STALE_ATTEMPT => NodeError::Stale(message),
            s if s >= 500 || s == 429 => NodeError::Unavailable(format!("{s}: {message}")),
            s => NodeError::Refused(s, message),
        };
        match status.as_u16() {
            // A gateway that lost the replica, or a replica not (or no longer) serving.
            502..=504 => Try::Unreachable(error),
            _ => Try::Answered(Err(error)),
        }
    }

    pub async fn heartbeat(
        &self,
        unit_id: &str,
        beat: &UnitHeartbeat,
    ) -> Result<serde_json::Value, NodeError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/node/units/{unit_id}"),
            beat,
        )
        .await
    }

    pub async fn held_publications(&self, unit_id: &str) -> Result<HeldPublications, NodeError> {
        self.call(
            reqwest::Method::GET,
            &format!("/node/units/{unit_id}/publications"),
            &(),
        )
        .await
    }

    pub async fn claim(
        &self,
        kind: &str,
        task: Uuid,
        req: &ClaimRequest,
    ) -> Result<ClaimAnswer, NodeError> {
        self.call(
            reqwest::Method::POST,
            &format!("/node/{kind}/tasks/{task}/claim"),
            req,
        )
        .await
    }

    pub async fn progress(
        &self,
        kind: &str,
        task: Uuid,
        req: &ProgressRequest,
    ) -> Result<ProgressAnswer, NodeError> {
        self.call(
            reqwest::Method::POST,
            &format!("/node/{kind}/tasks/{task}/progress"),
            req,
        )
        .await
    }

    pub async fn complete(
        &self,
        kind: &str,
        task: Uuid,
        req: &CompleteRequest,
    ) -> Result<CompleteAnswer, NodeError> {
        self.call(
            reqwest::Method::POST,
            &format!("/node/{kind}/tasks/{task}/complete"),
            req,
        )
        .await
    }

    /// Hand back a running attempt (the unit is stopping): the task is queued again at once.
    pub async fn release(
        &self,
        kind: &str,
        task: Uuid,
        req: &ReleaseRequest,
    ) -> Result<ReleaseAnswer, NodeError> {
        self.call(
            reqwest::Method::POST,
            &format!("/node/{kind}/tasks/{task}/release"),
            req,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use tokio::sync::oneshot;

    use super::*;
    use crate::node::UnitKind;

    /// A replica that answers every call `status` (200: an empty object; else an error body
    /// with `code`), counting the calls.
    struct Replica {
        addr: SocketAddr,
        hits: Arc<AtomicUsize>,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Replica {
        async fn start(status: StatusCode, code: &'static str) -> Replica {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Replica::on(listener, status, code)
        }

        fn on(
            listener: tokio::net::TcpListener,
            status: StatusCode,
            code: &'static str,
        ) -> Replica {
            let addr = listener.local_addr().unwrap();
            let hits = Arc::new(AtomicUsize::new(0));
            let counted = hits.clone();
            let app = axum::Router::new().fallback(move || {
                let hits = counted.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if status.is_success() {
                        return Json(serde_json::json!({})).into_response();
                    }
                    let body = serde_json::json!({"error": {"code": code, "message": code}});
                    (status, Json(body)).into_response()
                }
            });
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            Replica {
                addr,
                hits,
                stop: Some(stop),
                task,
            }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        /// Stop answering; the port is closed once this returns.
        async fn kill(mut self) -> SocketAddr {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = (&mut self.task).await;
            self.addr
        }
    }

    /// A local port nothing listens on.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    fn beat() -> UnitHeartbeat {
        UnitHeartbeat {
            kind: UnitKind::Transform,
            queues: vec!["transform".into()],
            hostname: "h".into(),
            version: "0".into(),
            ffmpeg_version: None,
            concurrency: 1,
            running_tasks: vec![],
            heartbeat_secs: 5,
        }
    }

    async fn call(client: &NodeClient) -> Result<serde_json::Value, NodeError> {
        client.heartbeat("u", &beat()).await
    }

    #[tokio::test]
    async fn a_dead_replica_is_skipped_and_the_one_that_answers_remembered() {
        let live = Replica::start(StatusCode::OK, "").await;
        let dead = closed_port();
        let client = NodeClient::new(&format!("{dead}, {}/api/v1", live.url()), "s").unwrap();
        assert_eq!(client.base(), format!("{dead}/api/v1"));
        call(&client).await.expect("answered by the live replica");
        assert_eq!(live.hits(), 1);
        assert_eq!(client.base(), format!("{}/api/v1", live.url()));
        // Remembered by every clone: the next calls go straight to it.
        let clone = client.clone();
        call(&clone).await.unwrap();
        call(&client).await.unwrap();
        assert_eq!(live.hits(), 3);
        assert_eq!(clone.base(), client.base());
    }

    #[tokio::test]
    async fn calls_move_round_robin_when_the_remembered_replica_dies() {
        let a = Replica::start(StatusCode::OK, "").await;
        let b = Replica::start(StatusCode::OK, "").await;
        let client = NodeClient::new(&format!("{},{}", a.url(), b.url()), "s").unwrap();
        call(&client).await.unwrap();
        assert_eq!((a.hits(), b.hits()), (1, 0));
        // `a` dies (its kept-alive connection with it): `b` answers from now on.
        let a_addr = a.kill().await;
        call(&client).await.expect("failed over to b");
        call(&client).await.unwrap();
        assert_eq!(b.hits(), 2);
        assert_eq!(client.base(), format!("{}/api/v1", b.url()));
        // `a` is back on its port and `b` dies: round robin back to `a`.
        let listener = tokio::net::TcpListener::bind(a_addr).await.unwrap();
        let a = Replica::on(listener, StatusCode::OK, "");
        b.kill().await;
        call(&client).await.expect("failed over back to a");
        assert_eq!(a.hits(), 1);
        assert_eq!(client.base(), format!("{}/api/v1", a.url()));
    }

    #[tokio::test]
    async fn gateway_errors_move_on_and_other_answers_do_not() {
        for status in [
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            let sick = Replica::start(status, "store_unavailable").await;
            let live = Replica::start(StatusCode::OK, "").await;
            let client = NodeClient::new(&format!("{},{}", sick.url(), live.url()), "s").unwrap();
            call(&client).await.expect("answered by the next replica");
            assert_eq!((sick.hits(), live.hits()), (1, 1), "{status}");
        }
        // The replica's own word: every replica shares the store and would answer the same.
        for (status, code) in [
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::CONFLICT, STALE_ATTEMPT),
            (StatusCode::NOT_FOUND, "not_found"),
        ] {
            let first = Replica::start(status, code).await;
            let live = Replica::start(StatusCode::OK, "").await;
            let client = NodeClient::new(&format!("{},{}", first.url(), live.url()), "s").unwrap();
            let answer = call(&client).await.expect_err("the first replica's answer");
            match status.as_u16() {
                500 => assert!(matches!(answer, NodeError::Unavailable(_)), "{answer}"),
                401 => assert!(matches!(answer, NodeError::Refused(401, _)), "{answer}"),
                _ => assert!(matches!(answer, NodeError::Stale(_)), "{answer}"),
            }
            assert_eq!((first.hits(), live.hits()), (1, 0), "{status}");
            assert_eq!(client.base(), format!("{}/api/v1", first.url()));
        }
    }

    #[tokio::test]
    async fn every_replica_down_is_unavailable_and_one_url_is_one_try() {
        let client = NodeClient::new(&format!("{},{}", closed_port(), closed_port()), "s").unwrap();
        let down = call(&client).await.expect_err("nobody answers");
        assert!(matches!(down, NodeError::Unavailable(_)), "{down}");
        let sick = Replica::start(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable").await;
        let client = NodeClient::new(&sick.url(), "s").unwrap();
        let answer = call(&client).await.expect_err("503");
        assert!(
            matches!(&answer, NodeError::Unavailable(m) if m.starts_with("503")),
            "{answer}"
        );
        assert_eq!(sick.hits(), 1);
    }

    #[test]
    fn the_url_list_is_checked_entry_by_entry() {
        assert_eq!(
            parse_api_urls(" http://a:5000/api/v1/ ,https://b.example/oscied,").unwrap(),
            vec!["http://a:5000", "https://b.example/oscied"]
        );
        assert_eq!(parse_api_urls("http://a").unwrap(), vec!["http://a"]);
        for (list, named) in [
            ("http://a:5000,a:5000", "\"a:5000\""),
            ("http://a:5000,ftp://b", "\"ftp://b\""),
            ("http://", "\"http://\""),
            ("http://a b", "\"http://a b\""),
            ("http://a?x=1", "\"http://a?x=1\""),
            (" , ", "names no orchestra"),
        ] {
            let err = parse_api_urls(list).expect_err(list);
            assert!(err.contains(named), "{list}: {err}");
            assert!(err.contains("OSCIED_API_URL"), "{list}: {err}");
            let Err(NodeError::Refused(0, message)) = NodeClient::new(list, "s") else {
                panic!("{list} accepted");
            };
            assert_eq!(message, err);
        }
    }
}
