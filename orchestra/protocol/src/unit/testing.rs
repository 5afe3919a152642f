//! A fake orchestra node API for the units' tests (feature `testing`): a real HTTP server on
//! a local port serving the node routes of both kinds ([`crate::node`]), answering as a
//! [`Fake`] says and recording every call. The workers' tests run whole units against it; the
//! end-to-end tests run them against the real orchestra.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::client::NodeClient;
use crate::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, HeldPublication, HeldPublications,
    ProgressAnswer, ProgressRequest, ReleaseAnswer, ReleaseRequest, STALE_ATTEMPT, UnitHeartbeat,
    UnitKind,
};
use crate::task::TaskStatus;

/// The node secret [`FakeNode::client`] calls with and the fake accepts unless told otherwise.
pub const NODE_SECRET: &str = "node-secret";

/// HTTP Basic `node:<NODE_SECRET>`, as units send it.
const NODE_AUTHORIZATION: &str = "Basic bm9kZTpub2RlLXNlY3JldA==";

/// One call to a task route: on which kind's routes, for which task, with which body. Derefs
/// to the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<T> {
    pub kind: UnitKind,
    pub task: Uuid,
    pub body: T,
}

impl<T> Deref for Call<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.body
    }
}

/// How the fake orchestra answers, and what it saw. `Fake::default()` accepts everything.
#[derive(Debug, Default)]
pub struct Fake {
    /// Claims answer 409 `stale_attempt`.
    pub claim_stale: bool,
    /// This many claims answer 503 first.
    pub claim_unavailable: u32,
    /// Progress reports answer `cancel` (the task was revoked).
    pub cancel_on_progress: bool,
    /// Progress reports answer 409 `stale_attempt` (recorded all the same).
    pub progress_stale: bool,
    /// This many completions answer 503 first (not recorded).
    pub complete_unavailable: u32,
    /// Every call answers 401 (the node secret is refused) while set.
    pub refuse_secret: bool,
    /// The lease a claim grants; 0 means 3 s.
    pub lease_secs: u64,
    /// What `GET /node/units/{id}/publications` answers: these medias (the media-only answer
    /// of an older orchestra) ...
    pub held_medias: Vec<Uuid>,
    /// ... and these publications.
    pub held_publications: Vec<HeldPublication>,

    pub claims: Vec<Call<ClaimRequest>>,
    pub progress: Vec<Call<ProgressRequest>>,
    /// Completions answered (each answered with the status asked).
    pub completes: Vec<Call<CompleteRequest>>,
    pub releases: Vec<Call<ReleaseRequest>>,
    pub heartbeats: Vec<UnitHeartbeat>,
    /// The unit ids `GET /node/units/{id}/publications` was asked for.
    pub held_asked: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn lock(fake: &Shared) -> MutexGuard<'_, Fake> {
    fake.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error(status: StatusCode, code: &str) -> Response {
    let body = json!({"error": {"code": code, "message": code}});
    (status, Json(body)).into_response()
}

/// The fake's answer to a call whose secret it refuses, if it does.
fn refused(fake: &Fake, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    (fake.refuse_secret || given != Some(NODE_AUTHORIZATION))
        .then(|| error(StatusCode::UNAUTHORIZED, "unauthorized"))
}

/// The body, or why it is not one (answered 400, as the orchestra does).
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn bad_request(why: String) -> Response {
    error(StatusCode::BAD_REQUEST, &why)
}

async fn heartbeat(
    State(fake): State<Shared>,
    Path(_id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let mut f = lock(&fake);
    if let Some(answer) = refused(&f, &headers) {
        return answer;
    }
    match body::<UnitHeartbeat>(&bytes) {
        Ok(beat) => {
            f.heartbeats.push(beat);
            Json(json!({})).into_response()
        }
        Err(why) => bad_request(why),
    }
}

async fn held(State(fake): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut f = lock(&fake);
    if let Some(answer) = refused(&f, &headers) {
        return answer;
    }
    f.held_asked.push(id);
    Json(HeldPublications {
        media_ids: f.held_medias.clone(),
        publications: f.held_publications.clone(),
    })
    .into_response()
}

async fn task_call(
    State(fake): State<Shared>,
    Path((kind, task, action)): Path<(UnitKind, Uuid, String)>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let mut f = lock(&fake);
    if let Some(answer) = refused(&f, &headers) {
        return answer;
    }
    let answer = match action.as_str() {
        "claim" => body::<ClaimRequest>(&bytes).map(|req| claim(&mut f, kind, task, req)),
        "progress" => body::<ProgressRequest>(&bytes).map(|req| {
            f.progress.push(Call {
                kind,
                task,
                body: req,
            });
            if f.progress_stale {
                return error(StatusCode::CONFLICT, STALE_ATTEMPT);
            }
            Json(ProgressAnswer {
                cancel: f.cancel_on_progress,
            })
            .into_response()
        }),
        "complete" => body::<CompleteRequest>(&bytes).map(|req| {
            if f.complete_unavailable > 0 {
                f.complete_unavailable -= 1;
                return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
            }
            let status = req.status;
            f.completes.push(Call {
                kind,
                task,
                body: req,
            });
            Json(CompleteAnswer { status }).into_response()
        }),
        "release" => body::<ReleaseRequest>(&bytes).map(|req| {
            let attempt = req.attempt + 1;
            f.releases.push(Call {
                kind,
                task,
                body: req,
            });
            Json(ReleaseAnswer {
                status: TaskStatus::Retry,
                attempt,
            })
            .into_response()
        }),
        _ => Ok(StatusCode::NOT_FOUND.into_response()),
    };
    answer.unwrap_or_else(bad_request)
}

fn claim(f: &mut Fake, kind: UnitKind, task: Uuid, req: ClaimRequest) -> Response {
    let attempt = req.attempt;
    f.claims.push(Call {
        kind,
        task,
        body: req,
    });
    if f.claim_unavailable > 0 {
        f.claim_unavailable -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    }
    if f.claim_stale {
        return error(StatusCode::CONFLICT, STALE_ATTEMPT);
    }
    let lease_secs = if f.lease_secs == 0 { 3 } else { f.lease_secs };
    Json(ClaimAnswer {
        task_id: task,
        attempt,
        lease_secs,
    })
    .into_response()
}

/// A running fake orchestra. Anything but the node routes answers 404.
pub struct FakeNode {
    fake: Shared,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeNode {
    /// Serve on a free local port.
    pub async fn start(fake: Fake) -> FakeNode {
        let fake = Arc::new(Mutex::new(fake));
        let app = Router::new()
            .route("/api/v1/node/units/{id}", put(heartbeat))
            .route("/api/v1/node/units/{id}/publications", get(held))
            .route("/api/v1/node/{kind}/tasks/{id}/{action}", post(task_call))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port for the fake orchestra");
        let addr = listener.local_addr().expect("the fake orchestra's address");
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the fake orchestra stopped: {e}");
            }
        });
        FakeNode {
            fake,
            url: format!("http://{addr}"),
            server,
        }
    }

    /// Its base URL (`http://127.0.0.1:<port>`, without `/api/v1`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of this fake with the secret it accepts.
    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.url, NODE_SECRET).expect("the fake orchestra's URL")
    }

    /// Read or change how it answers and what it saw.
    pub fn lock(&self) -> MutexGuard<'_, Fake> {
        lock(&self.fake)
    }

    /// Wait (at most `secs`) until what the fake saw satisfies `done`; panics naming `what`.
    pub async fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&Fake) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if done(&self.lock()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// The completions answered so far.
    pub fn completes(&self) -> Vec<Call<CompleteRequest>> {
        self.lock().completes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::NodeError;

    #[tokio::test]
    async fn answers_and_records_both_kinds_and_checks_the_secret() {
        let node = FakeNode::start(Fake {
            claim_unavailable: 1,
            ..Fake::default()
        })
        .await;
        let client = node.client();
        let task = Uuid::new_v4();
        let req = ClaimRequest {
            unit_id: "u".into(),
            attempt: 2,
        };
        let first = client.claim("publisher", task, &req).await;
        assert!(matches!(first, Err(NodeError::Unavailable(_))), "{first:?}");
        let claimed = client.claim("publisher", task, &req).await.unwrap();
        assert_eq!((claimed.attempt, claimed.lease_secs), (2, 3));
        let done = CompleteRequest {
            unit_id: "u".into(),
            attempt: 2,
            status: TaskStatus::Failure,
            error: Some("x".into()),
            output: None,
            publish_uri: None,
        };
        let answer = client.complete("transform", task, &done).await.unwrap();
        assert_eq!(answer.status, TaskStatus::Failure);
        {
            let f = node.lock();
            assert_eq!(f.claims.len(), 2);
            assert_eq!(
                (f.claims[1].kind, f.claims[1].task),
                (UnitKind::Publisher, task)
            );
            assert_eq!(f.completes[0].kind, UnitKind::Transform);
            assert_eq!(f.completes[0].error.as_deref(), Some("x"));
        }
        node.lock().claim_stale = true;
        let stale = client.claim("transform", task, &req).await;
        assert!(matches!(stale, Err(NodeError::Stale(_))), "{stale:?}");
        let wrong = NodeClient::new(node.url(), "wrong").unwrap();
        let refused = wrong.held_publications("u").await;
        assert!(
            matches!(refused, Err(NodeError::Refused(401, _))),
            "{refused:?}"
        );
        assert!(node.lock().held_asked.is_empty());
    }
}
