//! `GET /units`: the worker units and whether they are online.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::models::{Page, Unit};
use crate::state::AppState;
use crate::units;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_units))
}

/// Every unit that ever sent a heartbeat: kind, queues, host, concurrency, running tasks,
/// last heartbeat and `online` (a heartbeat within three intervals).
#[utoipa::path(get, path = "/units", tag = "units",
    responses((status = 200, body = Page<Unit>)))]
async fn list_units(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Unit>>> {
    let items = units::list(&state).await?;
    Ok(Json(Page {
        total: items.len() as u64,
        items,
    }))
}
