//! `GET /units`: the worker units and whether they are online.

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::responses::{Authed, NotFound};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::models::{Page, Unit};
use crate::state::AppState;
use crate::units::{self, Forgotten};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_units))
        .routes(routes!(forget_unit))
}

/// Every unit that sent a heartbeat and was not forgotten (an offline unit holding nothing
/// is dropped after `OSCIED_UNIT_FORGET_SECS`): kind, queues, host, concurrency, running
/// tasks (from the tasks it holds), last heartbeat and `online` (a heartbeat within three
/// intervals).
#[utoipa::path(get, path = "/units", tag = "units",
    responses(Authed, (status = 200, description = "the units", body = Page<Unit>)))]
async fn list_units(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Page<Unit>>> {
    let items = units::listed(&state).await?;
    Ok(Json(Page {
        total: items.len() as u64,
        items,
    }))
}

/// Forget a unit that is gone for good (admins only; 409 while it is online). Running tasks
/// it held are taken back at once; its publications end REVOKED (their files went with it),
/// which frees their medias. If the unit ever returns, it registers anew.
#[utoipa::path(delete, path = "/units/{id}", tag = "units", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "forgotten, with what was taken back", body = Forgotten), (status = 403, description = "admins only", body = ErrorBody),
        (status = 409, description = "the unit is online", body = ErrorBody)))]
async fn forget_unit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Forgotten>> {
    Ok(Json(units::forget(&state, &caller, &id).await?))
}
