//! `GET /health`: the checks of `crate::health`, answered 503 when degraded.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::health::{self, Health};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Health of the orchestra and its dependencies.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "everything the orchestra needs is there", body = Health),
        (status = 503, description = "something the orchestra needs is missing or down", body = Health)))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let health = health::check(&state).await;
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
