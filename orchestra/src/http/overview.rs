//! `GET /overview`: counts for the web UI's first page.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::responses::Authed;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::overview::{self, Overview};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_overview))
}

/// Counts of medias by status, of transform and publisher tasks by status (and those FAILED
/// in the last 24 hours), and of units online and offline. A user counts their own medias and
/// tasks; admins and root count everyone's.
#[utoipa::path(get, path = "/overview", tag = "overview",
    responses(Authed, (status = 200, description = "the counts", body = Overview)))]
async fn get_overview(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Overview>> {
    Ok(Json(overview::overview(&state, &caller).await?))
}
