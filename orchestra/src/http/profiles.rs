//! `/transform/encoders` and `/transform/profiles`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use oscied_protocol::EncoderName;
use oscied_protocol::encoder::{FfmpegAllowList, ffmpeg_allow_list};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::responses::{Authed, BadQuery, JsonBody, NotFound};
use super::{ApiJson, ApiQuery, list_options, parse_id};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::models::{Page, ProfileFilter, TransformProfile};
use crate::profiles::{self, NewProfile, ProfilePatch};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_encoders))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(get_profile, patch_profile, delete_profile))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Encoder {
    pub name: EncoderName,
    pub description: &'static str,
    /// What an encoder_string may hold (ffmpeg only): the allowed output options with the
    /// shape of their values, the filters with their options, formats, codecs, bitstream
    /// filters, x264/x265 parameter keys. Anything else is refused with 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<FfmpegAllowList>,
}

/// The encoders a profile can use, and what an ffmpeg encoder_string may hold.
#[utoipa::path(get, path = "/transform/encoders", tag = "transform",
    responses(Authed, (status = 200, description = "the encoders", body = Page<Encoder>)))]
async fn list_encoders(_caller: Caller) -> Json<Page<Encoder>> {
    let items: Vec<_> = EncoderName::ALL
        .into_iter()
        .map(|name| Encoder {
            name,
            description: name.description(),
            allowed: (name == EncoderName::Ffmpeg).then(ffmpeg_allow_list),
        })
        .collect();
    Json(Page {
        total: items.len() as u64,
        items,
    })
}

super::sort_param!(ProfileSort, SORTS);

const SORTS: &[(&str, &str)] = &[
    ("title", "title"),
    ("created_at", "created_at"),
    ("encoder_name", "encoder_name"),
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProfileListQuery {
    /// Case-insensitive text in the title.
    q: Option<String>,
    encoder_name: Option<EncoderName>,
    /// Profiles created by this user.
    user_id: Option<Uuid>,
    /// Default 50, at most 1000.
    #[param(maximum = 1000)]
    limit: Option<u64>,
    /// Items to pass over before the first one answered.
    skip: Option<u64>,
    /// title, created_at, encoder_name; `-` for descending. Default: title.
    #[param(value_type = Option<ProfileSort>, inline)]
    sort: Option<String>,
}

/// Create a profile; its encoder string is validated (422 when refused).
#[utoipa::path(post, path = "/transform/profiles", tag = "transform", request_body = NewProfile,
    responses(Authed, JsonBody, (status = 201, description = "the profile", body = TransformProfile), (status = 409, description = "title taken", body = ErrorBody),
        (status = 422, description = "an invalid field, or an encoder string outside the allow list", body = ErrorBody)))]
async fn create_profile(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewProfile>,
) -> ApiResult<(StatusCode, Json<TransformProfile>)> {
    let profile = profiles::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// List profiles (every user sees all of them).
#[utoipa::path(get, path = "/transform/profiles", tag = "transform", params(ProfileListQuery),
    responses(Authed, BadQuery, (status = 200, description = "a page of profiles", body = Page<TransformProfile>)))]
async fn list_profiles(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<ProfileListQuery>,
) -> ApiResult<Json<Page<TransformProfile>>> {
    let opts = list_options(
        query.limit,
        query.skip,
        query.sort.as_deref(),
        SORTS,
        "title",
    )?;
    let filter = ProfileFilter {
        q: query.q,
        encoder_name: query.encoder_name,
        user_id: query.user_id,
    };
    Ok(Json(profiles::list(&state, &filter, &opts).await?))
}

/// Get a profile.
#[utoipa::path(get, path = "/transform/profiles/{id}", tag = "transform", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 200, description = "the profile", body = TransformProfile)))]
async fn get_profile(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TransformProfile>> {
    let id = parse_id("profile", &id)?;
    Ok(Json(profiles::get(&state, id).await?))
}

/// Change a profile.
#[utoipa::path(patch, path = "/transform/profiles/{id}", tag = "transform", params(("id" = String, Path)), request_body = ProfilePatch,
    responses(Authed, JsonBody, NotFound, (status = 200, description = "the profile as changed", body = TransformProfile),
        (status = 403, description = "neither its owner nor an admin", body = ErrorBody), (status = 409, description = "title taken", body = ErrorBody),
        (status = 422, description = "an invalid field, or an encoder string outside the allow list", body = ErrorBody)))]
async fn patch_profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> ApiResult<Json<TransformProfile>> {
    let id = parse_id("profile", &id)?;
    Ok(Json(profiles::update(&state, &caller, id, patch).await?))
}

/// Delete a profile.
#[utoipa::path(delete, path = "/transform/profiles/{id}", tag = "transform", params(("id" = String, Path)),
    responses(Authed, NotFound, (status = 204, description = "deleted"), (status = 403, description = "neither its owner nor an admin", body = ErrorBody)))]
async fn delete_profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id("profile", &id)?;
    profiles::delete(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
