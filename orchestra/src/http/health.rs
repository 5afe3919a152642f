//! `GET /health`: is the orchestra and what it depends on up.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a dependency is down (then the status code is 503).
    pub status: &'static str,
    pub version: &'static str,
    /// `ok` or `down`.
    pub store: &'static str,
    /// `ok` or `down`; standalone mode's in-process queues are always `ok`.
    pub broker: &'static str,
    /// `standalone` or `cluster`.
    pub mode: &'static str,
    /// `sqlite` or `mongodb`.
    pub store_kind: &'static str,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Health of the orchestra and its dependencies.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "every dependency is up", body = Health), (status = 503, description = "a dependency is down", body = Health)))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store_ok = tokio::time::timeout(Duration::from_secs(3), state.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let broker_ok = tokio::time::timeout(Duration::from_secs(3), state.broker.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let all_ok = store_ok && broker_ok;
    let health = Health {
        status: if all_ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        store: if store_ok { "ok" } else { "down" },
        broker: if broker_ok { "ok" } else { "down" },
        mode: if state.config.mongodb_uri.is_some() || state.config.amqp_uri.is_some() {
            "cluster"
        } else {
            "standalone"
        },
        store_kind: state.store.kind(),
    };
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
