//! `/users`: accounts, managed by root and admins; a user sees and changes itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::responses::{Authed, BadQuery, JsonBody, NotFound};
use super::{ApiJson, ApiQuery, list_options, parse_id};
use crate::auth::{Authenticated, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::models::{Page, User};
use crate::state::AppState;
use crate::users::{self, NewUser, UserPatch};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(me))
        .routes(routes!(get_user, patch_user, delete_user))
}

super::sort_param!(UserSort, SORTS);

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("mail", "mail"),
    ("name", "name"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UserListQuery {
    /// Case-insensitive text in mail or name.
    q: Option<String>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    /// Items to pass over before the first one answered.
    skip: Option<u64>,
    /// created_at, mail, name, first_name, last_name; `-` for descending. Default: created_at.
    #[param(value_type = Option<UserSort>, inline)]
    sort: Option<String>,
}

/// Create a user (root or admin).
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses(Authed, JsonBody, (status = 201, description = "the user", body = User), (status = 403, description = "neither root nor an admin", body = ErrorBody),
        (status = 409, description = "mail taken", body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user = users::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// List users: all of them for root and admins, oneself for others.
#[utoipa::path(get, path = "/users", tag = "users", params(UserListQuery),
    responses(Authed, BadQuery, (status = 200, description = "a page of users", body = Page<User>)))]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        SORTS,
        "created_at",
    )?;
    Ok(Json(users::list(&state, &caller, query.q, &opts).await?))
}

/// The calling user.
#[utoipa::path(get, path = "/users/me", tag = "users",
    responses(Authed, (status = 200, description = "the calling user", body = User), (status = 403, description = "root is no user", body = ErrorBody)))]
async fn me(caller: Caller) -> ApiResult<Json<User>> {
    match caller {
        Caller::User(user) => Ok(Json(user)),
        Caller::Root => Err(ApiError::forbidden("root is not a user account")),
    }
}

/// Get a user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the user", body = User)))]
async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    let id = parse_id("user", &id)?;
    Ok(Json(users::get(&state, &caller, id).await?))
}

/// Change a user's names, mail or secret; admin_platform only by root or an admin. A new
/// secret needs HTTP Basic (a bearer token cannot change it: 403) and revokes all the user's
/// tokens.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = String, Path)), request_body = UserPatch,
    responses(Authed, JsonBody, NotFound, (status = 200, description = "the user as changed", body = User),
        (status = 403, description = "not an admin, or a secret change with a bearer token", body = ErrorBody), (status = 409, description = "mail taken", body = ErrorBody)))]
async fn patch_user(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<User>> {
    let id = parse_id("user", &id)?;
    Ok(Json(users::update(&state, &auth, id, patch).await?))
}

/// Delete a user that owns no medias.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 204, description = "deleted"), (status = 409, description = "the user still owns medias", body = ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id("user", &id)?;
    users::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
