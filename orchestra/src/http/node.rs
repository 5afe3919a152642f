//! The node API units call (`node:<node secret>`): heartbeat, claim, progress, complete,
//! release (a stopping unit hands its running attempts back).
//! Payloads and semantics: `oscied_protocol::node`.

use axum::Json;
use axum::extract::{Path, State};
use oscied_protocol::node::{
    ClaimAnswer, ClaimRequest, CompleteAnswer, CompleteRequest, HeldPublications, ProgressAnswer,
    ProgressRequest, ReleaseAnswer, ReleaseRequest, UnitHeartbeat, UnitKind,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::responses::{Authed, JsonBody, NotFound};
use super::{ApiJson, parse_id};
use crate::auth::Node;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::models::{PublisherTask, TransformTask, Unit};
use crate::state::AppState;
use crate::tasks::{self, TaskKind, publish};
use crate::units;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(held_publications))
        .routes(routes!(claim))
        .routes(routes!(progress))
        .routes(routes!(complete))
        .routes(routes!(release))
}

/// A unit's heartbeat; registers it on the first call.
#[utoipa::path(put, path = "/node/units/{unit_id}", tag = "node", params(("unit_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:@-]+$", description = "1 to 128 letters, digits, `_`, `-`, `.`, `:` or `@`")),
    request_body = UnitHeartbeat, responses(Authed, JsonBody, (status = 200, description = "the unit as registered", body = Unit),
        (status = 422, description = "an invalid unit id, field or queue", body = ErrorBody)))]
async fn heartbeat(
    State(state): State<AppState>,
    _node: Node,
    Path(unit_id): Path<String>,
    ApiJson(beat): ApiJson<UnitHeartbeat>,
) -> ApiResult<Json<Unit>> {
    Ok(Json(units::heartbeat(&state, unit_id, beat).await?))
}

/// What a publisher unit holds (each task with its attempt and status, and the medias); a
/// unit removes from its web root any publication no id it has files of holds at that
/// attempt.
#[utoipa::path(get, path = "/node/units/{unit_id}/publications", tag = "node", params(("unit_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_.:@-]+$", description = "1 to 128 letters, digits, `_`, `-`, `.`, `:` or `@`")),
    responses(Authed, (status = 200, description = "the publications this unit holds", body = HeldPublications),
        (status = 422, description = "an invalid unit id", body = ErrorBody)))]
async fn held_publications(
    State(state): State<AppState>,
    _node: Node,
    Path(unit_id): Path<String>,
) -> ApiResult<Json<HeldPublications>> {
    units::check_unit_id(&unit_id)?;
    Ok(Json(publish::held(&state, &unit_id).await?))
}

/// Run `$op` of the engine for the task kind the route names (`transform` or `publisher`)
/// on task `$id`.
macro_rules! for_kind {
    ($kind:expr, $id:expr, $op:ident($state:expr, $req:expr)) => {
        match task_kind(&$kind)? {
            UnitKind::Transform => {
                let id = parse_id(TransformTask::WHAT, &$id)?;
                tasks::$op::<TransformTask>($state, id, $req).await?
            }
            UnitKind::Publisher => {
                let id = parse_id(PublisherTask::WHAT, &$id)?;
                tasks::$op::<PublisherTask>($state, id, $req).await?
            }
        }
    };
}

/// `transform` or `publisher`: the kind segment of a task route.
fn task_kind(kind: &str) -> ApiResult<UnitKind> {
    match kind {
        "transform" => Ok(UnitKind::Transform),
        "publisher" => Ok(UnitKind::Publisher),
        other => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no task kind {other:?}: transform or publisher"),
        )),
    }
}

/// Claim the attempt a unit received; 409 `stale_attempt` means drop the message.
#[utoipa::path(post, path = "/node/{kind}/tasks/{id}/claim", tag = "node",
    params(("kind" = UnitKind, Path, description = "transform or publisher"), ("id" = String, Path)),
    request_body = ClaimRequest, responses(Authed, JsonBody, NotFound, (status = 200, description = "the task is this unit's to run", body = ClaimAnswer),
        (status = 409, description = "`stale_attempt`: drop the message", body = ErrorBody)))]
async fn claim(
    State(state): State<AppState>,
    _node: Node,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Json<ClaimAnswer>> {
    Ok(Json(for_kind!(kind, id, claim(&state, req))))
}

/// Progress or a bare heartbeat; renews the lease; `cancel` tells the unit to stop.
#[utoipa::path(post, path = "/node/{kind}/tasks/{id}/progress", tag = "node",
    params(("kind" = UnitKind, Path, description = "transform or publisher"), ("id" = String, Path)),
    request_body = ProgressRequest, responses(Authed, JsonBody, NotFound, (status = 200, description = "the lease is renewed", body = ProgressAnswer),
        (status = 409, description = "the attempt is no longer this unit's", body = ErrorBody)))]
async fn progress(
    State(state): State<AppState>,
    _node: Node,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ProgressRequest>,
) -> ApiResult<Json<ProgressAnswer>> {
    Ok(Json(for_kind!(kind, id, progress(&state, req))))
}

/// Completion of an attempt, fenced by attempt; repeats answer the same.
#[utoipa::path(post, path = "/node/{kind}/tasks/{id}/complete", tag = "node",
    params(("kind" = UnitKind, Path, description = "transform or publisher"), ("id" = String, Path)),
    request_body = CompleteRequest, responses(Authed, JsonBody, NotFound, (status = 200, description = "the completion is recorded", body = CompleteAnswer),
        (status = 409, description = "the attempt is no longer this unit's", body = ErrorBody)))]
async fn complete(
    State(state): State<AppState>,
    _node: Node,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<Json<CompleteAnswer>> {
    Ok(Json(for_kind!(kind, id, complete(&state, req))))
}

/// A stopping unit hands back the attempt it runs: RETRY with attempt + 1, queued again at
/// once (not counted against `OSCIED_TASK_MAX_ATTEMPTS`); a REVOKING task ends REVOKED. A
/// published publication is not handed back. 409 `stale_attempt`: not this unit's current
/// attempt, or nothing to hand back.
#[utoipa::path(post, path = "/node/{kind}/tasks/{id}/release", tag = "node",
    params(("kind" = UnitKind, Path, description = "transform or publisher"), ("id" = String, Path)),
    request_body = ReleaseRequest, responses(Authed, JsonBody, NotFound, (status = 200, description = "the attempt is handed back", body = ReleaseAnswer),
        (status = 409, description = "`stale_attempt`: not this unit's current attempt, or nothing to hand back", body = ErrorBody)))]
async fn release(
    State(state): State<AppState>,
    _node: Node,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> ApiResult<Json<ReleaseAnswer>> {
    Ok(Json(for_kind!(kind, id, release(&state, req))))
}
