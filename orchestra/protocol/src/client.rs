//! The HTTP client units call the orchestra's node API with (see [`crate::node`]).

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

/// A node API client: `OSCIED_API_URL` (with or without `/api/v1`) and the node secret.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("NodeClient")
            .field("base", &self.base)
            .finish()
    }
}

impl NodeClient {
    pub fn new(api_url: &str, node_secret: &str) -> Result<NodeClient, NodeError> {
        let trimmed = api_url.trim_end_matches('/');
        let base = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(NodeError::Refused(
                0,
                format!("OSCIED_API_URL must be an http(s) URL, not {api_url:?}"),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| NodeError::Refused(0, e.to_string()))?;
        Ok(NodeClient {
            http,
            base: format!("{base}/api/v1"),
            secret: node_secret.to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, NodeError> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth("node", Some(&self.secret));
        let request = if method == reqwest::Method::GET {
            request
        } else {
            request.json(body)
        };
        let response = request
            .send()
            .await
            .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| NodeError::Unavailable(format!("bad answer: {e}")));
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
        Err(match status.as_u16() {
            404 => NodeError::Stale(message),
            409 if code == STALE_ATTEMPT => NodeError::Stale(message),
            s if s >= 500 || s == 429 => NodeError::Unavailable(format!("{s}: {message}")),
            s => NodeError::Refused(s, message),
        })
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
